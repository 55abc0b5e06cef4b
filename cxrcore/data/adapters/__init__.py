"""Source adapters: each turns one kind of public chest X-ray release into the index contract.

The registry below is the one list of adapters; the CLI and the dashboard build their forms from the
parameter specs, so a new adapter appears in both by being added here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cxrcore.data.adapters.boxes_csv import load_boxes_csv
from cxrcore.data.adapters.folder import load_folder
from cxrcore.data.adapters.nih14 import load_nih14
from cxrcore.data.adapters.rsna import load_rsna
from cxrcore.data.adapters.tabular import load_chexpert, load_csv
from cxrcore.data.index import DatasetError, IndexedDataset
from cxrcore.hints import did_you_mean
from cxrcore.labels import DEFAULT_UNCERTAINTY, UNCERTAINTY_POLICIES


@dataclass(frozen=True)
class Param:
    """One argument of an adapter, described once for the CLI and the dashboard."""

    name: str
    help: str
    required: bool = False
    kind: str = "path"  # path | text | choice | assignments
    choices: tuple[str, ...] = ()
    default: Any = None


@dataclass(frozen=True)
class AdapterSpec:
    """A registered source adapter: its loader function and the arguments it takes."""

    name: str
    loader: Callable[..., IndexedDataset]
    summary: str
    params: tuple[Param, ...]


_POLICY = Param(
    "uncertainty",
    "what uncertain (-1) labels become",
    kind="choice",
    choices=UNCERTAINTY_POLICIES,
    default=DEFAULT_UNCERTAINTY,
)

ADAPTERS: dict[str, AdapterSpec] = {
    spec.name: spec
    for spec in (
        AdapterSpec(
            "nih14",
            load_nih14,
            "NIH ChestX-ray14: Data_Entry_2017*.csv[.gz] (+ image folder, + BBox_List_2017.csv[.gz])",
            (
                Param("labels_csv", "Data_Entry_2017 label file (.csv or .csv.gz)", required=True),
                Param(
                    "images_dir", "folder with the PNGs (searched recursively); leave empty for label-only"
                ),
                Param("bbox_csv", "BBox_List_2017 file with the official boxes"),
                Param("test_list", "official test_list.txt: its images become the test split"),
            ),
        ),
        AdapterSpec(
            "rsna",
            load_rsna,
            "RSNA pneumonia: stage_2_train_labels.csv[.gz] over <patientId>.dcm or a patientId->image table",
            (
                Param("labels_csv", "stage_2_train_labels file", required=True),
                Param(
                    "images_dir", "folder with <patientId>.dcm, or with the images named in the mapping", True
                ),
                Param("mapping_csv", "table patientId -> image file name (e.g. rsna_to_nih.csv)"),
            ),
        ),
        AdapterSpec(
            "folder",
            load_folder,
            "one folder per class, optionally under train/valid/test folders",
            (
                Param("root", "top folder", required=True),
                Param(
                    "patient_pattern", "regular expression whose first group is the patient id", kind="text"
                ),
            ),
        ),
        AdapterSpec(
            "boxes-csv",
            load_boxes_csv,
            "a box table image,label,x,y,w,h over a folder of images (e.g. TBX11K)",
            (
                Param("boxes_csv", "the box table", required=True),
                Param("images_dir", "folder with the images", required=True),
                Param("set_labels", "labels every image carries, e.g. Tuberculosis=1", kind="assignments"),
            ),
        ),
        AdapterSpec(
            "csv",
            load_csv,
            "a table with a path column, label columns and an optional patient column",
            (
                Param("csv_path", "the table (.csv or .csv.gz)", required=True),
                Param("root", "folder the paths are relative to (default: the table's folder)"),
                Param("boxes_csv", "optional box table image_id,label,x,y,w,h"),
                Param("path_column", "column with image paths (detected when empty)", kind="text"),
                Param("patient_column", "column with patient ids (detected when empty)", kind="text"),
                _POLICY,
            ),
        ),
        AdapterSpec(
            "chexpert",
            load_chexpert,
            "CheXpert-style table (Path, Sex, Age, AP/PA, 14 observations, -1 = uncertain)",
            (
                Param("csv_path", "train.csv or valid.csv", required=True),
                Param("root", "folder that holds the CheXpert-v1.0* folder (default: the table's parent)"),
                _POLICY,
            ),
        ),
    )
}


def get_adapter(name: str) -> AdapterSpec:
    """Look up an adapter by name; an unknown name lists the close matches and all options."""
    try:
        return ADAPTERS[name]
    except KeyError:
        hint = did_you_mean(name, ADAPTERS)
        raise DatasetError(f"unknown source {name!r}{hint} (valid options: {', '.join(ADAPTERS)})") from None


def load_source(name: str, **arguments: Any) -> IndexedDataset:
    """Run the named adapter with the given arguments (None values are left to the adapter's defaults)."""
    spec = get_adapter(name)
    known = {p.name for p in spec.params}
    unknown = sorted(set(arguments) - known)
    if unknown:
        raise DatasetError(f"source {name!r} does not take {unknown}; it takes {sorted(known)}")
    missing = [p.name for p in spec.params if p.required and not arguments.get(p.name)]
    if missing:
        raise DatasetError(f"source {name!r} needs {missing}")
    return spec.loader(**{k: v for k, v in arguments.items() if v not in (None, "")})
