"""Table adapters: a generic path + labels CSV, and CheXpert-style tables with uncertain labels."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from cxrcore.data.index import (
    META_COLUMNS,
    DatasetError,
    IndexedDataset,
    build_index,
    empty_boxes,
    validate_boxes,
)
from cxrcore.labels import CHEXPERT_LABELS, DEFAULT_UNCERTAINTY, UncertaintyPolicy, apply_uncertainty

_PATH_COLUMNS = ("path", "Path", "Image", "image", "Image Index", "filename", "file")
_PATIENT_COLUMNS = ("patient_id", "PatientId", "Patient ID", "patient", "PatientID")
_ID_COLUMNS = ("image_id", "Image Index")
_META_ALIASES = {
    "View Position": "view",
    "AP/PA": "view",
    "Sex": "sex",
    "Patient Gender": "sex",
    "Age": "age",
    "Patient Age": "age",
}


def _read_table(csv_path: str | Path) -> pd.DataFrame:
    try:
        return pd.read_csv(csv_path)
    except FileNotFoundError:
        raise DatasetError(f"table not found: {csv_path}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{Path(csv_path).name} is not a readable CSV table: {exc}") from None


def _pick(frame: pd.DataFrame, given: str | None, candidates: tuple[str, ...], what: str) -> str | None:
    if given:
        if given not in frame.columns:
            raise DatasetError(
                f"{what} column {given!r} not in the table; columns: {list(frame.columns)[:20]}"
            )
        return given
    return next((c for c in candidates if c in frame.columns), None)


def _resolve(paths: pd.Series, root: Path) -> tuple[pd.Series, pd.Series]:
    """Absolute paths and a mask of rows whose file exists; DatasetError if any lies outside ``root``.

    Paths are normalised without following links ("a/../../b" leaves the root, a linked folder under
    the root does not), so a table cannot index files elsewhere on the machine.
    """
    base = os.path.normpath(os.path.abspath(root))
    resolved = paths.astype(str).map(lambda p: os.path.normpath(os.path.join(base, p)))
    outside = ~resolved.map(lambda p: p == base or p.startswith(base + os.sep))
    if outside.any():
        first = paths[outside].iloc[0]
        raise DatasetError(
            f"{int(outside.sum())} image path(s) lie outside the dataset folder {base} (first: {first!r}); "
            "give paths inside it, or name a root folder that holds them"
        )
    exists = resolved.map(lambda p: Path(p).is_file())
    return resolved, exists


def load_csv(
    csv_path: str | Path,
    root: str | Path | None = None,
    boxes_csv: str | Path | None = None,
    path_column: str | None = None,
    patient_column: str | None = None,
    uncertainty: UncertaintyPolicy = DEFAULT_UNCERTAINTY,
    label_names: list[str] | None = None,
) -> IndexedDataset:
    """Index a table of image paths and label columns (e.g. the course notebook's train-small.csv).

    Label columns are every numeric column that is not metadata, unless ``label_names`` names them.
    Rows whose file is missing are dropped and counted. Without a patient column each image counts
    as its own patient.
    """
    table = _read_table(csv_path)
    root = Path(root) if root else Path(csv_path).parent
    path_col = _pick(table, path_column, _PATH_COLUMNS, "path")
    if path_col is None:
        raise DatasetError(f"no path column found (tried {list(_PATH_COLUMNS)}); name it with path_column")
    patient_col = _pick(table, patient_column, _PATIENT_COLUMNS, "patient")
    id_col = next((c for c in _ID_COLUMNS if c in table.columns and c != path_col), None)
    meta = pd.DataFrame({"image_id": table[id_col] if id_col else table[path_col].astype(str)})
    meta["path"], exists = _resolve(table[path_col], root)
    meta["patient_id"] = table[patient_col].astype(str) if patient_col else meta["image_id"]
    used = {path_col, patient_col, id_col}
    for column, target in _META_ALIASES.items():
        if column in table.columns and target not in meta.columns:
            meta[target] = table[column]
            used.add(column)
    for column in ("view", "sex", "age", "split", "source"):
        if column in table.columns:
            meta[column] = table[column]
            used.add(column)
    if label_names is None:
        numeric = table.select_dtypes("number").columns
        label_names = [c for c in numeric if c not in used and c not in META_COLUMNS]
    missing = [c for c in label_names if c not in table.columns]
    if missing or not label_names:
        numbers = set(table.select_dtypes("number").columns)
        text = [c for c in table.columns if c not in used | numbers and c not in META_COLUMNS]
        hint = f"; columns with values other than numbers: {text[:10]}" if text else ""
        raise DatasetError(
            f"label columns {missing or '(none found)'} not in {Path(csv_path).name} (labels are "
            f"columns of 1, 0 or empty){hint}"
        )
    labels = apply_uncertainty(table[label_names], uncertainty)
    notes: dict[str, object] = {"dropped_missing_image": int((~exists).sum())}
    if not patient_col:
        notes["patient_ids"] = "unknown: each image counts as its own patient"
    if not exists.any():
        raise DatasetError(f"none of the {len(table)} image paths exist under {root}")
    index = build_index(meta[exists.to_numpy()], labels[exists.to_numpy()])
    boxes = validate_boxes(_read_table(boxes_csv), index) if boxes_csv else empty_boxes()
    return IndexedDataset(index=index, boxes=boxes, notes=notes)


def load_chexpert(
    csv_path: str | Path, root: str | Path | None = None, uncertainty: UncertaintyPolicy = DEFAULT_UNCERTAINTY
) -> IndexedDataset:
    """Index a CheXpert-style table; uncertain (-1) labels follow the named policy (NaN by default).

    Paths in the table start with the release folder (``CheXpert-v1.0-small/train/patient00001/...``),
    so ``root`` is the folder that holds it (by default the table's grandparent folder). The patient
    id is read from the ``patientNNNNN`` part of the path.
    """
    table = _read_table(csv_path)
    missing = [c for c in ("Path", *CHEXPERT_LABELS) if c not in table.columns]
    if missing:
        raise DatasetError(f"{Path(csv_path).name} lacks CheXpert columns {missing}")
    root = Path(root) if root else Path(csv_path).resolve().parent.parent
    paths = table["Path"].astype(str)
    meta = pd.DataFrame({"image_id": paths})
    meta["path"], exists = _resolve(paths, root)
    meta["patient_id"] = paths.map(lambda p: (m := re.search(r"(patient\d+)", p)) and m.group(1)).fillna(
        paths
    )
    if "AP/PA" in table.columns:
        meta["view"] = table["AP/PA"].fillna(table.get("Frontal/Lateral", pd.Series(index=table.index)))
    for column, target in (("Sex", "sex"), ("Age", "age")):
        if column in table.columns:
            meta[target] = table[column]
    meta["source"] = "chexpert"
    labels = apply_uncertainty(table[list(CHEXPERT_LABELS)], uncertainty)
    if not exists.any():
        raise DatasetError(f"none of the {len(table)} image paths exist under {root}")
    notes = {"dropped_missing_image": int((~exists).sum()), "uncertainty_policy": uncertainty}
    return IndexedDataset(index=build_index(meta[exists.to_numpy()], labels[exists.to_numpy()]), notes=notes)
