"""Fit a checkpoint's calibration and operating points on a validation split and store them in its card.

``calibrate_checkpoint(path, ws, dataset)`` predicts the dataset's validation split (or reuses the
stored logits), fits one calibration per label (``cxrcore.evaluate.calibration``), chooses each
label's operating point on the calibrated validation probabilities
(``cxrcore.evaluate.operating_points``), scores ECE and Brier before and after on the validation and
test splits, and rewrites the checkpoint's card with the weights copied as stored. Stored logits are
keyed by the weights alone, so nothing is predicted twice. ``python -m cxrcore checkpoint calibrate``
and the end of every training run call it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cxrcore.data.index import TEST_SPLIT, VALID_SPLIT, DatasetError
from cxrcore.evaluate.calibration import (
    AUTO_METHOD,
    CALIBRATION_CHOICES,
    MEAN_ROW,
    NO_CALIBRATION,
    before_after,
    default_method,
    fit_calibration,
)
from cxrcore.evaluate.operating_points import DEFAULT_RULE, check_rule, choose_operating_points
from cxrcore.evaluate.predict import Predictions, Progress, predict, split_has_images
from cxrcore.hints import unknown_choice
from cxrcore.models.card import read_card, weights_path
from cxrcore.models.checkpoint import write_card
from cxrcore.models.readout import calibrate_logits
from cxrcore.store import Workspace

log = logging.getLogger(__name__)


class CalibrationError(ValueError):
    """An unknown calibration method or operating-point rule, or a rule without its target."""


@dataclass(frozen=True)
class CalibrationResult:
    """What ``calibrate_checkpoint`` stored and how calibration changed ECE and Brier score."""

    path: Path
    method: str  # a method of CALIBRATION_METHODS, or NO_CALIBRATION
    calibration: dict[str, Any] | None
    operating_points: dict[str, Any]
    valid: pd.DataFrame  # per label and "mean": n, positives, ece_before/after, brier_before/after
    test: pd.DataFrame | None  # the same on the test split, when the dataset has one


def _rounded(value: Any) -> float | int | None:
    """A JSON-ready number (NaN as None)."""
    if isinstance(value, int):
        return value
    value = float(value)
    return None if math.isnan(value) else round(value, 6)


def scores_for_card(table: pd.DataFrame, split: str, dataset: str) -> dict[str, Any]:
    """A before/after table as the card stores it: the split, and the figures per label and as a mean."""
    per_label = {
        str(label): {k: _rounded(int(v) if k in ("n", "positives") else v) for k, v in row.items()}
        for label, row in table.iterrows()
    }
    return {"dataset": dataset, "split": split, "labels": per_label}


def _resolve_method(method: str, training_config: dict[str, Any] | None) -> str:
    if method not in CALIBRATION_CHOICES:
        raise CalibrationError(unknown_choice("calibration method", method, CALIBRATION_CHOICES))
    if method == AUTO_METHOD:
        return default_method((training_config or {}).get("loss"))
    return method


def _validation(path: Path, ws: Workspace, dataset: str, progress: Progress | None) -> Predictions:
    if not split_has_images(ws, dataset, VALID_SPLIT):
        raise DatasetError(
            f"dataset {dataset!r} has no validation images to calibrate on; build a split first "
            f"(python -m cxrcore data split {dataset})"
        )
    return predict(path, ws, dataset, VALID_SPLIT, progress=progress)


def calibrate_checkpoint(
    checkpoint: str | Path,
    ws: Workspace,
    dataset: str,
    *,
    method: str = AUTO_METHOD,
    rule: str = DEFAULT_RULE,
    target: float | None = None,
    score_test: bool = True,
    progress: Progress | None = None,
) -> CalibrationResult:
    """Fit calibration and operating points on ``dataset``'s validation split and store them in the card.

    ``method``: one of ``CALIBRATION_CHOICES`` ("auto": Platt scaling after a class-reweighting loss,
    temperature scaling otherwise; "none" removes a calibration). ``rule`` / ``target``: how each
    label's threshold is chosen on the calibrated validation probabilities. ``score_test``: also score
    ECE and Brier before and after on the test split (training leaves it to evaluation).

    Raises:
        DatasetError: the dataset has no validation images, or none of the model's labels.
        CalibrationError: an unknown method or rule, or a rule without its target.
        CheckpointError: the checkpoint cannot be read or rewritten.
    """
    path = weights_path(checkpoint)
    card = read_card(path)
    chosen = _resolve_method(method, card.training_config)
    try:
        target = check_rule(rule, target)
    except ValueError as exc:
        raise CalibrationError(str(exc)) from None
    valid = _validation(path, ws, dataset, progress)
    labels = list(card.labels)
    fitted_on = {
        "dataset": dataset,
        "split": VALID_SPLIT,
        "n_images": len(valid.table),
        "index_fingerprint": valid.meta.get("index_fingerprint"),
        "fitted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    calibration = None
    if chosen != NO_CALIBRATION:
        calibration = {**fit_calibration(valid.y_true, valid.logits, labels, chosen), "fitted_on": fitted_on}
    probs = calibrate_logits(calibration, labels, valid.logits)
    points = {**choose_operating_points(valid.y_true, probs, labels, rule, target), "fitted_on": fitted_on}
    valid_scores = before_after(valid.y_true, valid.logits, calibration, labels)
    test_scores = None
    if score_test and split_has_images(ws, dataset, TEST_SPLIT):
        test = predict(path, ws, dataset, TEST_SPLIT, progress=progress)
        test_scores = before_after(test.y_true, test.logits, calibration, labels)
    if calibration is not None:
        calibration["scores"] = [scores_for_card(valid_scores, VALID_SPLIT, dataset)]
        if test_scores is not None:
            calibration["scores"].append(scores_for_card(test_scores, TEST_SPLIT, dataset))
    write_card(path, card.replace(calibration=calibration, operating_points=points))
    mean = (test_scores if test_scores is not None else valid_scores).loc[MEAN_ROW]
    log.info(
        "calibrated %s (%s): mean ECE %.4f -> %.4f, Brier %.4f -> %.4f",
        path,
        chosen,
        mean["ece_before"],
        mean["ece_after"],
        mean["brier_before"],
        mean["brier_after"],
    )
    return CalibrationResult(path, chosen, calibration, points, valid_scores, test_scores)
