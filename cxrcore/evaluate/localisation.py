"""Localisation metrics: IoU, detection AP/mAP, pointing game and the NIH IoBB accuracy.

Boxes are (x, y, w, h) in pixels with (x, y) the top-left corner, as float arrays of shape (n, 4); a box
covers [x, x + w) by [y, y + h), so its area is w * h. Predictions over a set of images are a list with one
(boxes, scores) pair per image; ground truth is a list with one box array per image.

Ranking ties are broken by input order (image order, then order within an image), as COCO's stable sort does.
Recall grid points are compared with a 1e-9 tolerance so that a recall of 3/10 reaches the grid point 0.3.

Boxes drawn from a heat map (``boxes_from_heatmap``, ``ScoredBox``) live in ``cxrcore.explain.boxes``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from cxrcore.explain.boxes import ScoredBox, normalised_heat

log = logging.getLogger(__name__)

INTERPOLATIONS = ("coco", "11point", "all")
PEERJ_IOU_THRESHOLDS = np.linspace(0.1, 0.7, 10)
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
MASK_RCNN_IOU_THRESHOLDS = (0.25, 0.5, 0.75)
NIH_IOBB_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)
_RECALL_TOL = 1e-9

Predictions = Sequence[tuple[ArrayLike, ArrayLike]]


def to_arrays(boxes: Sequence[ScoredBox]) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (n, 4) and scores (n,) of scored boxes: one image's entry in the prediction lists below."""
    xywh = np.array([[b.x, b.y, b.w, b.h] for b in boxes], dtype=float).reshape(-1, 4)
    return xywh, np.array([b.score for b in boxes], dtype=float)


def _as_boxes(boxes: ArrayLike, name: str = "boxes") -> np.ndarray:
    """Validated float (n, 4) array; a single box of shape (4,) becomes (1, 4)."""
    arr = np.asarray(boxes, dtype=float)
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.shape == (4,):
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (n, 4) as (x, y, w, h); got shape {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1) | (arr[:, 2:] < 0).any(axis=1)
    if bad.any():
        raise ValueError(f"{name} must be finite with w, h >= 0; got {arr[bad][:3].tolist()}")
    return arr


def _as_prediction(pred: tuple[ArrayLike, ArrayLike], image: int) -> tuple[np.ndarray, np.ndarray]:
    boxes = _as_boxes(pred[0], f"predicted boxes of image {image}")
    scores = np.asarray(pred[1], dtype=float).reshape(-1)
    if scores.shape[0] != boxes.shape[0] or not np.isfinite(scores).all():
        raise ValueError(
            f"image {image}: need one finite score per box; got {scores.shape[0]} for {len(boxes)}"
        )
    return boxes, scores


def _intersection_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas (len(a), len(b)) of two validated box arrays."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    return np.prod(np.clip(hi - lo, 0.0, None), axis=2)


def iou_matrix(boxes_a: ArrayLike, boxes_b: ArrayLike) -> np.ndarray:
    """IoU of every box in ``boxes_a`` with every box in ``boxes_b``, shape (n_a, n_b); 0 for empty unions."""
    a, b = _as_boxes(boxes_a, "boxes_a"), _as_boxes(boxes_b, "boxes_b")
    inter = _intersection_matrix(a, b)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def iou(box_a: ArrayLike, box_b: ArrayLike) -> float:
    """Intersection over union of two single boxes (x, y, w, h)."""
    return float(iou_matrix(np.reshape(box_a, (1, 4)), np.reshape(box_b, (1, 4)))[0, 0])


def best_match_iou(gt: ArrayLike, pred: ArrayLike) -> np.ndarray:
    """For each ground-truth box, its best IoU with any predicted box (0 when there is none)."""
    m = iou_matrix(gt, pred)
    return m.max(axis=1) if m.shape[1] else np.zeros(m.shape[0])


def _box_mask(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Union of boxes as a boolean mask; edges are rounded to whole pixels and clipped to the image."""
    mask = np.zeros(shape, dtype=bool)
    edges = np.rint(np.column_stack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]])).astype(int)
    edges = np.clip(edges, 0, [shape[1], shape[0], shape[1], shape[0]])
    for x0, y0, x1, y1 in edges:
        mask[y0:y1, x0:x1] = True
    return mask


def image_iou(gt: ArrayLike, pred: ArrayLike, shape: tuple[int, int]) -> float:
    """Per-image IoU of the PeerJ 2020 protocol: the union of predicted boxes vs that of ground-truth boxes.

    NaN (with a warning) when both unions are empty, since the overlap of two empty regions is undefined.
    """
    if len(shape) != 2 or min(shape) <= 0:
        raise ValueError(f"shape must be (height, width) with positive sides; got {shape}")
    a = _box_mask(_as_boxes(gt, "gt"), shape)
    b = _box_mask(_as_boxes(pred, "pred"), shape)
    union = int(np.count_nonzero(a | b))
    if union == 0:
        warnings.warn("image IoU is undefined: no ground-truth and no predicted pixels", stacklevel=2)
        return float("nan")
    return np.count_nonzero(a & b) / union


def _prepare(preds: Predictions, gts: Sequence[ArrayLike]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image: scores in descending order and the IoU matrix (ranked predictions x ground-truth boxes)."""
    if len(preds) != len(gts):
        raise ValueError(f"preds and gts must list the same images; got {len(preds)} and {len(gts)}")
    prepared = []
    for i, (pred, gt) in enumerate(zip(preds, gts, strict=True)):
        boxes, scores = _as_prediction(pred, i)
        order = np.argsort(-scores, kind="stable")
        prepared.append((scores[order], iou_matrix(boxes[order], _as_boxes(gt, f"gt boxes of image {i}"))))
    return prepared


def _greedy_matches(ious: np.ndarray, threshold: float) -> np.ndarray:
    """True positives of one image: each ranked prediction takes the free gt of highest IoU >= threshold."""
    tp = np.zeros(ious.shape[0], dtype=bool)
    free = np.ones(ious.shape[1], dtype=bool)
    for k, row in enumerate(ious):
        candidates = np.where(free & (row >= threshold), row, -1.0)
        if candidates.size and candidates.max() >= 0.0:
            free[int(candidates.argmax())] = False
            tp[k] = True
    return tp


def _ranked(prepared: list[tuple[np.ndarray, np.ndarray]], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Scores and true-positive flags of all images' predictions, ranked by descending score."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"iou_threshold must lie in (0, 1]; got {threshold}")
    scores = np.concatenate([np.zeros(0), *(s for s, _ in prepared)])
    tp = np.concatenate([np.zeros(0, bool), *(_greedy_matches(m, threshold) for _, m in prepared)])
    order = np.argsort(-scores, kind="stable")
    return scores[order], tp[order]


def _n_gt(prepared: list[tuple[np.ndarray, np.ndarray]]) -> int:
    return sum(m.shape[1] for _, m in prepared)


def _ap_from_ranked(tp: np.ndarray, n_gt: int, interpolation: str) -> float:
    """Area under the interpolated precision-recall curve of ranked true-positive flags."""
    if tp.size == 0:
        return 0.0
    hits = np.cumsum(tp)
    precision = hits / np.arange(1, tp.size + 1)
    recall = hits / n_gt
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this recall or beyond
    if interpolation == "all":
        return float(np.sum(np.diff(recall, prepend=0.0) * envelope))
    grid = np.linspace(0.0, 1.0, 11 if interpolation == "11point" else 101)
    first = np.searchsorted(recall, grid - _RECALL_TOL, side="left")
    return float(np.where(first < tp.size, envelope[np.minimum(first, tp.size - 1)], 0.0).mean())


def _check_interpolation(interpolation: str) -> None:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"unknown interpolation {interpolation!r}; valid options: {', '.join(INTERPOLATIONS)}"
        )


def _warn_no_gt(what: str) -> None:
    warnings.warn(f"{what} is undefined: there are no ground-truth boxes", stacklevel=3)


def average_precision(
    preds: Predictions, gts: Sequence[ArrayLike], iou_threshold: float = 0.5, interpolation: str = "coco"
) -> float:
    """Average precision at one IoU threshold over all images; NaN (with a warning) without ground truth.

    ``interpolation`` is "11point" (PASCAL VOC 2007), "all" (area under the precision envelope, VOC 2010+) or
    "coco" (101 recall points).
    """
    _check_interpolation(interpolation)
    prepared = _prepare(preds, gts)
    _, tp = _ranked(prepared, iou_threshold)
    n_gt = _n_gt(prepared)
    if n_gt == 0:
        _warn_no_gt("average precision")
        return float("nan")
    return _ap_from_ranked(tp, n_gt, interpolation)


def _mean_ap(
    preds: Predictions, gts: Sequence[ArrayLike], thresholds: np.ndarray, interpolation: str
) -> float:
    prepared = _prepare(preds, gts)
    n_gt = _n_gt(prepared)
    if n_gt == 0:
        _warn_no_gt("mean average precision")
        return float("nan")
    return float(np.mean([_ap_from_ranked(_ranked(prepared, t)[1], n_gt, interpolation) for t in thresholds]))


def peerj_map(preds: Predictions, gts: Sequence[ArrayLike]) -> float:
    """Mean 11-point AP over ten IoU thresholds from 0.1 to 0.7 (the PeerJ 2020 protocol)."""
    return _mean_ap(preds, gts, PEERJ_IOU_THRESHOLDS, "11point")


def coco_map(preds: Predictions, gts: Sequence[ArrayLike]) -> float:
    """Mean 101-point AP over IoU thresholds 0.5:0.05:0.95 (COCO's AP)."""
    return _mean_ap(preds, gts, COCO_IOU_THRESHOLDS, "coco")


def _scores_at(
    prepared: list[tuple[np.ndarray, np.ndarray]],
    iou_threshold: float,
    score_threshold: float,
    interpolation: str,
) -> dict[str, float]:
    scores, tp = _ranked(prepared, iou_threshold)
    n_gt = _n_gt(prepared)
    ap = _ap_from_ranked(tp, n_gt, interpolation) if n_gt else float("nan")
    return {**_kept_scores(tp[scores >= score_threshold], n_gt), "ap": ap}


def _kept_scores(kept: np.ndarray, n_gt: int) -> dict[str, float]:
    """Precision, recall and F1 of the kept predictions' true-positive flags.

    Matching runs in descending score order, so the predictions above a score cut match exactly as they
    do among all predictions: one matching serves every cut.
    """
    precision = float(kept.mean()) if kept.size else 0.0
    recall = kept.sum() / n_gt if n_gt else float("nan")
    total = precision + recall
    f1 = 2 * precision * recall / total if total > 0 else (0.0 if n_gt else float("nan"))
    return {"precision": precision, "recall": float(recall), "f1": float(f1)}


def scores_by_cut(
    preds: Predictions, gts: Sequence[ArrayLike], cuts: Sequence[float], iou_threshold: float = 0.5
) -> pd.DataFrame:
    """Precision, recall and F1 of the predictions scoring >= each cut, from one matching.

    The numbers are those of ``detection_scores(..., score_threshold=cut)``; one row per cut, indexed by it.
    """
    prepared = _prepare(preds, gts)
    n_gt = _n_gt(prepared)
    if n_gt == 0:
        _warn_no_gt("detection recall")
    scores, tp = _ranked(prepared, iou_threshold)
    rows = [_kept_scores(tp[scores >= float(cut)], n_gt) for cut in cuts]
    return pd.DataFrame(rows, index=pd.Index([float(c) for c in cuts], name="score_threshold"))


def detection_scores(
    preds: Predictions,
    gts: Sequence[ArrayLike],
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
    interpolation: str = "coco",
) -> dict[str, float]:
    """Precision, recall and F1 of the predictions scoring >= ``score_threshold``, and AP of all predictions.

    Precision is 0 when no prediction is kept; recall, F1 and AP are NaN (with a warning) without ground
    truth.
    """
    _check_interpolation(interpolation)
    prepared = _prepare(preds, gts)
    if _n_gt(prepared) == 0:
        _warn_no_gt("detection recall")
    return _scores_at(prepared, iou_threshold, score_threshold, interpolation)


def mask_rcnn_table(
    preds: Predictions, gts: Sequence[ArrayLike], score_threshold: float = 0.0, interpolation: str = "coco"
) -> pd.DataFrame:
    """The RSNA Mask R-CNN evaluation: AP (mAP), recall (mAR) and F1 at IoU 0.25, 0.5 and 0.75."""
    _check_interpolation(interpolation)
    prepared = _prepare(preds, gts)
    if _n_gt(prepared) == 0:
        _warn_no_gt("the Mask R-CNN table")
    rows = [_scores_at(prepared, t, score_threshold, interpolation) for t in MASK_RCNN_IOU_THRESHOLDS]
    return pd.DataFrame(
        {"mAP": [r["ap"] for r in rows], "mAR": [r["recall"] for r in rows], "F1": [r["f1"] for r in rows]},
        index=pd.Index(MASK_RCNN_IOU_THRESHOLDS, name="IoU"),
    )


def pointing_game(heat: ArrayLike, gt_boxes: ArrayLike, tolerance: float = 0.0) -> bool | None:
    """Whether the heat map's peak pixel lies inside a ground-truth box grown by ``tolerance`` pixels.

    The peak is the first maximum in row-major order and is tested by its pixel centre. None when the map is
    constant or has no positive value (no evidence to point with); False when there are no boxes.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels; got {tolerance}")
    norm = normalised_heat(heat)
    if norm is None:
        return None
    boxes = _as_boxes(gt_boxes, "gt_boxes")
    row, col = np.unravel_index(int(np.argmax(norm)), norm.shape)
    centre = np.array([col + 0.5, row + 0.5])
    inside = (centre >= boxes[:, :2] - tolerance) & (centre <= boxes[:, :2] + boxes[:, 2:] + tolerance)
    return bool(inside.all(axis=1).any())


def pointing_accuracy(
    heats: Sequence[ArrayLike],
    gt_boxes: Sequence[ArrayLike],
    tolerance: float = 0.0,
    no_evidence: str = "miss",
) -> float:
    """Fraction of pointing-game hits over the images that have ground-truth boxes.

    A map without evidence counts as a miss (``no_evidence="miss"``) or is left out (``"skip"``); NaN (with a
    warning) when no image can be scored.
    """
    if no_evidence not in ("miss", "skip"):
        raise ValueError(f"unknown no_evidence {no_evidence!r}; valid options: miss, skip")
    if len(heats) != len(gt_boxes):
        raise ValueError(
            f"heats and gt_boxes must list the same images; got {len(heats)} and {len(gt_boxes)}"
        )
    outcomes = [
        pointing_game(h, g, tolerance) for h, g in zip(heats, gt_boxes, strict=True) if _as_boxes(g).shape[0]
    ]
    scored = [bool(o) for o in outcomes if o is not None or no_evidence == "miss"]
    log.debug("pointing game: %d scored, %d maps without evidence", len(scored), outcomes.count(None))
    if not scored:
        warnings.warn(
            "pointing accuracy is undefined: no image with ground truth could be scored", stacklevel=2
        )
        return float("nan")
    return float(np.mean(scored))


def _iobb_matrix(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Intersection over the predicted box's area, (len(gt), len(pred)); 0 for empty predicted boxes."""
    inter = _intersection_matrix(gt, pred)
    area = np.broadcast_to((pred[:, 2] * pred[:, 3])[None, :], inter.shape)
    return np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)


def iobb(gt: ArrayLike, pred: ArrayLike) -> float:
    """Intersection over the predicted bounding box: area(gt ∩ pred) / area(pred) (NIH ChestX-ray14)."""
    return float(_iobb_matrix(_as_boxes(np.reshape(gt, (1, 4))), _as_boxes(np.reshape(pred, (1, 4))))[0, 0])


def iobb_accuracy(
    preds: Sequence[ArrayLike], gts: Sequence[ArrayLike], thresholds: Sequence[float] = NIH_IOBB_THRESHOLDS
) -> dict[float, dict[str, float]]:
    """NIH ChestX-ray14 localisation: accuracy and average false positives per image at each IoBB threshold.

    ``preds`` lists one box array per image. Accuracy is the fraction of images with ground truth where some
    predicted box has IoBB >= T with a ground-truth box (NaN without such images); a predicted box with no
    such match is a false positive, and ``afp`` averages their count over all images.
    """
    if len(preds) != len(gts):
        raise ValueError(f"preds and gts must list the same images; got {len(preds)} and {len(gts)}")
    best, has_gt = [], []
    for i, (pred, gt) in enumerate(zip(preds, gts, strict=True)):
        g, p = _as_boxes(gt, f"gt boxes of image {i}"), _as_boxes(pred, f"predicted boxes of image {i}")
        best.append(_iobb_matrix(g, p).max(axis=0) if len(g) else np.zeros(len(p)))
        has_gt.append(len(g) > 0)
    if not any(has_gt):
        warnings.warn("IoBB accuracy is undefined: there are no ground-truth boxes", stacklevel=2)
    out: dict[float, dict[str, float]] = {}
    for t in thresholds:
        hits = [bool((b >= t).any()) for b, g in zip(best, has_gt, strict=True) if g]
        out[float(t)] = {
            "accuracy": float(np.mean(hits)) if hits else float("nan"),
            "afp": float(np.mean([np.count_nonzero(b < t) for b in best])) if best else float("nan"),
        }
    return out
