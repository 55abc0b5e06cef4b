"""One table of a detector's scores per class and overall, from a detections frame and a truth boxes frame.

Detections follow ``cxrcore.data.detections`` and truth the boxes frame of ``cxrcore.data.index``, both in
the pixel space of the original images. The evaluated images are named explicitly, because an image with no
box at all still counts: it is a negative, and the detector's boxes on it are false positives.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrcore.data.detections import DEFAULT_SCORE_THRESHOLD, validate_detections
from cxrcore.data.index import validate_boxes
from cxrcore.evaluate.detection import (
    FROC_FP_RATES,
    check_image_ids,
    froc,
    rsna_score,
)
from cxrcore.evaluate.localisation import MASK_RCNN_IOU_THRESHOLDS, coco_map, mask_rcnn_table, scores_by_cut

log = logging.getLogger(__name__)

OVERALL = "overall"  # the row pooling every class; a prediction still matches only truth of its class
# DEFAULT_SCORE_THRESHOLD (0.5, from cxrcore.data.detections): boxes kept for mAR, F1 and the RSNA score
# when the caller gives no cut (mAP, COCO mAP and FROC sweep every score).
COUNT_COLUMNS: tuple[str, ...] = ("n_images", "n_positive_images", "n_boxes", "n_detections")
_COORDS = ["x", "y", "w", "h"]


def report_columns(fp_rates: Sequence[float] = FROC_FP_RATES) -> tuple[str, ...]:
    """The columns of ``detection_report`` for the given FROC false-positive rates."""
    per_iou = tuple(f"{m}@{t:g}" for t in MASK_RCNN_IOU_THRESHOLDS for m in ("mAP", "mAR", "F1"))
    return (*COUNT_COLUMNS, *per_iou, "coco_mAP", "rsna", *(f"froc@{r:g}" for r in fp_rates), "cpm")


DETECTION_REPORT_COLUMNS: tuple[str, ...] = report_columns()


def _per_image(frame: pd.DataFrame, ids: list[str], scored: bool) -> list:
    """One entry per evaluated image: (boxes, scores) pairs when ``scored``, else box arrays."""
    empty = (np.zeros((0, 4)), np.zeros(0)) if scored else np.zeros((0, 4))
    out = dict.fromkeys(ids, empty)
    keys = frame["image_id"].to_numpy(dtype=object)
    order = np.argsort(keys, kind="stable")
    keys, boxes = keys[order], frame[_COORDS].to_numpy(dtype=float)[order]
    scores = frame["score"].to_numpy(dtype=float)[order] if scored else None
    cuts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1, len(keys)] if len(keys) else []
    for start, stop in itertools.pairwise(cuts):
        at = slice(start, stop)
        out[str(keys[start])] = (boxes[at], scores[at]) if scores is not None else boxes[at]
    return [out[i] for i in ids]


def _scores(
    preds: list,
    gts: list,
    groups: np.ndarray,
    n_images: int,
    score_threshold: float,
    froc_options: dict,
) -> dict[str, float]:
    """The metric columns of one row (classes already separated into entries)."""
    # Entries with neither boxes nor detections change no count: leave them out of the costly matching.
    used = [k for k, (p, g) in enumerate(zip(preds, gts, strict=True)) if len(p[0]) or len(g)]
    preds, gts, groups = [preds[k] for k in used], [gts[k] for k in used], groups[used]
    table = mask_rcnn_table(preds, gts, score_threshold=score_threshold)
    row: dict[str, float] = {}
    for t in MASK_RCNN_IOU_THRESHOLDS:
        row.update({f"{m}@{t:g}": float(table.loc[t, m]) for m in ("mAP", "mAR", "F1")})
    row["coco_mAP"] = coco_map(preds, gts)
    row["rsna"] = rsna_score(preds, gts, score_threshold=score_threshold, groups=groups).score
    result = froc(preds, gts, n_images=n_images, **froc_options)
    row.update({f"froc@{r:g}": s for r, s in zip(result.fp_rates, result.sensitivities, strict=True)})
    row["cpm"] = result.cpm
    return row


def _row(
    name: str,
    preds: list,
    gts: list,
    groups: np.ndarray,
    n_images: int,
    score_threshold: float,
    froc_options: dict,
) -> dict[str, float]:
    """Counts and scores of one class (or of all classes pooled); one warning when it has no truth."""
    n_boxes = sum(len(g) for g in gts)
    positive = {int(g) for g, gt in zip(groups, gts, strict=True) if len(gt)}
    counts = {
        "n_images": n_images,
        "n_positive_images": len(positive),
        "n_boxes": n_boxes,
        "n_detections": sum(len(p[0]) for p in preds),
    }
    if n_boxes:
        return {**counts, **_scores(preds, gts, groups, n_images, score_threshold, froc_options)}
    warnings.warn(
        f"{name!r} has no truth boxes among the {n_images} evaluated images: its mAP, mAR, F1, COCO mAP "
        "and FROC are NaN (its RSNA score counts every detection as a false positive)",
        stacklevel=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {**counts, **_scores(preds, gts, groups, n_images, score_threshold, froc_options)}


def detection_report(
    detections: pd.DataFrame,
    truth: pd.DataFrame,
    image_ids: Sequence[str],
    classes: Sequence[str] | None = None,
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    fp_rates: Sequence[float] = FROC_FP_RATES,
    froc_iou: float = 0.5,
    froc_hit: str = "iou",
    froc_duplicates: str = "fp",
) -> pd.DataFrame:
    """A detector's scores per class plus an "overall" row, over the images ``image_ids``.

    Every image in ``image_ids`` counts, boxes or not; detections and truth of other images are left out.
    ``classes`` defaults to every label of the truth and detections on those images, sorted. Columns are
    ``report_columns(fp_rates)``: counts; mAP, mAR and F1 at IoU 0.25, 0.5 and 0.75 (mAR and F1 of the
    detections scoring >= ``score_threshold``; see ``localisation.mask_rcnn_table``); COCO mAP@[.5:.95];
    the RSNA score of the detections >= ``score_threshold``; FROC sensitivity at each false-positive rate
    and their mean, the CPM (see ``detection.froc`` for ``froc_iou``, ``froc_hit`` and ``froc_duplicates``).
    The "overall" row pools the classes of the table, a detection matching only truth of its own class. A
    class without truth boxes gets NaN scores (RSNA aside) and a warning.
    """
    ids = check_image_ids(image_ids)
    det = validate_detections(detections)
    det = det[det["image_id"].isin(ids)]
    gt = validate_boxes(truth)
    gt = gt[gt["image_id"].isin(ids)]
    log.debug("detection report: %d detections and %d truth boxes on %d images", len(det), len(gt), len(ids))
    names = sorted(set(gt["label"]) | set(det["label"])) if classes is None else [str(c) for c in classes]
    if OVERALL in names or len(set(names)) != len(names):
        raise ValueError(f"classes must be distinct names other than {OVERALL!r}; got {names}")
    froc_options = {
        "fp_rates": fp_rates,
        "iou_threshold": froc_iou,
        "hit": froc_hit,
        "duplicates": froc_duplicates,
    }
    image_of = np.arange(len(ids))
    rows: dict[str, dict[str, float]] = {}
    all_preds: list = []
    all_gts: list = []
    for name in names:
        preds = _per_image(det[det["label"] == name], ids, scored=True)
        gts = _per_image(gt[gt["label"] == name], ids, scored=False)
        rows[name] = _row(f"class {name}", preds, gts, image_of, len(ids), score_threshold, froc_options)
        all_preds += preds
        all_gts += gts
    groups = np.tile(image_of, len(names))
    rows[OVERALL] = _row(OVERALL, all_preds, all_gts, groups, len(ids), score_threshold, froc_options)
    table = pd.DataFrame.from_dict(rows, orient="index").loc[:, list(report_columns(fp_rates))]
    table.index.name = "class"
    return table


def overall_by_cut(
    detections: pd.DataFrame,
    truth: pd.DataFrame,
    image_ids: Sequence[str],
    classes: Sequence[str],
    cuts: Sequence[float],
    *,
    iou_threshold: float = 0.5,
) -> pd.DataFrame:
    """The "overall" row's precision, recall (mAR) and F1 at one IoU for each score cut, one matching.

    Classes are pooled as ``detection_report`` pools them (a detection matches only truth of its class), so
    at IoU 0.5 the recall and F1 of a cut are the report's ``mAR@0.5`` and ``F1@0.5`` at that cut.
    """
    ids = check_image_ids(image_ids)
    det = validate_detections(detections)
    det = det[det["image_id"].isin(ids)]
    gt = validate_boxes(truth)
    gt = gt[gt["image_id"].isin(ids)]
    preds: list = []
    gts: list = []
    for name in classes:
        preds += _per_image(det[det["label"] == name], ids, scored=True)
        gts += _per_image(gt[gt["label"] == name], ids, scored=False)
    return scores_by_cut(preds, gts, cuts, iou_threshold=iou_threshold)


def froc_curves(
    detections: pd.DataFrame,
    truth: pd.DataFrame,
    image_ids: Sequence[str],
    classes: Sequence[str],
    *,
    iou_threshold: float = 0.5,
) -> dict[str, pd.DataFrame]:
    """The FROC curve (``threshold, fp_per_image, sensitivity``) of each class with boxes, and overall."""
    ids = check_image_ids(image_ids)
    det = validate_detections(detections)
    gt = validate_boxes(truth)
    curves: dict[str, pd.DataFrame] = {}
    all_preds: list = []
    all_gts: list = []
    for name in classes:
        preds = _per_image(det[(det["label"] == name) & det["image_id"].isin(ids)], ids, scored=True)
        gts = _per_image(gt[(gt["label"] == name) & gt["image_id"].isin(ids)], ids, scored=False)
        all_preds += preds
        all_gts += gts
        if any(len(g) for g in gts):
            curves[name] = froc(preds, gts, n_images=len(ids), iou_threshold=iou_threshold).curve
    if any(len(g) for g in all_gts):
        curves[OVERALL] = froc(all_preds, all_gts, n_images=len(ids), iou_threshold=iou_threshold).curve
    return curves
