"""NIH ChestX-ray14 adapter: the official label file, the image folder and the official boxes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cxrcore.data.adapters.files import rescale_boxes, scan_images
from cxrcore.data.index import DatasetError, IndexedDataset, build_index, empty_boxes, validate_boxes
from cxrcore.labels import NIH14_LABELS

log = logging.getLogger(__name__)

_COLUMNS = {
    "Image Index": "image_id",
    "Patient ID": "patient_id",
    "View Position": "view",
    "Patient Gender": "sex",
    "Patient Age": "age",
}


def read_nih_labels(labels_csv: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Read Data_Entry_2017 into metadata and a multi-hot label frame ('No Finding' is all zeros).

    Returns the metadata, the labels, and any finding names outside the fourteen.
    """
    usecols = [
        "Image Index",
        "Finding Labels",
        "Patient ID",
        "View Position",
        "Patient Gender",
        "Patient Age",
    ]
    try:
        raw = pd.read_csv(labels_csv, usecols=usecols, dtype={"Image Index": str, "Finding Labels": str})
    except FileNotFoundError:
        raise DatasetError(f"label file not found: {labels_csv}") from None
    except ValueError as exc:
        raise DatasetError(f"{Path(labels_csv).name} is not an NIH Data_Entry file: {exc}") from None
    findings = raw["Finding Labels"].fillna("No Finding")
    # Substring tests are exact here: no NIH finding name contains another one.
    labels = pd.DataFrame(
        {name: findings.str.contains(name, regex=False).to_numpy(np.float64) for name in NIH14_LABELS}
    )
    known = {*NIH14_LABELS, "No Finding"}
    tokens = pd.Series(findings.unique()).str.split("|").explode().unique()
    unknown = sorted(set(tokens) - known)
    meta = raw.drop(columns="Finding Labels").rename(columns=_COLUMNS)
    meta["patient_id"] = meta["patient_id"].map(lambda p: f"{int(p):08d}")
    meta["source"] = "nih14"
    return meta, labels, unknown


def _read_nih_boxes(bbox_csv: str | Path) -> pd.DataFrame:
    """Read BBox_List_2017 (boxes in the 1024 px space of the full-size release)."""
    raw = pd.read_csv(bbox_csv)
    out = raw.iloc[:, :6].copy()
    out.columns = ["image_id", "label", "x", "y", "w", "h"]
    # The official file spells the label "Infiltrate" where the label file says "Infiltration".
    out["label"] = out["label"].replace({"Infiltrate": "Infiltration"})
    return out


def load_nih14(
    labels_csv: str | Path,
    images_dir: str | Path | None = None,
    bbox_csv: str | Path | None = None,
    test_list: str | Path | None = None,
) -> IndexedDataset:
    """Index NIH ChestX-ray14; without an image folder every row is kept (label-only mode).

    Rows whose image file is missing are dropped and counted in ``notes["dropped_missing_image"]``.
    """
    meta, labels, unknown = read_nih_labels(labels_csv)
    notes: dict[str, object] = {"rows_in_label_file": len(meta)}
    if unknown:
        notes["unknown_findings"] = unknown
        log.warning("NIH label file has findings outside the fourteen: %s", unknown)
    if images_dir is None:
        meta["path"] = pd.NA
        notes["label_only"] = True
    else:
        files = scan_images(images_dir)
        meta["path"] = meta["image_id"].map(lambda name: str(files[name]) if name in files else None)
        present = meta["path"].notna().to_numpy()
        notes["dropped_missing_image"] = int((~present).sum())
        meta, labels = meta[present], labels[present]
        if not present.any():
            raise DatasetError(f"none of the {len(present)} images in the label file are in {images_dir}")
    if test_list is not None:
        test_ids = set(Path(test_list).read_text().split())
        meta["split"] = np.where(meta["image_id"].isin(test_ids), "test", "train")
    index = build_index(meta, labels)
    boxes = empty_boxes()
    if bbox_csv is not None:
        boxes = _read_nih_boxes(bbox_csv)
        boxes = boxes[boxes["image_id"].isin(set(index["image_id"]))]
        if images_dir is not None:
            boxes, unreadable = rescale_boxes(boxes, index.set_index("image_id")["path"])
            notes["boxes_dropped_unreadable"] = unreadable
        else:
            notes["boxes_space"] = "1024 px (no image files to rescale to)"
        boxes = validate_boxes(boxes, index)
        notes["boxes"] = len(boxes)
    return IndexedDataset(index=index, boxes=boxes, notes=notes)
