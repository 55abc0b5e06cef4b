"""How well explanation maps localise findings: members' and ensemble maps against ground-truth boxes.

For every image of a split with boxes, and every boxed label the models know, each member's map (CAM,
CRM or a Grad-CAM method) is computed at the model input, mapped back onto the image (undoing the
padding or cropping of preprocessing) and turned into boxes by thresholding. The ensemble map is the
average of the members' display-normalised maps (PeerJ 2020). Scores per model: the PeerJ per-image
IoU, mAP over IoU 0.1-0.7 with 11-point interpolation (PeerJ protocol), COCO-style mAP, and the
pointing game.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from cxrcore.data.split import split_rows
from cxrcore.evaluate.localisation import (
    best_match_iou,
    coco_map,
    image_iou,
    peerj_map,
    pointing_game,
    to_arrays,
)
from cxrcore.evaluate.report import member_name
from cxrcore.explain.boxes import BOX_THRESHOLD, boxes_from_heatmap
from cxrcore.explain.engine import DEFAULT_METHODS, DEFAULT_SMOOTH, check_smooth, explain
from cxrcore.io import ImageReadError, read_image
from cxrcore.models.checkpoint import Checkpoint, load_checkpoint
from cxrcore.models.ensemble import check_members
from cxrcore.preprocess import PreprocessConfig, fit_geometry
from cxrcore.store import Workspace

log = logging.getLogger(__name__)

FRAME = 256  # longest side of the frame maps and boxes are compared in
# Maps cheap enough to score over a whole split: one forward pass (CAM, CRM) or one backward (Grad-CAM).
MAP_METHODS: tuple[str, ...] = (*DEFAULT_METHODS, "gradcam")
ENSEMBLE = "ensemble"


@dataclass(frozen=True)
class LocalisationReport:
    """Per-model scores and the per-(image, label) rows they come from."""

    table: pd.DataFrame  # one row per model: pairs, mean IoU, PeerJ mAP, COCO mAP, pointing, top-box IoU
    rows: pd.DataFrame  # one row per (model, image, label): IoU, hit, box count
    method: str
    threshold: float
    groups: dict[str, pd.DataFrame] = field(default_factory=dict)  # the table within each value of ``by``


def map_to_frame(display: np.ndarray, width: int, height: int, pcfg: PreprocessConfig) -> np.ndarray:
    """A map over the model's input square, put back onto the image, in a frame FRAME px long."""
    if pcfg.lung_crop:
        raise ValueError("maps of lung-cropped inputs cannot be placed back onto the whole image")
    size = display.shape[0]
    rw, rh, x0, y0 = fit_geometry(width, height, size, pcfg.fit)
    canvas = np.zeros((rh, rw), np.float32)
    # Paste the part of the square that shows the image (all of it for "crop", less padding for "pad").
    src = display[max(y0, 0) : max(y0, 0) + min(rh, size), max(x0, 0) : max(x0, 0) + min(rw, size)]
    canvas[max(-y0, 0) : max(-y0, 0) + src.shape[0], max(-x0, 0) : max(-x0, 0) + src.shape[1]] = src
    scale = FRAME / max(width, height)
    return cv2.resize(canvas, (max(1, round(width * scale)), max(1, round(height * scale))))


def _members(checkpoints: Sequence[str | Path]) -> list[tuple[str, Checkpoint]]:
    out: list[tuple[str, Checkpoint]] = []
    for path in checkpoints:
        out.append((member_name(path, [name for name, _ in out]), load_checkpoint(path)))
    return out


def _top_box_iou(heat: np.ndarray, gt: np.ndarray, prob: float, threshold: float) -> tuple[float, list]:
    """IoU of the map's best box (at ``threshold``) with the true box it matches best; and the boxes."""
    boxes = boxes_from_heatmap(heat, thresholds=(threshold,), class_score=prob)
    pred, _ = to_arrays(boxes)
    return (float(best_match_iou(pred[:1], gt).max()) if len(pred) and len(gt) else 0.0), boxes


def _score_rows(
    name: str,
    image_id: str,
    label: str,
    heat: np.ndarray,
    gt: np.ndarray,
    prob: float,
    threshold: float,
    extra_thresholds: Sequence[float] = (),
    tolerance: float = 0.0,
) -> dict:
    """One (model, image, label) row: the PeerJ image IoU, the pointing game and the map's boxes."""
    top, boxes = _top_box_iou(heat, gt, prob, threshold)
    pred, scores = to_arrays(boxes)
    extra = {f"top_box_iou@{t:g}": _top_box_iou(heat, gt, prob, t)[0] for t in extra_thresholds}
    if tolerance > 0:
        extra["hit_within"] = pointing_game(heat, gt, tolerance)
    return {
        "model": name,
        "image_id": image_id,
        "label": label,
        "iou": image_iou(gt, pred, heat.shape),
        "hit": pointing_game(heat, gt),
        "top_box_iou": top,
        **extra,
        "n_boxes": len(boxes),
        "_pred": (pred, scores),
        "_gt": gt,
    }


def localisation_report(
    checkpoints: Sequence[str | Path],
    ws: Workspace,
    dataset: str,
    split: str = "test",
    *,
    method: str = "cam",
    layer: str | None = None,
    threshold: float = BOX_THRESHOLD,
    extra_thresholds: Sequence[float] = (),
    pointing_tolerance: float = 0.0,
    smooth: float = DEFAULT_SMOOTH,
    max_images: int = 200,
    progress: Callable[[int, int], None] | None = None,
    by: str | None = None,
    exclude: Collection[str] = (),
) -> LocalisationReport:
    """Score each member's and the ensemble's maps against the boxes of a split (first ``max_images``).

    ``layer`` picks an inner layer for the Grad-CAM family (CRM is always at the last feature map).
    ``extra_thresholds`` adds a ``top_box_iou@<t>`` column per box threshold, from the same maps.
    ``pointing_tolerance`` (pixels of the FRAME-long frame) adds ``pointing_within``: the pointing game
    counting a peak within that distance of a true box as a hit (Zhang et al.'s protocol allows 15 px at
    the image's own size), beside the strict ``pointing``.
    ``smooth`` is the maps' Gaussian smoothing, a fraction of the map's side (``explain``'s; 0: none).
    ``by`` names an index column (``source`` of a merged dataset): the table is also given per value.
    ``exclude`` names image ids left out (e.g. images a model was trained on).
    """
    smooth = check_smooth(smooth)
    data = ws.load_dataset(dataset)
    members = _members(checkpoints)
    labels = check_members([m.labels for _, m in members]) if len(members) > 1 else members[0][1].labels
    rows_index = split_rows(data.index, split).set_index("image_id")
    boxes = data.boxes[data.boxes["image_id"].isin(rows_index.index) & data.boxes["label"].isin(labels)]
    boxes = boxes[~boxes["image_id"].isin(set(exclude))]
    image_ids = list(dict.fromkeys(boxes["image_id"]))[:max_images]
    if not image_ids:
        raise ValueError(f"no image of the {split} split has boxes for the models' labels")
    rows = []
    for done, image_id in enumerate(image_ids, start=1):
        try:
            pixels, _ = read_image(rows_index.loc[image_id, "path"])
        except ImageReadError as exc:
            log.warning("skipping %s: %s", image_id, exc)
            continue
        height, width = pixels.shape
        scale = FRAME / max(width, height)
        mine = boxes[boxes["image_id"] == image_id]
        wanted = list(dict.fromkeys(mine["label"]))
        maps: dict[str, list[np.ndarray]] = {label: [] for label in wanted}
        probs: dict[str, list[float]] = {label: [] for label in wanted}
        for name, member in members:
            result = explain(member, pixels, wanted, (method,), layer=layer, smooth=smooth)
            for label in wanted:
                frame = map_to_frame(result.get(method, label).display, width, height, member.preprocess)
                gt = mine.loc[mine["label"] == label, ["x", "y", "w", "h"]].to_numpy(float) * scale
                maps[label].append(frame)
                probs[label].append(result.probabilities[label])
                rows.append(
                    _score_rows(
                        name,
                        image_id,
                        label,
                        frame,
                        gt,
                        result.probabilities[label],
                        threshold,
                        extra_thresholds,
                        pointing_tolerance,
                    )
                )
        if len(members) > 1:
            for label in wanted:
                gt = mine.loc[mine["label"] == label, ["x", "y", "w", "h"]].to_numpy(float) * scale
                heat = np.mean(maps[label], axis=0)
                prob = float(np.mean(probs[label]))
                rows.append(
                    _score_rows(
                        ENSEMBLE,
                        image_id,
                        label,
                        heat,
                        gt,
                        prob,
                        threshold,
                        extra_thresholds,
                        pointing_tolerance,
                    )
                )
        if progress is not None:
            progress(done, len(image_ids))
    frame = pd.DataFrame(rows)
    report = _summarise(frame, method, threshold)
    if by is not None:
        values = frame["image_id"].map(rows_index[by].astype(str))
        for value in sorted(values.unique()):
            report.groups[value] = _summarise(frame[values == value], method, threshold).table
    return report


def _summarise(rows: pd.DataFrame, method: str, threshold: float) -> LocalisationReport:
    table = []
    for name, group in rows.groupby("model", sort=False):
        per_label_peerj, per_label_coco = [], []
        for _, by_label in group.groupby("label"):
            preds, gts = list(by_label["_pred"]), list(by_label["_gt"])
            per_label_peerj.append(peerj_map(preds, gts))
            per_label_coco.append(coco_map(preds, gts))
        # A map with no positive evidence (hit None) points nowhere: a miss, strict or not.
        within = (
            {"pointing_within": float(group["hit_within"].eq(True).mean())} if "hit_within" in group else {}
        )
        table.append(
            {
                "model": name,
                "pairs": len(group),
                "mean_iou": float(np.nanmean(group["iou"].astype(float))),
                "peerj_map": float(np.nanmean(per_label_peerj)),
                "coco_map": float(np.nanmean(per_label_coco)),
                "pointing": float(group["hit"].eq(True).mean()),
                **within,
                "top_box_iou": float(group["top_box_iou"].mean()),
                **{c: float(group[c].mean()) for c in group.columns if c.startswith("top_box_iou@")},
            }
        )
    public = rows.drop(columns=["_pred", "_gt"])
    return LocalisationReport(pd.DataFrame(table).set_index("model"), public, method, threshold)
