"""Fusing the detections of several detectors (an ensemble) into one detections frame.

Three methods, applied per image and per class (boxes of different classes never fuse):

- "wbf": weighted boxes fusion (Solovyev, Wang & Gabruseva, 2021), by the ``ensemble-boxes`` package. Boxes
  are taken in descending score order; each joins the cluster whose fused box it overlaps with IoU above
  ``iou_threshold`` (or starts one). A fused box is the score-weighted mean of its cluster's corners; its
  score is the cluster's mean score times min(boxes in the cluster, models) / models, so a box only one of
  two models found keeps half its score. Model weights multiply the scores (and the divisor becomes the
  sum of the weights); a fused score above 1, possible with unequal weights, is clipped to 1. The package
  works in single precision: fused corners are exact to about 1e-7 of the extent of the image's boxes.
- "nms": all models' boxes pooled, then greedy non-maximum suppression: the best box is kept and every
  remaining box overlapping it with IoU above ``iou_threshold`` is dropped.
- "soft_nms": Gaussian soft-NMS (Bodla et al., 2017): instead of dropping, each remaining box's score is
  multiplied by exp(-IoU² / ``sigma``) with the kept box; boxes falling below ``min_score`` are dropped.

For both NMS methods, model weights multiply the scores after division by the largest weight, so scores
stay in [0, 1] and equal weights change nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxrcore.data.detections import empty_detections, validate_detections
from cxrcore.evaluate.localisation import iou_matrix
from cxrcore.hints import unknown_choice

log = logging.getLogger(__name__)

FUSION_METHODS: tuple[str, ...] = ("wbf", "nms", "soft_nms")
FUSION_NAMES = {"wbf": "weighted box fusion", "nms": "NMS", "soft_nms": "soft-NMS"}
DEFAULT_IOU_THRESHOLD = 0.55  # the WBF paper's default matching IoU
SOFT_NMS_SIGMA = 0.5
SOFT_NMS_MIN_SCORE = 0.001  # soft-NMS drops boxes whose decayed score falls below this
_COORDS = ["x", "y", "w", "h"]
ImageSizes = Mapping[str, tuple[float, float]]  # image_id -> (width, height) in pixels


def _check_weights(weights: Sequence[float] | None, n_models: int) -> np.ndarray:
    if weights is None:
        return np.ones(n_models)
    w = np.asarray(weights, dtype=float).reshape(-1)
    if w.size != n_models or not np.all(np.isfinite(w) & (w > 0)):
        raise ValueError(f"weights must be {n_models} positive numbers, one per model; got {list(weights)}")
    return w


def _clip_to_images(det: pd.DataFrame, image_sizes: ImageSizes) -> pd.DataFrame:
    """Boxes cut to their image; a box wholly outside its image is dropped."""
    missing = sorted(set(det["image_id"]) - set(map(str, image_sizes)))
    if missing:
        raise ValueError(
            f"image_sizes has no (width, height) for {len(missing)} image(s), e.g. {missing[:3]}"
        )
    sizes = {str(k): (float(v[0]), float(v[1])) for k, v in image_sizes.items()}
    width = det["image_id"].map(lambda i: sizes[i][0]).to_numpy(dtype=float)
    height = det["image_id"].map(lambda i: sizes[i][1]).to_numpy(dtype=float)
    x0, y0 = np.clip(det["x"], 0, width), np.clip(det["y"], 0, height)
    x1, y1 = np.clip(det["x"] + det["w"], 0, width), np.clip(det["y"] + det["h"], 0, height)
    out = det.assign(x=x0, y=y0, w=x1 - x0, h=y1 - y0)
    inside = (out["w"] > 0) & (out["h"] > 0)
    if not inside.all():
        log.info("dropped %d box(es) lying wholly outside their image", int((~inside).sum()))
    return out[inside]


@dataclass(frozen=True)
class _Pool:
    """All models' boxes as arrays: image and label as codes into ``images`` and ``labels``."""

    image: np.ndarray
    label: np.ndarray
    model: np.ndarray
    boxes: np.ndarray  # (n, 4) as (x, y, w, h)
    score: np.ndarray
    images: np.ndarray
    labels: np.ndarray


def _pooled(frames: Sequence[pd.DataFrame], skip_score: float, image_sizes: ImageSizes | None) -> _Pool:
    """Every model's validated detections pooled, low scores left out, images in order of first appearance."""
    parts = []
    for m, frame in enumerate(frames):
        det = validate_detections(frame)
        parts.append(det[det["score"] >= skip_score].assign(model=m))
    pooled = pd.concat(parts, ignore_index=True)
    if image_sizes is not None:
        pooled = _clip_to_images(pooled, image_sizes)
    image, images = pd.factorize(pooled["image_id"])
    label, labels = pd.factorize(pooled["label"], sort=True)
    return _Pool(
        image=np.asarray(image),
        label=np.asarray(label),
        model=pooled["model"].to_numpy(dtype=int),
        boxes=pooled[_COORDS].to_numpy(dtype=float),
        score=pooled["score"].to_numpy(dtype=float),
        images=np.asarray(images, dtype=object),
        labels=np.asarray(labels, dtype=object),
    )


def _groups(key: np.ndarray) -> list[np.ndarray]:
    """Positions of each distinct value of ``key``, in order of the values."""
    order = np.argsort(key, kind="stable")
    cuts = np.flatnonzero(np.diff(key[order])) + 1
    return np.split(order, cuts) if key.size else []


def _wbf_image(pool: _Pool, at: np.ndarray, weights: np.ndarray, iou_threshold: float) -> tuple:
    """Weighted boxes fusion of one image's boxes (positions ``at``): label codes, boxes and scores."""
    from ensemble_boxes import weighted_boxes_fusion  # imports numba: only when fusing

    xywh = pool.boxes[at]
    corners = np.column_stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]])
    # The package wants corners in [0, 1]; an affine map per axis keeps IoUs and weighted means, so the
    # frame spanning the image's boxes gives the same fusion as any other frame.
    lo = np.tile(np.minimum(corners[:, :2].min(axis=0), 0.0), 2)
    span = np.tile(np.maximum(corners[:, 2:].max(axis=0) - lo[:2], 1e-12), 2)
    unit = np.clip((corners - lo) / span, 0.0, 1.0)
    model, score, label = pool.model[at], pool.score[at], pool.label[at]
    boxes, fused, labels = weighted_boxes_fusion(
        [unit[model == m] for m in range(len(weights))],
        [score[model == m] for m in range(len(weights))],
        [label[model == m] for m in range(len(weights))],
        weights=weights.tolist(),
        iou_thr=iou_threshold,
        skip_box_thr=0.0,
    )
    xyxy = np.asarray(boxes, dtype=float).reshape(-1, 4) * span + lo
    out = np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]])
    return np.asarray(labels, dtype=int), out, np.clip(np.asarray(fused, dtype=float), 0.0, 1.0)


def suppress(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    soft: bool = False,
    sigma: float = SOFT_NMS_SIGMA,
    min_score: float = SOFT_NMS_MIN_SCORE,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy (soft-)NMS of one class's boxes (x, y, w, h): indices kept, best first, and their scores.

    Hard NMS drops every box overlapping a kept one with IoU > ``iou_threshold``; Gaussian soft-NMS
    multiplies its score by exp(-IoU² / ``sigma``) and drops it once below ``min_score``.
    """
    ious = iou_matrix(boxes, boxes)
    live = np.asarray(scores, dtype=float).copy()
    left = live >= min_score if soft else np.ones(len(live), dtype=bool)
    kept, kept_scores = [], []
    while left.any():
        best = int(np.flatnonzero(left)[np.argmax(live[left])])
        kept.append(best)
        kept_scores.append(live[best])
        left[best] = False
        if soft:
            live[left] *= np.exp(-(ious[best, left] ** 2) / sigma)
            left &= live >= min_score
        else:
            left &= ious[best] <= iou_threshold
    return np.array(kept, dtype=int), np.array(kept_scores, dtype=float)


def _fuse(
    pool: _Pool, method: str, weights: np.ndarray, iou_threshold: float, sigma: float, min_score: float
) -> pd.DataFrame:
    """The fused boxes of every image, images in pool order and boxes by descending score."""
    image, label, boxes, scores = [np.zeros(0, int)], [np.zeros(0, int)], [np.zeros((0, 4))], [np.zeros(0)]
    if method == "wbf":
        for at in _groups(pool.image):
            codes, fused, fused_scores = _wbf_image(pool, at, weights, iou_threshold)
            image.append(np.full(len(codes), pool.image[at[0]]))
            label.append(codes)
            boxes.append(fused)
            scores.append(fused_scores)
    else:
        weighted = pool.score * (weights / weights.max())[pool.model]
        for at in _groups(pool.image * len(pool.labels) + pool.label):
            soft = method == "soft_nms"
            keep, kept = suppress(pool.boxes[at], weighted[at], iou_threshold, soft, sigma, min_score)
            image.append(pool.image[at[keep]])
            label.append(pool.label[at[keep]])
            boxes.append(pool.boxes[at[keep]])
            scores.append(kept)
    image_code, score = np.concatenate(image), np.concatenate(scores)
    order = np.lexsort((-score, image_code))
    xywh = np.concatenate(boxes)[order]
    return pd.DataFrame(
        {
            "image_id": pool.images[image_code[order]],
            "label": pool.labels[np.concatenate(label)[order]],
            **{c: xywh[:, k] for k, c in enumerate(_COORDS)},
            "score": score[order],
        }
    )


def fuse_detections(
    frames: Sequence[pd.DataFrame],
    method: str = "wbf",
    weights: Sequence[float] | None = None,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    skip_score: float = 0.0,
    image_sizes: ImageSizes | None = None,
    *,
    sigma: float = SOFT_NMS_SIGMA,
    min_score: float = SOFT_NMS_MIN_SCORE,
) -> pd.DataFrame:
    """One detections frame from several models' detections frames, fused per image and class.

    ``method`` is one of ``FUSION_METHODS`` (see the module's description); ``weights`` gives one positive
    weight per frame (default: equal). Boxes scoring below ``skip_score`` are left out first. With
    ``image_sizes`` (image_id -> (width, height)), boxes are first cut to their image; otherwise they are
    used as they are. ``sigma`` and ``min_score`` are soft-NMS's. Returns a validated detections frame
    (``DETECTION_COLUMNS``), images in order of first appearance and boxes of an image by descending score.
    """
    if method not in FUSION_METHODS:
        raise ValueError(unknown_choice("fusion method", method, FUSION_METHODS))
    if not frames:
        raise ValueError("fuse_detections needs at least one detections frame; got none")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must lie in [0, 1]; got {iou_threshold}")
    if not (sigma > 0 and 0 <= min_score < 1):
        raise ValueError(f"soft-NMS needs sigma > 0 and min_score in [0, 1); got {sigma} and {min_score}")
    w = _check_weights(weights, len(frames))
    pool = _pooled(frames, skip_score, image_sizes)
    if not pool.score.size:
        return empty_detections()
    out = _fuse(pool, method, w, iou_threshold, sigma, min_score)
    log.debug("fused %d boxes of %d models into %d (%s)", pool.score.size, len(frames), len(out), method)
    return validate_detections(out)
