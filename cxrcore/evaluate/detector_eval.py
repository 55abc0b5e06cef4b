"""Evaluating a detector on a split, and heat-map boxes against detector boxes on the same images.

``evaluate_detector`` scores a detector's stored boxes (``detect_split``) with the detection report
(mAP / mAR / F1 at IoU 0.25, 0.5, 0.75, COCO mAP, RSNA score, FROC; per class and overall) and scores
each image's highest box per class as an image-level prediction, with the same AUROC and confidence
intervals as a classifier, so detectors and classifiers share one table.

``heatmap_detections`` turns a classifier's maps (CAM or CRM, the dashboard's smoothing) into a
detections frame: every image of the split, every class the classifier and the boxes share, boxes
around the map's regions above ``threshold`` of its peak scored by peak heat times the class
probability. ``compare_box_sources`` puts both through the same report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cxrcore.data.detections import DETECTION_COLUMNS, empty_detections
from cxrcore.data.split import split_rows
from cxrcore.evaluate.box_fusion import FUSION_METHODS, FUSION_NAMES, fuse_detections
from cxrcore.evaluate.classification import N_BOOT, summarise
from cxrcore.evaluate.detect_predict import StoredDetections, detect_split
from cxrcore.evaluate.detection import box_labels, image_scores
from cxrcore.evaluate.detection_report import OVERALL, detection_report
from cxrcore.evaluate.map_localisation import FRAME, map_to_frame
from cxrcore.evaluate.report import member_name
from cxrcore.explain.boxes import BOX_THRESHOLD, boxes_from_heatmap
from cxrcore.explain.engine import DEFAULT_SMOOTH, explain
from cxrcore.io import ImageReadError, read_image
from cxrcore.io.reader import image_size
from cxrcore.models.checkpoint import Checkpoint, load_checkpoint, read_card
from cxrcore.models.detection import DEFAULT_SCORE_THRESHOLD
from cxrcore.models.ensemble import check_members
from cxrcore.models.readout import default_score_threshold, score_threshold_source, shared_score_threshold
from cxrcore.store import Workspace

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DetectorEvaluation:
    """A detector's box metrics and image-level scores on one split."""

    report: pd.DataFrame  # detection_report: one row per class and "overall"
    image_level: pd.DataFrame  # summarise(): AUROC with CI etc. of the highest box score per class
    stored: StoredDetections
    score_threshold: float  # the cut mAR, F1 and the RSNA score counted boxes from
    threshold_source: str  # where it came from, in words ("chosen on validation ...", "default 0.5 ...")


def truth_boxes(
    ws: Workspace, dataset: str, image_ids: Sequence[str], classes: Sequence[str]
) -> pd.DataFrame:
    """The dataset's truth boxes of these classes on these images (the boxes frame)."""
    boxes = ws.load_dataset(dataset).boxes
    return boxes[boxes["image_id"].isin(set(image_ids)) & boxes["label"].isin(list(classes))]


def evaluate_detector(
    checkpoint: str | Path | Checkpoint,
    ws: Workspace,
    dataset: str,
    split: str = "test",
    *,
    score_threshold: float | None = None,
    n_boot: int = N_BOOT,
    refresh: bool = False,
    progress: Progress | None = None,
) -> DetectorEvaluation:
    """Box metrics and image-level AUROC of a detector on a split (detections stored and reused).

    ``score_threshold``: the cut mAR, F1 and the RSNA score count boxes from; None takes the card's
    (``default_score_threshold``: chosen on validation, else 0.5).
    """
    card = checkpoint.card if isinstance(checkpoint, Checkpoint) else read_card(checkpoint)
    if score_threshold is None:
        score_threshold, source = default_score_threshold(card), score_threshold_source(card)
    else:
        source = "given"
    stored = detect_split(checkpoint, ws, dataset, split, refresh=refresh, progress=progress)
    classes = list(stored.classes)
    truth = truth_boxes(ws, dataset, stored.image_ids, classes)
    present = [c for c in classes if (truth["label"] == c).any()]
    if not present:
        raise ValueError(f"no image of the {split} split of {dataset!r} has boxes of {classes}")
    report = detection_report(stored.table, truth, stored.image_ids, present, score_threshold=score_threshold)
    y_true = box_labels(truth, stored.image_ids, present).to_numpy(dtype=float)
    y_score = image_scores(stored.table, stored.image_ids, present).to_numpy(dtype=float)
    image_level = summarise(y_true, y_score, present, n_boot=n_boot)
    return DetectorEvaluation(report, image_level, stored, float(score_threshold), source)


def heatmap_detections(
    checkpoint: str | Path | Checkpoint,
    ws: Workspace,
    dataset: str,
    split: str = "test",
    *,
    classes: Sequence[str] | None = None,
    method: str = "crm",
    threshold: float = BOX_THRESHOLD,
    smooth: float = DEFAULT_SMOOTH,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """A classifier's heat-map boxes on every image of a split, as detections in file pixels; and the ids."""
    loaded = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    rows = split_rows(ws.load_dataset(dataset).index, split)
    wanted = [c for c in (classes or loaded.labels) if c in loaded.labels]
    if not wanted:
        raise ValueError(f"{loaded.name} knows none of the classes {list(classes or [])}")
    frames, ids = [], []
    for done, (image_id, path) in enumerate(zip(rows["image_id"], rows["path"], strict=True), start=1):
        try:
            pixels, _ = read_image(path)
        except ImageReadError as exc:
            log.warning("skipping %s: %s", image_id, exc)
            continue
        ids.append(str(image_id))
        height, width = pixels.shape
        back = max(width, height) / FRAME
        result = explain(loaded, pixels, wanted, (method,), smooth=smooth)
        for label in wanted:
            heat = map_to_frame(result.get(method, label).display, width, height, loaded.preprocess)
            for box in boxes_from_heatmap(heat, (threshold,), class_score=result.probabilities[label]):
                frames.append(
                    (str(image_id), label, box.x * back, box.y * back, box.w * back, box.h * back, box.score)
                )
        if progress is not None:
            progress(done, len(rows))
    frame = pd.DataFrame(frames, columns=list(DETECTION_COLUMNS)) if frames else empty_detections()
    return frame, ids


def compare_box_sources(
    detectors: Sequence[str | Path],
    classifiers: Sequence[str | Path],
    ws: Workspace,
    dataset: str,
    split: str = "test",
    *,
    method: str = "crm",
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    progress: Callable[[str, int, int], None] | None = None,
) -> pd.DataFrame:
    """One table: each detector's and each classifier's heat-map boxes, scored alike on the same images.

    Rows are (source, class) with ``source`` the checkpoint's file stem (heat-map sources get the method
    appended); classes are those with boxes on the split that each source knows, plus "overall".
    """
    tables = []
    for path in detectors:
        name = member_name(path, [])
        done = (lambda d, t, n=name: progress(n, d, t)) if progress else None
        result = evaluate_detector(path, ws, dataset, split, score_threshold=score_threshold, progress=done)
        tables.append(result.report.assign(source=name, kind="detector"))
    for path in classifiers:
        name = f"{member_name(path, [])} ({method.upper()} boxes)"
        done = (lambda d, t, n=name: progress(n, d, t)) if progress else None
        frame, ids = heatmap_detections(path, ws, dataset, split, method=method, progress=done)
        truth = truth_boxes(ws, dataset, ids, sorted(set(frame["label"])))
        present = sorted(set(truth["label"]))
        if not present:
            log.warning("%s: no boxes of its classes on %s/%s", name, dataset, split)
            continue
        report = detection_report(frame, truth, ids, present, score_threshold=score_threshold)
        tables.append(report.assign(source=name, kind="heat map"))
    if not tables:
        raise ValueError(
            "nothing to compare: give at least one detector or classifier with boxes on the split"
        )
    out = pd.concat(tables).reset_index().rename(columns={"index": "class"})
    first = ["source", "kind", "class"]
    return out[first + [c for c in out.columns if c not in first]]


def compare_detector_ensembles(
    detectors: Sequence[str | Path],
    ws: Workspace,
    dataset: str,
    split: str = "test",
    *,
    methods: Sequence[str] = FUSION_METHODS,
    weights: Sequence[float] | None = None,
    score_threshold: float | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> pd.DataFrame:
    """Members and their fused boxes (WBF, NMS, soft-NMS), each scored by the detection report's overall row.

    Members must detect the same classes. Rows: one per member and per fusion method, with ``kind``
    "member" or "ensemble", the report's columns and the ``score_threshold`` every row was scored at
    (None: the lowest of the members' defaults, ``shared_score_threshold``).
    """
    if len(detectors) < 2:
        raise ValueError("an ensemble needs at least two detectors")
    if score_threshold is None:
        score_threshold = shared_score_threshold([read_card(p) for p in detectors])[0]
    stored = []
    for path in detectors:
        name = member_name(path, [])
        done = (lambda d, t, n=name: progress(n, d, t)) if progress else None
        stored.append(detect_split(path, ws, dataset, split, progress=done))
    classes = check_members([s.classes for s in stored])
    ids = stored[0].image_ids
    truth = truth_boxes(ws, dataset, ids, classes)
    present = [c for c in classes if (truth["label"] == c).any()]
    if not present:
        raise ValueError(f"no image of the {split} split of {dataset!r} has boxes of {list(classes)}")
    rows_index = split_rows(ws.load_dataset(dataset).index, split).set_index("image_id")
    sizes = {str(i): image_size(rows_index.loc[i, "path"]) for i in ids}
    rows: list[dict] = []
    for path, member in zip(detectors, stored, strict=True):
        report = detection_report(member.table, truth, ids, present, score_threshold=score_threshold)
        name = member_name(path, [r["model"] for r in rows])
        rows.append({"model": name, "kind": "member", **report.loc[OVERALL].to_dict()})
    for method in methods:
        fused = fuse_detections([s.table for s in stored], method, weights=weights, image_sizes=sizes)
        report = detection_report(fused, truth, ids, present, score_threshold=score_threshold)
        name = FUSION_NAMES.get(method, method)
        rows.append({"model": name, "kind": "ensemble", **report.loc[OVERALL].to_dict()})
    return pd.DataFrame(rows).assign(score_threshold=float(score_threshold))
