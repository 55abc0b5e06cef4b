"""How a checkpoint's logits are read: calibrated probabilities and per-label operating points.

Both are stored in the model card (``calibration`` and ``operating_points``) and fitted on a
validation split by ``cxrcore.evaluate.recalibrate``; this module only reads and applies them, so
that every caller (explanations, stored predictions, the upload pages, the batch reports) turns
logits into probabilities the same way: ``calibrated_probabilities(card, logits)``, which
``Checkpoint.probabilities`` calls.

The stored forms (JSON in the card), per label under ``"labels"``:

- ``temperature``: ``{"temperature": T}``, p = sigmoid(z / T);
- ``platt``: ``{"slope": a, "intercept": b}``, p = sigmoid(a z + b);
- ``isotonic``: ``{"logits": [...], "probabilities": [...]}``, p = the piecewise-linear interpolation
  through those points (clipped at both ends), as scikit-learn's ``IsotonicRegression`` predicts.

A label without an entry (one class only on validation) keeps the plain sigmoid. Operating points are
``{"rule": ..., "target": ..., "thresholds": {label: threshold}}``: a label is called positive when its
calibrated probability is >= its threshold.

A lesion detector stores its box score threshold in the same ``operating_points`` field (chosen by
``cxrcore.evaluate.detector_threshold``): one cut pooled over its classes, written under every class.
``default_score_threshold(card)`` is where every page and command starts from: that cut, or
``DEFAULT_SCORE_THRESHOLD`` (0.5) for a detector without one; ``score_threshold_source(card)`` says which.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cxrcore.data.detections import DEFAULT_SCORE_THRESHOLD
from cxrcore.hints import unknown_choice

# How a probability stands against its label's threshold.
ABOVE, BELOW, NO_THRESHOLD = "above", "below", "no threshold"


def side(probability: float, threshold: float | None) -> str:
    """Whether a probability is at or above its threshold ("above"), below it, or has none."""
    if threshold is None or not math.isfinite(threshold):
        return NO_THRESHOLD
    return ABOVE if probability >= threshold else BELOW


logger = logging.getLogger(__name__)

CALIBRATION_METHODS: tuple[str, ...] = ("temperature", "platt", "isotonic")
AUTO_METHOD = "auto"  # when fitting: Platt after a class-reweighting loss, temperature scaling otherwise
NO_CALIBRATION = "none"  # when fitting: store no calibration (the plain sigmoid)
CALIBRATION_CHOICES: tuple[str, ...] = (AUTO_METHOD, *CALIBRATION_METHODS, NO_CALIBRATION)
CALIBRATION_NAMES: dict[str, str] = {
    AUTO_METHOD: "automatic (Platt after a class-weighted loss, else temperature scaling)",
    "temperature": "temperature scaling (one temperature per label)",
    "platt": "Platt scaling (slope and intercept per label)",
    "isotonic": "isotonic regression (monotone steps per label)",
    NO_CALIBRATION: "none (the plain sigmoid)",
}
_PARAMETERS = {
    "temperature": ("temperature",),
    "platt": ("slope", "intercept"),
    "isotonic": ("logits", "probabilities"),
}


class ReadoutError(ValueError):
    """A stored calibration or set of operating points that does not fit the model."""


def expit(z: np.ndarray) -> np.ndarray:
    """The logistic sigmoid, without overflow for large negative logits (float64)."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(z, dtype=np.float64)))


def _number(value: Any, what: str) -> float:
    """A finite float, or ReadoutError naming what it was meant to be."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ReadoutError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _check_label_params(method: str, label: str, params: Any) -> None:
    """Reject one label's stored parameters when they do not fit the method."""
    if not isinstance(params, Mapping):
        raise ReadoutError(f"calibration of {label!r} must be a mapping, got {type(params).__name__}")
    missing = [k for k in _PARAMETERS[method] if k not in params]
    if missing:
        raise ReadoutError(f"{method} calibration of {label!r} lacks {missing}")
    if method == "temperature" and not _number(params["temperature"], f"temperature of {label!r}") > 0:
        raise ReadoutError(f"temperature of {label!r} must be positive, got {params['temperature']!r}")
    if method == "platt":
        _number(params["slope"], f"slope of {label!r}")
        _number(params["intercept"], f"intercept of {label!r}")
    if method == "isotonic":
        x, y = np.asarray(params["logits"], float), np.asarray(params["probabilities"], float)
        if x.ndim != 1 or x.shape != y.shape or x.size < 1 or np.any(np.diff(x) < 0):
            raise ReadoutError(
                f"isotonic calibration of {label!r} needs increasing logits, one per probability"
            )
        if not (np.isfinite(x).all() and np.all((y >= 0) & (y <= 1))):
            raise ReadoutError(f"isotonic calibration of {label!r} has values outside the valid range")


def check_calibration(calibration: Mapping[str, Any] | None, labels: Sequence[str]) -> None:
    """Raise ReadoutError unless ``calibration`` is empty or a stored calibration of these labels."""
    if not calibration:
        return
    method = calibration.get("method")
    if method not in CALIBRATION_METHODS:
        raise ReadoutError(unknown_choice("calibration method", str(method), CALIBRATION_METHODS))
    per_label = calibration.get("labels")
    if not isinstance(per_label, Mapping):
        raise ReadoutError("a calibration needs a 'labels' mapping of per-label parameters")
    unknown = sorted(set(per_label) - set(labels))
    if unknown:
        raise ReadoutError(f"calibration names labels the model does not have: {unknown}")
    for label, params in per_label.items():
        _check_label_params(method, label, params)


def check_operating_points(points: Mapping[str, Any] | None, labels: Sequence[str]) -> None:
    """Raise ReadoutError unless ``points`` is empty or holds a threshold in [0, 1] per known label."""
    if not points:
        return
    thresholds = points.get("thresholds")
    if not isinstance(thresholds, Mapping):
        raise ReadoutError("operating points need a 'thresholds' mapping of label to threshold")
    unknown = sorted(set(thresholds) - set(labels))
    if unknown:
        raise ReadoutError(f"operating points name labels the model does not have: {unknown}")
    for label, value in thresholds.items():
        if not 0 <= _number(value, f"threshold of {label!r}") <= 1:
            raise ReadoutError(f"threshold of {label!r} must lie in [0, 1], got {value!r}")


def apply_label(method: str, params: Mapping[str, Any], logits: np.ndarray) -> np.ndarray:
    """Calibrated probabilities of one label's logits (any shape) under one stored method."""
    z = np.asarray(logits, dtype=np.float64)
    if method == "temperature":
        return expit(z / float(params["temperature"]))
    if method == "platt":
        return expit(float(params["slope"]) * z + float(params["intercept"]))
    if method == "isotonic":
        x = np.asarray(params["logits"], dtype=np.float64)
        y = np.asarray(params["probabilities"], dtype=np.float64)
        return np.interp(z, x, y)
    raise ReadoutError(unknown_choice("calibration method", method, CALIBRATION_METHODS))


def calibrate_logits(
    calibration: Mapping[str, Any] | None, labels: Sequence[str], logits: np.ndarray
) -> np.ndarray:
    """Probabilities (float64, the shape of ``logits``, last axis = ``labels``) under a stored calibration.

    Without a calibration, or for a label it leaves out, the probability is the plain sigmoid.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.shape[-1:] != (len(labels),):
        raise ReadoutError(f"logits of shape {z.shape} do not end in the model's {len(labels)} labels")
    probs = expit(z)
    if not calibration:
        return probs
    method = str(calibration["method"])
    for j, label in enumerate(labels):
        params = calibration["labels"].get(label)
        if params is not None:
            probs[..., j] = apply_label(method, params, z[..., j])
    return probs


def calibrated_probabilities(card: Any, logits: np.ndarray) -> np.ndarray:
    """A model card's calibrated probabilities for logits (..., n_labels): the one place they come from."""
    return calibrate_logits(card.calibration, card.labels, logits)


def thresholds(card: Any) -> dict[str, float]:
    """The card's per-label operating points (labels without one are left out; empty without any)."""
    points = card.operating_points or {}
    return {label: float(value) for label, value in (points.get("thresholds") or {}).items()}


def calibration_method(card: Any) -> str | None:
    """The card's calibration method, or None when its probabilities are the plain sigmoid."""
    return (card.calibration or {}).get("method")


def default_score_threshold(card: Any) -> float:
    """A detector's default box score threshold: its card's cut chosen on validation, else 0.5.

    The card stores one cut pooled over the classes under every class; the lowest stored value is taken,
    so that no class's boxes above its own cut are hidden should the cuts ever differ. A classifier's
    operating points are probability thresholds, not box score cuts: a classifier card gives 0.5.
    """
    cuts = thresholds(card) if getattr(card, "task", None) == "detect" else {}
    return min(cuts.values()) if cuts else DEFAULT_SCORE_THRESHOLD


def score_threshold_source(card: Any) -> str:
    """Where ``default_score_threshold(card)`` comes from, in words for the pages and the command line."""
    if getattr(card, "task", None) != "detect" or not thresholds(card):
        return f"default {DEFAULT_SCORE_THRESHOLD:g} (no cut chosen on validation in the model card)"
    points = card.operating_points or {}
    fitted = points.get("fitted_on") or {}
    where = f"{fitted.get('dataset', 'its dataset')}/{fitted.get('split', 'valid')}"
    return f"chosen on validation ({where}, {points.get('description') or points.get('rule')})"


def shared_score_threshold(cards: Sequence[Any]) -> tuple[float, str]:
    """One box score threshold for detectors compared or fused together, and where it comes from.

    The lowest of their defaults: fusing boxes lowers the scores of boxes only some members found, so a
    higher member's cut would hide boxes the lower member's own cut keeps.
    """
    if not cards:
        return DEFAULT_SCORE_THRESHOLD, score_threshold_source(None)
    values = [default_score_threshold(card) for card in cards]
    chosen = [bool(thresholds(card)) and getattr(card, "task", None) == "detect" for card in cards]
    if len(set(values)) == 1 and len(set(chosen)) == 1:
        return values[0], score_threshold_source(cards[0])
    words = ["chosen on validation" if c else "default" for c in chosen]
    each = ", ".join(f"{v:.2f} ({w})" for v, w in zip(values, words, strict=True))
    return min(values), f"the lowest of the members' defaults: {each}"
