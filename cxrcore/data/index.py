"""The dataset index: one DataFrame row per image, validated against one contract.

Columns: ``image_id``, ``path``, ``patient_id``, then optional ``view``, ``sex``, ``age``, ``split``,
``source``, then one float column per label (1 present, 0 absent, NaN unknown). Boxes live in a
second frame with columns ``image_id, label, x, y, w, h`` in the pixel space of the file on disk.
Every source adapter produces exactly this; every page and metric consumes exactly this.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from cxrcore.labels import LabelError, check_label_matrix

REQUIRED_COLUMNS: tuple[str, ...] = ("image_id", "path", "patient_id")
OPTIONAL_COLUMNS: tuple[str, ...] = ("view", "sex", "age", "split", "source")
META_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
BOX_COLUMNS: tuple[str, ...] = ("image_id", "label", "x", "y", "w", "h")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
# Models are fitted on train; thresholds, ensembles and the best epoch are chosen on valid; test scores.
TRAIN_SPLIT, VALID_SPLIT, TEST_SPLIT = SPLITS
ALL_SPLITS = "all"  # every row with an image file, whatever its split
SPLIT_CHOICES: tuple[str, ...] = (*SPLITS, ALL_SPLITS)  # what predictions and evaluations run on


class DatasetError(ValueError):
    """A dataset index or its source files break the contract; the message says how."""


@dataclass
class IndexedDataset:
    """What a source adapter returns: the index, its boxes (possibly empty) and notes for the user."""

    index: pd.DataFrame
    boxes: pd.DataFrame = field(default_factory=lambda: empty_boxes())
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """The label columns of the index, in order."""
        return label_columns(self.index)


def empty_boxes() -> pd.DataFrame:
    """An empty boxes frame with the contract's columns and dtypes."""
    return pd.DataFrame(
        {
            "image_id": pd.Series(dtype="string"),
            "label": pd.Series(dtype="string"),
            **{c: pd.Series(dtype="float64") for c in ("x", "y", "w", "h")},
        }
    )


def label_columns(index: pd.DataFrame) -> list[str]:
    """The label columns of an index: every column that is not a metadata column."""
    return [c for c in index.columns if c not in META_COLUMNS]


def build_index(meta: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Assemble a contract index from metadata columns and a label frame, then validate it."""
    meta = meta.reset_index(drop=True)
    labels = labels.reset_index(drop=True).astype("float64")
    ordered = [c for c in META_COLUMNS if c in meta.columns]
    index = pd.concat([meta[ordered], labels], axis=1)
    return validate_index(index)


def validate_index(index: pd.DataFrame) -> pd.DataFrame:
    """Check an index against the contract and return it with normalised dtypes.

    Raises:
        DatasetError: missing required columns, empty or duplicate ids, no label columns, label
            values outside {1, 0, NaN}, unknown split names.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in index.columns]
    if missing:
        raise DatasetError(
            f"index is missing required column(s) {missing}; it has {list(index.columns)[:12]}"
        )
    labels = label_columns(index)
    if not labels:
        raise DatasetError("index has no label columns (every column is a metadata column)")
    ids = index["image_id"]
    if ids.isna().any() or (ids.astype(str).str.len() == 0).any():
        raise DatasetError(
            f"{int(ids.isna().sum() + (ids.astype(str) == '').sum())} row(s) have an empty image_id"
        )
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        examples = ", ".join(map(str, dup.unique()[:5]))
        raise DatasetError(f"{dup.nunique()} image_id value(s) occur more than once (e.g. {examples})")
    if index["patient_id"].isna().any():
        raise DatasetError(f"{int(index['patient_id'].isna().sum())} row(s) have no patient_id")
    try:
        check_label_matrix(index[labels])
    except LabelError as exc:
        raise DatasetError(str(exc)) from None
    out = index.copy()
    for column in ("image_id", "patient_id", "path", "view", "sex", "split", "source"):
        if column in out.columns:
            out[column] = out[column].astype("string")
    if "age" in out.columns:
        out["age"] = pd.to_numeric(out["age"], errors="coerce").astype("float64")
    if "split" in out.columns:
        unknown = set(out["split"].dropna().unique()) - set(SPLITS)
        if unknown:
            raise DatasetError(f"unknown split name(s) {sorted(unknown)}; valid options: {', '.join(SPLITS)}")
    out[labels] = out[labels].apply(pd.to_numeric).astype("float64")
    return out


def validate_boxes(boxes: pd.DataFrame, index: pd.DataFrame | None = None) -> pd.DataFrame:
    """Check a boxes frame (columns, finite non-negative sizes, ids known to the index)."""
    missing = [c for c in BOX_COLUMNS if c not in boxes.columns]
    if missing:
        raise DatasetError(f"boxes are missing column(s) {missing}")
    out = boxes[list(BOX_COLUMNS)].reset_index(drop=True).copy()
    out["image_id"] = out["image_id"].astype("string")
    out["label"] = out["label"].astype("string")
    coords = out[["x", "y", "w", "h"]].apply(pd.to_numeric, errors="coerce").astype("float64")
    bad = (
        ~np.isfinite(coords.to_numpy()).all(axis=1)
        | (coords["w"] <= 0).to_numpy()
        | (coords["h"] <= 0).to_numpy()
    )
    if bad.any():
        raise DatasetError(f"{int(bad.sum())} box(es) have missing, non-finite or non-positive coordinates")
    out[["x", "y", "w", "h"]] = coords
    if index is not None:
        unknown = set(out["image_id"]) - set(index["image_id"])
        if unknown:
            raise DatasetError(
                f"{len(unknown)} box(es) refer to images not in the index (e.g. {sorted(unknown)[:3]})"
            )
    return out


def index_fingerprint(index: pd.DataFrame) -> str:
    """A short content hash of an index (ids, paths, patients, labels; not the split).

    Paths count relative to the folder all images share, so the same data copied or mounted
    elsewhere keeps its fingerprint (a model card's data fingerprint holds on another machine).
    """
    cols = [c for c in index.columns if c != "split"]
    table = index[cols].sort_values("image_id")
    if "path" in table.columns and len(table):
        paths = [PurePosixPath(str(p).replace("\\", "/")) for p in table["path"]]
        try:
            root = PurePosixPath(posixpath.commonpath([str(p.parent) for p in paths]))
        except ValueError:  # absolute and relative paths mixed: nothing shared to strip
            root = None
        if root is not None:
            relative = [p.relative_to(root).as_posix() for p in paths]
            table = table.assign(path=pd.Series(relative, index=table.index, dtype=table["path"].dtype))
    hashed = pd.util.hash_pandas_object(table, index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()[:16]
