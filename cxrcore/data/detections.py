"""The detections contract: a detector's boxes as a DataFrame, the boxes frame plus a score.

Columns ``image_id, label, x, y, w, h, score``: (x, y) is the top-left corner and (w, h) the size of a box in
the pixel space of the original image (the file on disk), as in the boxes frame of ``cxrcore.data.index``;
``score`` is the detector's confidence in [0, 1]. It lives beside the boxes frame, at the bottom layer, so
that detectors, metrics, fusion and pages all read and write the same frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxrcore.data.index import BOX_COLUMNS, DatasetError

DETECTION_COLUMNS: tuple[str, ...] = (*BOX_COLUMNS, "score")
DEFAULT_SCORE_THRESHOLD = 0.5  # boxes the pages show and mAR / F1 count by default; AP and FROC sweep all
_COORDS = ("x", "y", "w", "h")
_EXAMPLES = 3  # bad rows quoted in an error message


def empty_detections() -> pd.DataFrame:
    """An empty detections frame with the contract's columns and dtypes."""
    return pd.DataFrame(
        {
            "image_id": pd.Series(dtype="string"),
            "label": pd.Series(dtype="string"),
            **{c: pd.Series(dtype="float64") for c in (*_COORDS, "score")},
        }
    )


def _examples(frame: pd.DataFrame, bad: np.ndarray) -> str:
    """The first few offending rows, as "row i: {...}" for an error message."""
    rows = frame.loc[bad].head(_EXAMPLES)
    return "; ".join(f"row {i}: {row.to_dict()}" for i, row in rows.iterrows())


def _check_names(frame: pd.DataFrame, column: str) -> None:
    values = frame[column]
    bad = (values.isna() | (values.astype("string").str.len() == 0)).to_numpy(dtype=bool)
    if bad.any():
        raise DatasetError(f"{int(bad.sum())} detection(s) have an empty {column} ({_examples(frame, bad)})")


def validate_detections(frame: pd.DataFrame) -> pd.DataFrame:
    """Check a detections frame against the contract; return a copy with its columns in order and dtypes.

    Raises:
        DatasetError: a missing column, an empty image_id or label, a coordinate that is not a finite number,
            a box whose width or height is not positive, or a score outside [0, 1]; the message quotes the
            first offending rows.
    """
    missing = [c for c in DETECTION_COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"detections are missing column(s) {missing}; the contract's columns are "
            f"{list(DETECTION_COLUMNS)}, and the frame has {list(frame.columns)[:12]}"
        )
    out = frame[list(DETECTION_COLUMNS)].reset_index(drop=True).copy()
    for column in ("image_id", "label"):
        _check_names(out, column)
        out[column] = out[column].astype("string")
    numbers = out[[*_COORDS, "score"]].apply(pd.to_numeric, errors="coerce").astype("float64")
    values = numbers.to_numpy()
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise DatasetError(
            f"{int(bad.sum())} detection(s) have a missing or non-finite coordinate or score "
            f"({_examples(frame.reset_index(drop=True), bad)})"
        )
    bad = (numbers["w"] <= 0).to_numpy() | (numbers["h"] <= 0).to_numpy()
    if bad.any():
        raise DatasetError(
            f"{int(bad.sum())} detection(s) have a width or height <= 0 px "
            f"({_examples(frame.reset_index(drop=True), bad)})"
        )
    bad = ((numbers["score"] < 0) | (numbers["score"] > 1)).to_numpy()
    if bad.any():
        raise DatasetError(
            f"{int(bad.sum())} detection(s) have a score outside [0, 1] "
            f"({_examples(frame.reset_index(drop=True), bad)})"
        )
    out[list(numbers.columns)] = numbers
    return out
