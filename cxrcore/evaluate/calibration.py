"""Calibration of predicted probabilities for one label: reliability curve, ECE and Brier score.

Also holds `known_pairs`, the validation every per-label metric in `cxrcore.evaluate` starts from
(it lives here because this module imports no other evaluation module, so every one can import it).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss

log = logging.getLogger(__name__)

RELIABILITY_COLUMNS = ("bin_lower", "bin_upper", "mean_predicted", "fraction_positive", "count")


def known_pairs(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (label, score) pairs of one label whose label is known, after checking shapes and values.

    Raises:
        ValueError: arrays that are not 1-D of one length, known labels other than 0/1, or a known
            label whose score is not finite.
    """
    t = np.asarray(y_true, dtype=float)
    s = np.asarray(y_score, dtype=float)
    if t.ndim != 1 or t.shape != s.shape:
        raise ValueError(
            f"y_true and y_score must be 1-D arrays of one length, got shapes {t.shape} and {s.shape}"
        )
    known = ~np.isnan(t)
    t, s = t[known], s[known]
    bad = np.unique(t[(t != 0) & (t != 1)])
    if bad.size:
        raise ValueError(f"labels must be 1, 0 or NaN (unknown), got {bad[:5].tolist()}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{int(np.sum(~np.isfinite(s)))} images with a known label have a non-finite score")
    return t.astype(np.int8), s


def _known_probabilities(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Known pairs of one label, checking that the predictions are probabilities in [0, 1]."""
    t, p = known_pairs(y_true, y_prob)
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError(f"probabilities must lie in [0, 1], got range [{p.min():g}, {p.max():g}]")
    return t, p


def reliability_curve(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Mean prediction and fraction of positives in each of `n_bins` equal-width probability bins.

    Bins are [k/n_bins, (k+1)/n_bins) with the last one closed at 1. Every bin has a row; an
    empty bin has count 0 and NaN means. Images with an unknown (NaN) label are ignored.
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    n_bins = int(n_bins)
    t, p = _known_probabilities(y_true, y_prob)
    index = np.minimum((p * n_bins).astype(np.intp), n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(index, weights=p, minlength=n_bins) / count
        fraction_positive = np.bincount(index, weights=t, minlength=n_bins) / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame(
        {
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "mean_predicted": mean_predicted,
            "fraction_positive": fraction_positive,
            "count": count,
        },
        columns=list(RELIABILITY_COLUMNS),
    )


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 10) -> float:
    """Count-weighted mean gap |fraction positive - mean prediction| over equal-width bins.

    NaN (with a warning) when no image has a known label.
    """
    curve = reliability_curve(y_true, y_prob, n_bins)
    total = int(curve["count"].sum())
    if total == 0:
        warnings.warn("expected calibration error is undefined: no image has a known label", stacklevel=2)
        return float("nan")
    filled = curve[curve["count"] > 0]
    gaps = (filled["fraction_positive"] - filled["mean_predicted"]).abs()
    return float((gaps * filled["count"]).sum() / total)


def brier_score(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Mean squared error of the probabilities (scikit-learn's Brier score) over known labels.

    NaN (with a warning) when no image has a known label.
    """
    t, p = _known_probabilities(y_true, y_prob)
    if t.size == 0:
        warnings.warn("Brier score is undefined: no image has a known label", stacklevel=2)
        return float("nan")
    return float(brier_score_loss(t, p, labels=[0, 1]))
