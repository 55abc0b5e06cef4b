"""Per-label operating points chosen on a validation split and stored with the checkpoint.

A label is called positive when its (calibrated) probability is >= its threshold. The rules are the
ones ``python -m cxrcore evaluate --threshold`` knows (``OPERATING_POINTS`` in
``cxrcore.evaluate.classification``): Youden's J by default, a target sensitivity or specificity, or
maximum F1. The stored form (the card's ``operating_points``) is read by ``cxrcore.models.readout``.
A lesion detector's operating point, one box score cut, is stored in the same field by ``DETECTOR_RULE``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from cxrcore.evaluate.classification import (
    DEFAULT_THRESHOLD_RULE,
    OPERATING_POINTS,
    TARGET_RULES,
    THRESHOLD_RULE_NAMES,
    operating_point,
)
from cxrcore.hints import unknown_choice
from cxrcore.models.readout import ABOVE, BELOW, NO_THRESHOLD, side  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

# The rules a checkpoint's stored operating points may be chosen by, and the default.
STORED_RULES: tuple[str, ...] = OPERATING_POINTS
DEFAULT_RULE = DEFAULT_THRESHOLD_RULE
# A detector's operating point is one box score cut (``cxrcore.evaluate.detector_threshold``), by this rule.
DETECTOR_RULE = "max_f1_iou50"
DETECTOR_RULES: tuple[str, ...] = (DETECTOR_RULE,)
DETECTOR_RULE_NAMES: dict[str, str] = {
    DETECTOR_RULE: "highest overall F1 at IoU 0.5, one cut pooled over every class",
}


def check_rule(rule: str, target: float | None) -> float | None:
    """The target to store for a rule (None for rules without one); ValueError naming the valid options."""
    if rule not in STORED_RULES:
        raise ValueError(unknown_choice("operating-point rule", rule, STORED_RULES))
    if rule not in TARGET_RULES:
        return None
    if target is None or not 0 < float(target) <= 1:
        raise ValueError(f"rule {rule!r} needs a target in (0, 1] (for example 0.9), got {target!r}")
    return float(target)


def choose_operating_points(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    labels: Sequence[str],
    rule: str = DEFAULT_RULE,
    target: float | None = None,
) -> dict[str, Any]:
    """Each label's threshold on validation by ``rule``: the card's ``operating_points`` form.

    Returns ``{"rule", "target", "description", "thresholds": {label: t}, "skipped": {label: reason}}``.
    A label with one class among its known images gets no threshold (listed in ``skipped``); a
    threshold above 1 (a specificity reachable only by calling nothing positive) is stored as 1.
    """
    target = check_rule(rule, target)
    y, p = np.asarray(y_true, dtype=float), np.asarray(y_prob, dtype=float)
    if y.shape != p.shape or y.ndim != 2 or y.shape[1] != len(labels):
        raise ValueError(
            f"labels {y.shape} and probabilities {p.shape} must both be (n_images, {len(labels)})"
        )
    thresholds: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for j, label in enumerate(labels):
        known = ~np.isnan(y[:, j])
        positives = int(np.nansum(y[:, j]))
        if positives == 0 or positives == int(known.sum()):
            skipped[label] = f"{positives} positive(s) among {int(known.sum())} known image(s) on validation"
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = operating_point(y[known, j], p[known, j], rule, target)
        thresholds[label] = min(float(value), 1.0) if math.isfinite(value) else 1.0
    description = THRESHOLD_RULE_NAMES[rule] + (f" {target:g}" if target is not None else "")
    return {
        "rule": rule,
        "target": target,
        "description": description,
        "thresholds": thresholds,
        "skipped": skipped,
    }
