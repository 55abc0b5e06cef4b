"""Detection metrics beyond mAP: the RSNA Pneumonia challenge score and free-response ROC (FROC).

Inputs follow ``cxrcore.evaluate.localisation``: predictions are one (boxes (n, 4), scores (n,)) pair per
image, ground truth one (m, 4) box array per image, boxes as (x, y, w, h) in pixels. Both metrics also take
entries that are (image, class) pairs rather than images, so that classes can be pooled while a prediction
only ever matches truth of its own class: ``groups`` (RSNA) or ``n_images`` (FROC) then say how the entries
make up images. Frame-level tables are in ``cxrcore.evaluate.detection_report``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from cxrcore.data.detections import DETECTION_COLUMNS, empty_detections, validate_detections
from cxrcore.data.index import validate_boxes
from cxrcore.evaluate.localisation import (
    Predictions,
    _as_boxes,
    _as_prediction,
    _greedy_matches,
    iou_matrix,
)
from cxrcore.hints import unknown_choice

log = logging.getLogger(__name__)

__all__ = [
    "DETECTION_COLUMNS",
    "FROC_DUPLICATES",
    "FROC_FP_RATES",
    "FROC_HITS",
    "RSNA_IOU_THRESHOLDS",
    "FrocResult",
    "RsnaScore",
    "box_labels",
    "check_image_ids",
    "empty_detections",
    "froc",
    "image_scores",
    "rsna_score",
    "validate_detections",
]

# 0.40, 0.45, ..., 0.75, rounded so that 0.6 is the same float as the literal 0.6.
RSNA_IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.40 + 0.05 * k, 2) for k in range(8))
FROC_FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
# When a prediction hits a truth box: IoU >= iou_threshold, or the prediction's centre inside the box.
FROC_HITS: tuple[str, ...] = ("iou", "centre")
# A prediction that hits only truth boxes already found: a false positive, or left out of the count.
FROC_DUPLICATES: tuple[str, ...] = ("fp", "ignore")
_RATE_TOL = 1e-9


def _ranked_entries(
    preds: Predictions, gts: Sequence[ArrayLike]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per entry: scores in descending order, the boxes in that order and the truth boxes."""
    if len(preds) != len(gts):
        raise ValueError(f"preds and gts must list the same images; got {len(preds)} and {len(gts)}")
    out = []
    for i, (pred, gt) in enumerate(zip(preds, gts, strict=True)):
        boxes, scores = _as_prediction(pred, i)
        order = np.argsort(-scores, kind="stable")
        out.append((scores[order], boxes[order], _as_boxes(gt, f"gt boxes of image {i}")))
    return out


def _check_groups(groups: ArrayLike | None, n: int) -> np.ndarray:
    """Image number of each entry: ``groups`` as codes in order of first appearance, or one per entry."""
    if groups is None:
        return np.arange(n)
    values = np.asarray(groups)
    if values.shape != (n,):
        raise ValueError(f"groups must name the image of each of the {n} entries; got shape {values.shape}")
    return np.asarray(pd.factorize(values)[0])


@dataclass(frozen=True)
class RsnaScore:
    """The RSNA Pneumonia Detection Challenge score and the per-image values it averages."""

    score: float  # mean over the counted images; NaN when no image was counted
    n_images: int  # images counted: those with truth or a prediction
    per_image: np.ndarray  # per image (group, in order of first appearance); NaN for skipped images


def rsna_score(
    preds: Predictions,
    gts: Sequence[ArrayLike],
    thresholds: Sequence[float] = RSNA_IOU_THRESHOLDS,
    score_threshold: float = 0.0,
    groups: ArrayLike | None = None,
) -> RsnaScore:
    """The RSNA Pneumonia Detection Challenge metric: per image TP / (TP + FP + FN), averaged over IoU cuts.

    At each threshold t, predictions scoring >= ``score_threshold`` are taken in descending score order and
    each one matches the unmatched truth box of highest IoU, a hit being IoU strictly greater than t (as the
    challenge defines it). An image with neither truth nor prediction is skipped; one with predictions but no
    truth scores 0. The score is the mean over the counted images. ``groups`` gives the image of each entry
    when entries are (image, class) pairs: counts are summed over an image's entries before the ratio.
    """
    thresholds = np.asarray(thresholds, dtype=float).reshape(-1)
    if thresholds.size == 0 or not np.all((thresholds >= 0) & (thresholds < 1)):
        raise ValueError(f"thresholds must be IoU values in [0, 1); got {thresholds.tolist()}")
    entries = _ranked_entries(preds, gts)
    image_of = _check_groups(groups, len(entries))
    n_groups = int(image_of.max()) + 1 if image_of.size else 0
    tp = np.zeros((n_groups, thresholds.size))
    n_pred, n_gt = np.zeros(n_groups), np.zeros(n_groups)
    for g, (scores, boxes, gt) in zip(image_of, entries, strict=True):
        kept = boxes[scores >= score_threshold]
        if len(kept) and len(gt):
            ious = iou_matrix(kept, gt)
            # ``_greedy_matches`` hits at IoU >= its threshold; the next float above t makes that IoU > t.
            tp[g] += [np.count_nonzero(_greedy_matches(ious, np.nextafter(t, np.inf))) for t in thresholds]
        n_pred[g] += len(kept)
        n_gt[g] += len(gt)
    counted = (n_pred + n_gt) > 0
    per_image = np.full(n_groups, np.nan)
    # TP + FP + FN = predictions + truth boxes - TP, which is positive on every counted image.
    ratio = tp[counted] / (n_pred[counted, None] + n_gt[counted, None] - tp[counted])
    per_image[counted] = ratio.mean(axis=1)
    if not counted.any():
        warnings.warn("the RSNA score is undefined: no image has truth boxes or predictions", stacklevel=2)
        return RsnaScore(float("nan"), 0, per_image)
    return RsnaScore(float(per_image[counted].mean()), int(counted.sum()), per_image)


@dataclass(frozen=True)
class FrocResult:
    """Free-response ROC: sensitivity at fixed false positives per image, their mean, and the curve."""

    fp_rates: tuple[float, ...]
    sensitivities: tuple[float, ...]  # at each rate: the highest sensitivity with FP/image <= rate
    cpm: float  # competition performance metric: the mean of ``sensitivities``
    curve: pd.DataFrame  # columns threshold, fp_per_image, sensitivity; one row per distinct score
    n_images: int
    n_boxes: int


def _hit_matrix(boxes: np.ndarray, gt: np.ndarray, hit: str, iou_threshold: float) -> np.ndarray:
    """Whether each ranked prediction hits each truth box, (len(boxes), len(gt))."""
    if hit == "iou":
        return iou_matrix(boxes, gt) >= iou_threshold
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    lo, hi = gt[None, :, :2], gt[None, :, :2] + gt[None, :, 2:]
    return ((centre[:, None, :] >= lo) & (centre[:, None, :] <= hi)).all(axis=2)


def _froc_flags(hits: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True positives and duplicates of one entry's ranked predictions; each truth box is found once."""
    tp = np.zeros(hits.shape[0], dtype=bool)
    dup = np.zeros(hits.shape[0], dtype=bool)
    free = np.ones(hits.shape[1], dtype=bool)
    for k, row in enumerate(hits):
        open_ = row & free
        if open_.any():
            free[int(np.argmax(np.where(open_, quality[k], -np.inf)))] = False
            tp[k] = True
        elif row.any():
            dup[k] = True
    return tp, dup


def _froc_curve(scores: np.ndarray, tp: np.ndarray, fp: np.ndarray, n_images: int, n_gt: int) -> pd.DataFrame:
    """One point per distinct score threshold, from (0, 0) at threshold +inf."""
    order = np.argsort(-scores, kind="stable")
    scores, hits, false = scores[order], np.cumsum(tp[order]), np.cumsum(fp[order])
    last = np.r_[scores[1:] != scores[:-1], True] if scores.size else np.zeros(0, dtype=bool)
    return pd.DataFrame(
        {
            "threshold": np.r_[np.inf, scores[last]],
            "fp_per_image": np.r_[0.0, false[last] / n_images],
            "sensitivity": np.r_[0.0, hits[last] / n_gt] if n_gt else np.full(1 + last.sum(), np.nan),
        }
    )


def _check_froc_options(fp_rates: Sequence[float], hit: str, duplicates: str, iou_threshold: float) -> None:
    if hit not in FROC_HITS:
        raise ValueError(unknown_choice("FROC hit criterion", hit, FROC_HITS))
    if duplicates not in FROC_DUPLICATES:
        raise ValueError(unknown_choice("FROC duplicates rule", duplicates, FROC_DUPLICATES))
    if hit == "iou" and not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must lie in (0, 1]; got {iou_threshold}")
    if len(fp_rates) == 0 or any(not (np.isfinite(r) and r > 0) for r in fp_rates):
        raise ValueError(f"fp_rates must be positive false positives per image; got {list(fp_rates)}")


def froc(
    preds: Predictions,
    gts: Sequence[ArrayLike],
    fp_rates: Sequence[float] = FROC_FP_RATES,
    iou_threshold: float = 0.5,
    hit: str = "iou",
    duplicates: str = "fp",
    n_images: int | None = None,
) -> FrocResult:
    """Free-response ROC of predictions against truth boxes, swept over the score threshold.

    Per image, predictions in descending score order each claim the unclaimed truth box they hit (``hit``:
    "iou", IoU >= ``iou_threshold``; or "centre", the prediction's centre inside the box), preferring the
    highest IoU, so each truth box counts once. A prediction that hits nothing is a false positive; one that
    hits only claimed boxes is one too with ``duplicates="fp"``, and is left out with "ignore" (the LUNA16 and
    CAMELYON16 convention). Sensitivity is claimed boxes over all truth boxes; the false-positive rate divides
    by ``n_images`` (default: one image per entry; pass the image count when entries are (image, class)
    pairs). Sensitivities are NaN (with a warning) without truth boxes.
    """
    _check_froc_options(fp_rates, hit, duplicates, iou_threshold)
    entries = _ranked_entries(preds, gts)
    n_images = len(entries) if n_images is None else int(n_images)
    if n_images <= 0:
        raise ValueError(f"FROC needs at least one image; got n_images={n_images}")
    all_scores, all_tp, all_fp, n_gt = [np.zeros(0)], [np.zeros(0, bool)], [np.zeros(0, bool)], 0
    for scores, boxes, gt in entries:
        if len(boxes) and len(gt):
            tp, dup = _froc_flags(_hit_matrix(boxes, gt, hit, iou_threshold), iou_matrix(boxes, gt))
        else:
            tp = dup = np.zeros(len(boxes), dtype=bool)
        all_scores.append(scores)
        all_tp.append(tp)
        all_fp.append(~tp & ~dup if duplicates == "ignore" else ~tp)
        n_gt += len(gt)
    if n_gt == 0:
        warnings.warn("FROC sensitivity is undefined: there are no ground-truth boxes", stacklevel=2)
    curve = _froc_curve(
        np.concatenate(all_scores), np.concatenate(all_tp), np.concatenate(all_fp), n_images, n_gt
    )
    fppi, sens = curve["fp_per_image"].to_numpy(), curve["sensitivity"].to_numpy()
    at = tuple(float(sens[fppi <= r + _RATE_TOL].max()) if n_gt else float("nan") for r in fp_rates)
    log.debug("FROC over %d images, %d truth boxes: %s", n_images, n_gt, at)
    return FrocResult(
        fp_rates=tuple(float(r) for r in fp_rates),
        sensitivities=at,
        cpm=float(np.mean(at)),
        curve=curve,
        n_images=n_images,
        n_boxes=n_gt,
    )


def check_image_ids(image_ids: Sequence[str]) -> list[str]:
    """The evaluated images as a list of strings; an empty list or a repeated id is an error."""
    ids = [str(i) for i in image_ids]
    if not ids:
        raise ValueError("image_ids must list the evaluated images; got none")
    repeated = pd.Index(ids)[pd.Index(ids).duplicated()].unique().tolist()
    if repeated:
        raise ValueError(f"image_ids must be unique; {len(repeated)} repeat (e.g. {repeated[:3]})")
    return ids


def _check_classes(classes: Sequence[str]) -> list[str]:
    names = [str(c) for c in classes]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"classes must be a non-empty list of distinct names; got {names}")
    return names


def _image_table(values: pd.Series, image_ids: list[str], classes: list[str]) -> pd.DataFrame:
    """A float (image x class) table from a Series indexed by (image_id, label); 0.0 where it has no entry."""
    table = values.unstack() if len(values) else pd.DataFrame()
    table = table.reindex(
        index=pd.Index(image_ids, name="image_id"), columns=pd.Index(classes), fill_value=0.0
    )
    return table.fillna(0.0).astype("float64")


def image_scores(detections: pd.DataFrame, image_ids: Sequence[str], classes: Sequence[str]) -> pd.DataFrame:
    """Image-level scores of a detector: each image's highest box score per class, 0.0 where it has none.

    Returns a float frame indexed by ``image_id`` (in the order given) with one column per class (in the
    order given): the (n_images, n_labels) score matrix that ``cxrcore.evaluate.classification`` takes, so
    ``summarise(y_true, image_scores(...).to_numpy(), classes)`` scores a detector as a classifier.
    Detections of other images or classes are left out.
    """
    ids, names = check_image_ids(image_ids), _check_classes(classes)
    det = validate_detections(detections)
    det = det[det["image_id"].isin(ids) & det["label"].isin(names)]
    best = det.groupby(["image_id", "label"], observed=True)["score"].max()
    return _image_table(best, ids, names)


def box_labels(truth: pd.DataFrame, image_ids: Sequence[str], classes: Sequence[str]) -> pd.DataFrame:
    """Image-level labels from truth boxes: 1.0 where an image has a box of a class, else 0.0.

    Same layout as ``image_scores`` (``image_id`` index, one column per class), so the two pair up as
    ``y_true`` and ``y_score`` of the classification metrics.
    """
    ids, names = check_image_ids(image_ids), _check_classes(classes)
    boxes = validate_boxes(truth)
    boxes = boxes[boxes["image_id"].isin(ids) & boxes["label"].isin(names)]
    present = boxes.assign(one=1.0).groupby(["image_id", "label"], observed=True)["one"].max()
    return _image_table(present, ids, names)
