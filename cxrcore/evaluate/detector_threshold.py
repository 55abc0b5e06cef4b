"""A lesion detector's box score threshold, chosen on a validation split and stored in its model card.

``choose_detector_threshold(path, ws, dataset)`` runs the detector over the dataset's validation split (or
reuses its stored boxes, ``detect_split``), takes the cut of ``SCORE_CUTS`` (0.05 to 0.95 in steps of 0.05,
the steps of the pages' sliders) with the highest overall F1 at IoU 0.5 of the detection report, and
rewrites the card with the cut as the detector's operating point (weights copied as stored).

One cut is pooled over every class: a validation split holds a few dozen boxes per class at most (the
bundled detector's 165 validation images hold 10 to 40 boxes of most of its ten classes), too few to pick ten
cuts that would carry over to new images, while the pooled F1 rests on every box. The cut is stored in
``operating_points``, the field that holds a classifier's per-label thresholds, under every class, so the
card checks (``check_operating_points``) and the Models page read it as they read a classifier's; every
page and command starts from it through ``cxrcore.models.readout.default_score_threshold``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrcore.data.detections import DEFAULT_SCORE_THRESHOLD
from cxrcore.data.index import VALID_SPLIT, DatasetError
from cxrcore.evaluate.detect_predict import Progress, StoredDetections, detect_split
from cxrcore.evaluate.detection_report import OVERALL, detection_report, overall_by_cut
from cxrcore.evaluate.detector_eval import truth_boxes
from cxrcore.evaluate.operating_points import DETECTOR_RULE, DETECTOR_RULE_NAMES
from cxrcore.evaluate.predict import split_has_images
from cxrcore.models.card import read_card, weights_path
from cxrcore.models.checkpoint import write_card
from cxrcore.store import Workspace

log = logging.getLogger(__name__)

SCORE_CUTS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05 ... 0.95
POOLED_WHY = (
    "one cut for every class: a validation split holds too few boxes per class to choose a cut per class"
)
FIGURES: tuple[str, ...] = ("mAR@0.5", "F1@0.5", "rsna")  # the report's columns a cut changes


class ThresholdError(ValueError):
    """No score cut can be chosen: bad cuts, a classifier, no truth boxes, or no cut that finds one."""


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen cut and the sweep it was chosen from (precision, recall, F1 per cut)."""

    threshold: float
    sweep: pd.DataFrame  # indexed by score_threshold: precision, recall, f1 (overall, IoU 0.5)


@dataclass(frozen=True)
class DetectorThresholdResult:
    """What ``choose_detector_threshold`` stored, and the validation figures at 0.5 and at the cut."""

    path: Path
    dataset: str
    threshold: float
    operating_points: dict[str, Any]
    sweep: pd.DataFrame
    at_default: dict[str, float]  # FIGURES and boxes per image at DEFAULT_SCORE_THRESHOLD
    at_threshold: dict[str, float]  # the same at the chosen cut


def _check_cuts(cuts: Sequence[float]) -> list[float]:
    """The cuts in ascending order; ValueError naming the bad value when one lies outside (0, 1]."""
    values = sorted({float(c) for c in cuts})
    bad = [c for c in values if not 0.0 < c <= 1.0]
    if not values or bad:
        raise ThresholdError(f"score cuts must be numbers in (0, 1]; got {list(cuts)!r}")
    return values


def choose_score_threshold(
    detections: pd.DataFrame,
    truth: pd.DataFrame,
    image_ids: Sequence[str],
    classes: Sequence[str],
    cuts: Sequence[float] = SCORE_CUTS,
) -> ThresholdChoice:
    """The cut with the highest overall F1 at IoU 0.5 (classes pooled as the detection report pools them).

    Ties go to the highest such cut: it keeps the same boxes on these images and draws no more than needed
    on new ones.

    Raises:
        ThresholdError: a cut outside (0, 1], no truth box of ``classes`` on the images, or no cut with any
            matched box (F1 is 0 at every cut: nothing to choose between).
    """
    values = _check_cuts(cuts)
    sweep = overall_by_cut(detections, truth, image_ids, classes, values, iou_threshold=0.5)
    f1 = sweep["f1"].to_numpy(dtype=float)
    if not np.isfinite(f1).any():
        raise ThresholdError(f"no truth box of the classes {list(classes)} on the {len(image_ids)} images")
    best = float(np.nanmax(f1))
    if best <= 0.0:
        raise ThresholdError(
            f"no score cut in {values[0]:g}..{values[-1]:g} matches any of the truth boxes at IoU 0.5 "
            "(F1 is 0 at every cut): there is no cut to choose"
        )
    threshold = values[int(np.flatnonzero(f1 >= best - 1e-12)[-1])]
    return ThresholdChoice(threshold, sweep)


def detector_operating_points(
    threshold: float, classes: Sequence[str], fitted_on: dict[str, Any], sweep: pd.DataFrame
) -> dict[str, Any]:
    """A detector's ``operating_points`` for its card: one pooled cut under every class, and its choice."""
    return {
        "rule": DETECTOR_RULE,
        "target": None,
        "description": DETECTOR_RULE_NAMES[DETECTOR_RULE],
        "score_threshold": threshold,
        "thresholds": dict.fromkeys(classes, threshold),
        "pooled": POOLED_WHY,
        "f1_by_cut": {f"{cut:.2f}": round(float(f1), 6) for cut, f1 in sweep["f1"].items()},
        "fitted_on": fitted_on,
    }


def _figures(
    stored: StoredDetections, truth: pd.DataFrame, classes: list[str], cut: float
) -> dict[str, float]:
    """The report's overall thresholded figures at one cut, and the boxes per image it keeps."""
    ids = list(stored.image_ids)
    row = detection_report(stored.table, truth, ids, classes, score_threshold=cut).loc[OVERALL]
    kept = int((stored.table["label"].isin(classes) & (stored.table["score"] >= cut)).sum())
    return {
        "score_threshold": cut,
        **{name: round(float(row[name]), 6) for name in FIGURES},
        "boxes_per_image": round(kept / max(len(ids), 1), 4),
    }


def _validation_boxes(
    path: Path, ws: Workspace, dataset: str, progress: Progress | None
) -> tuple[StoredDetections, pd.DataFrame, list[str]]:
    """The detector's stored boxes on the validation split, its truth, and the classes with truth boxes."""
    if not split_has_images(ws, dataset, VALID_SPLIT):
        raise DatasetError(
            f"dataset {dataset!r} has no validation images to choose a threshold on; build a split first "
            f"(python -m cxrcore data split {dataset})"
        )
    stored = detect_split(path, ws, dataset, VALID_SPLIT, progress=progress)
    classes = list(stored.classes)
    truth = truth_boxes(ws, dataset, stored.image_ids, classes)
    present = [c for c in classes if (truth["label"] == c).any()]
    if not present:
        raise DatasetError(
            f"no validation image of {dataset!r} has boxes of the detector's classes: {classes}"
        )
    return stored, truth, present


def choose_detector_threshold(
    checkpoint: str | Path, ws: Workspace, dataset: str, *, progress: Progress | None = None
) -> DetectorThresholdResult:
    """Choose a detector's box score threshold on ``dataset``'s validation split and store it in the card.

    Raises:
        ThresholdError: the checkpoint is not a detector, or no cut matches a validation box.
        DatasetError: the dataset has no validation images, or none with boxes of the detector's classes.
        CheckpointError: the checkpoint cannot be read or rewritten.
    """
    path = weights_path(checkpoint)
    card = read_card(path)
    if card.task != "detect":
        raise ThresholdError(f"{path.name} is a {card.task} model; a box score threshold is for detectors")
    stored, truth, present = _validation_boxes(path, ws, dataset, progress)
    choice = choose_score_threshold(stored.table, truth, stored.image_ids, present)
    before = _figures(stored, truth, present, DEFAULT_SCORE_THRESHOLD)
    after = _figures(stored, truth, present, choice.threshold)
    fitted_on = {
        "dataset": dataset,
        "split": VALID_SPLIT,
        "n_images": len(stored.image_ids),
        "n_boxes": len(truth),
        "classes_with_boxes": present,
        "index_fingerprint": stored.meta.get("index_fingerprint"),
        "fitted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "at_default": before,
        "at_threshold": after,
    }
    points = detector_operating_points(choice.threshold, card.labels, fitted_on, choice.sweep)
    write_card(path, card.replace(operating_points=points))
    log.info(
        "%s: box score threshold %.2f chosen on %s/valid (F1@0.5 %.4f at %.2f, %.4f at the cut)",
        path,
        choice.threshold,
        dataset,
        before["F1@0.5"],
        DEFAULT_SCORE_THRESHOLD,
        after["F1@0.5"],
    )
    return DetectorThresholdResult(path, dataset, choice.threshold, points, choice.sweep, before, after)
