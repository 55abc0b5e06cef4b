"""Calibration of predicted probabilities: reliability curve, ECE and Brier score, and fitting a calibration.

The fitting functions turn one label's validation logits into the parameters stored in a model card
(see ``cxrcore.models.readout`` for the stored forms and how they are applied):

- temperature scaling: one temperature T > 0 minimising the log-loss of sigmoid(z / T);
- Platt scaling: a logistic regression (scikit-learn's, unpenalised) of the label on its logit, with
  Platt's smoothed targets ((positives + 1) / (positives + 2) and 1 / (negatives + 2)), which keep a
  label with few positives from getting probabilities of exactly 0 or 1; a slope that comes out
  negative (the logit ranks validation images the wrong way round) is fixed at 1, keeping the ranking,
  and only the intercept is fitted;
- isotonic regression (scikit-learn's), a monotone step function of the logit.

Temperature scaling cannot move a logit's zero, so it cannot undo a loss that reweights the classes
(frequency-weighted BCE centres every label's logits near 0 whatever its prevalence); Platt scaling's
intercept can. ``default_method`` picks Platt for those models and temperature scaling otherwise.

Also holds `known_pairs`, the validation every per-label metric in `cxrcore.evaluate` starts from
(it lives here because this module imports no other evaluation module, so every one can import it).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cxrcore.hints import unknown_choice
from cxrcore.models.readout import (
    AUTO_METHOD,
    CALIBRATION_CHOICES,
    CALIBRATION_METHODS,
    NO_CALIBRATION,
    apply_label,
    calibrate_logits,
    expit,
)

log = logging.getLogger(__name__)

RELIABILITY_COLUMNS = ("bin_lower", "bin_upper", "mean_predicted", "fraction_positive", "count")
REWEIGHTING_LOSSES = ("weighted_bce", "pos_weight_bce")  # losses that shift every logit by the class odds
TEMPERATURE_BOUNDS = (0.05, 20.0)
SCORE_COLUMNS = ("n", "positives", "ece", "brier")
MEAN_ROW = "mean"


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
    from sklearn.metrics import brier_score_loss

    t, p = _known_probabilities(y_true, y_prob)
    if t.size == 0:
        warnings.warn("Brier score is undefined: no image has a known label", stacklevel=2)
        return float("nan")
    return float(brier_score_loss(t, p, labels=[0, 1]))


def _log_loss_of_logits(t: np.ndarray, s: np.ndarray) -> float:
    """Mean binary cross-entropy of soft or hard targets ``t`` against logits ``s``, without overflow."""
    return float(np.mean(np.logaddexp(0.0, s) - t * s))


def fit_temperature(y_true: np.ndarray, logits: np.ndarray) -> float:
    """The temperature T in ``TEMPERATURE_BOUNDS`` minimising the log-loss of sigmoid(logits / T)."""
    from scipy.optimize import minimize_scalar  # fitting only: keeps the command line's start quick

    t, z = known_pairs(y_true, logits)
    low, high = np.log(TEMPERATURE_BOUNDS)
    found = minimize_scalar(
        lambda log_t: _log_loss_of_logits(t, z / np.exp(log_t)), bounds=(low, high), method="bounded"
    )
    return float(np.exp(found.x))


def _platt_targets(t: np.ndarray) -> np.ndarray:
    """Platt's smoothed targets: (positives + 1) / (positives + 2) for positives, 1 / (negatives + 2) else."""
    positives = int(t.sum())
    negatives = t.size - positives
    return np.where(t == 1, (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0))


def fit_platt(y_true: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    """Slope and intercept of Platt scaling, sigmoid(slope * logit + intercept), on smoothed targets."""
    from scipy.optimize import minimize_scalar
    from sklearn.linear_model import LogisticRegression

    t, z = known_pairs(y_true, logits)
    soft = _platt_targets(t)
    # A soft target is a positive and a negative copy of the image, weighted by the target.
    x = np.concatenate([z, z])[:, None]
    y = np.concatenate([np.ones_like(soft), np.zeros_like(soft)])
    weights = np.concatenate([soft, 1.0 - soft])
    model = LogisticRegression(C=np.inf, max_iter=1000).fit(x, y, sample_weight=weights)
    slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
    if slope > 0:
        return {"slope": slope, "intercept": intercept}
    found = minimize_scalar(
        lambda b: _log_loss_of_logits(soft, z + b), bounds=(-30.0, 30.0), method="bounded"
    )
    return {"slope": 1.0, "intercept": float(found.x), "note": "slope fixed at 1 (negative on validation)"}


def fit_isotonic(y_true: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    """The points of an isotonic regression of the label on its logit (clipped beyond both ends)."""
    from sklearn.isotonic import IsotonicRegression

    t, z = known_pairs(y_true, logits)
    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(z, t)
    return {
        "logits": [float(v) for v in model.X_thresholds_],
        "probabilities": [float(v) for v in model.y_thresholds_],
    }


def fit_label(method: str, y_true: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    """One label's stored calibration parameters by ``method`` (one of ``CALIBRATION_METHODS``)."""
    if method == "temperature":
        return {"temperature": fit_temperature(y_true, logits)}
    if method == "platt":
        return fit_platt(y_true, logits)
    if method == "isotonic":
        return fit_isotonic(y_true, logits)
    raise ValueError(unknown_choice("calibration method", method, CALIBRATION_METHODS))


def default_method(training_loss: str | None) -> str:
    """Platt scaling after a class-reweighting loss (logits near 0 at any prevalence), else temperature."""
    return "platt" if training_loss in REWEIGHTING_LOSSES else "temperature"


def fit_calibration(
    y_true: np.ndarray, logits: np.ndarray, labels: Sequence[str], method: str
) -> dict[str, Any]:
    """A calibration of every label with both classes among its known images (the card's stored form).

    Returns ``{"method", "labels": {label: parameters}, "skipped": {label: reason}}``; a skipped label
    keeps the plain sigmoid.
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(unknown_choice("calibration method", method, CALIBRATION_METHODS))
    y, z = np.asarray(y_true, dtype=float), np.asarray(logits, dtype=float)
    if y.shape != z.shape or y.ndim != 2 or y.shape[1] != len(labels):
        raise ValueError(f"labels {y.shape} and logits {z.shape} must both be (n_images, {len(labels)})")
    fitted: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for j, label in enumerate(labels):
        t, _ = known_pairs(y[:, j], z[:, j])
        positives = int(t.sum())
        if positives == 0 or positives == t.size:
            skipped[label] = f"{positives} positive(s) and {t.size - positives} negative(s) on validation"
            continue
        fitted[label] = fit_label(method, y[:, j], z[:, j])
    if skipped:
        log.info("left uncalibrated (one class only): %s", ", ".join(skipped))
    return {"method": method, "labels": fitted, "skipped": skipped}


def calibration_scores(y_true: np.ndarray, y_prob: np.ndarray, labels: Sequence[str]) -> pd.DataFrame:
    """Known images, positives, ECE and Brier score per label, and their mean over labels (row "mean")."""
    y, p = np.asarray(y_true, dtype=float), np.asarray(y_prob, dtype=float)
    rows = {}
    for j, label in enumerate(labels):
        t, q = _known_probabilities(y[:, j], p[:, j])
        empty = t.size == 0
        rows[label] = {
            "n": int(t.size),
            "positives": int(t.sum()),
            "ece": float("nan") if empty else expected_calibration_error(t, q),
            "brier": float("nan") if empty else brier_score(t, q),
        }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(SCORE_COLUMNS))
    table.loc[MEAN_ROW] = [int(table["n"].sum()), int(table["positives"].sum())] + [
        float(table[c].mean()) for c in ("ece", "brier")
    ]
    return table


def before_after(
    y_true: np.ndarray, logits: np.ndarray, calibration: dict[str, Any] | None, labels: Sequence[str]
) -> pd.DataFrame:
    """ECE and Brier score per label of the plain sigmoid ("before") and of the calibration ("after")."""
    return compare_scores(y_true, expit(logits), calibrate_logits(calibration, labels, logits), labels)


def compare_scores(
    y_true: np.ndarray, before_prob: np.ndarray, after_prob: np.ndarray, labels: Sequence[str]
) -> pd.DataFrame:
    """Known images, positives, and ECE and Brier score of two sets of probabilities, per label and mean."""
    before = calibration_scores(y_true, before_prob, labels)
    after = calibration_scores(y_true, after_prob, labels)
    table = before[["n", "positives"]].copy()
    for column in ("ece", "brier"):
        table[f"{column}_before"] = before[column]
        table[f"{column}_after"] = after[column]
    return table


__all__ = [
    "AUTO_METHOD",
    "CALIBRATION_CHOICES",
    "NO_CALIBRATION",
    "apply_label",
    "before_after",
    "brier_score",
    "calibration_scores",
    "compare_scores",
    "default_method",
    "expected_calibration_error",
    "fit_calibration",
    "fit_isotonic",
    "fit_label",
    "fit_platt",
    "fit_temperature",
    "known_pairs",
    "reliability_curve",
]
