"""Per-label classification metrics that tolerate unknown labels and single-class splits."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)


def auroc_per_label(y_true: np.ndarray, y_score: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """AUROC of each label over the images where it is known; NaN (with a warning) if one class is missing."""
    from sklearn.metrics import roc_auc_score

    out: dict[str, float] = {}
    for j, name in enumerate(labels):
        known = ~np.isnan(y_true[:, j])
        t = y_true[known, j]
        if t.size == 0 or t.min() == t.max():
            warnings.warn(
                f"AUROC of {name!r} is undefined: only one class among {t.size} known labels", stacklevel=2
            )
            out[name] = float("nan")
            continue
        out[name] = float(roc_auc_score(t, y_score[known, j]))
    return out


def macro_mean(values: dict[str, float]) -> float:
    """Mean over labels with a defined value; NaN if none is defined."""
    finite = [v for v in values.values() if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")
