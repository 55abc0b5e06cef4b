"""Detector sections of the Evaluate and Ensembles pages: box metrics, FROC curves, fused detectors.

A detector's boxes over a split are made once (with a progress bar) and stored in the workspace; the
metrics on them are cached by the weights' fingerprint, the dataset's version, the split and the score
threshold, so moving between tabs or pages never runs the detector again. PyTorch is imported only
when a detector is shown (the pages import this module for every model).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from cxrcore.evaluate.box_fusion import FUSION_METHODS, FUSION_NAMES
from cxrcore.evaluate.detection_report import froc_curves
from cxrcore.models.card import file_fingerprint, read_card
from cxrcore.models.readout import default_score_threshold, score_threshold_source, shared_score_threshold
from cxrcore.store import Workspace
from cxrcore.ui.data import csv_download
from cxrcore.ui.page import PageProgress

if TYPE_CHECKING:
    from cxrcore.evaluate.detector_eval import DetectorEvaluation

# The report's columns shown on the page, in order, with the words people read.
SHOWN = {
    "n_images": "images",
    "n_boxes": "true boxes",
    "mAP@0.25": "mAP@0.25",
    "mAP@0.5": "mAP@0.5",
    "mAR@0.5": "mAR@0.5",
    "F1@0.5": "F1@0.5",
    "mAP@0.75": "mAP@0.75",
    "coco_mAP": "COCO mAP",
    "rsna": "RSNA score",
    "cpm": "FROC (CPM)",
}


def _ensure_detections(ws: Workspace, checkpoints: list[Path], dataset: str, split: str) -> None:
    """Make (or find) each detector's stored boxes on the split, with a progress bar while one runs."""
    from cxrcore.evaluate.detect_predict import detect_split

    for checkpoint in checkpoints:
        with PageProgress(f"Detecting with {checkpoint.parent.name} on the {split} split") as bar:
            detect_split(checkpoint, ws, dataset, split, progress=bar)


@st.cache_data(show_spinner="Scoring the boxes...", max_entries=16)
def _evaluation(
    home: str, checkpoint: str, fp: str, dataset: str, updated_at: float, split: str, score: float
) -> DetectorEvaluation:
    from cxrcore.evaluate.detector_eval import evaluate_detector

    return evaluate_detector(checkpoint, Workspace(home), dataset, split, score_threshold=score)


def evaluation(ws: Workspace, checkpoint: Path, dataset: str, split: str, score: float) -> DetectorEvaluation:
    """A detector's evaluation on a split, cached by weights, dataset version, split and score threshold."""
    _ensure_detections(ws, [checkpoint], dataset, split)
    updated_at = ws.get_dataset(dataset).updated_at
    return _evaluation(
        str(ws.home), str(checkpoint), file_fingerprint(checkpoint), dataset, updated_at, split, score
    )


def score_threshold_input(key: str, default: tuple[float, str]) -> float:
    """The score from which boxes count for mAR, F1 and the RSNA score, starting at ``default``.

    ``default`` is (cut, where it comes from), from ``default_score_threshold`` or ``shared_score_threshold``;
    ``key`` names the detectors shown, so that picking others starts the slider at their default.
    """
    start, source = default
    score = st.slider(
        "Box score threshold",
        0.05,
        0.95,
        min(max(start, 0.05), 0.95),
        0.05,
        key=key,
        help="Boxes scoring at least this count for mAR, F1 and the RSNA score; mAP and FROC sweep all.",
    )
    st.caption(
        f"mAR, F1 and the RSNA score count boxes scoring {score:.2f} or more; "
        f"the slider starts at {start:.2f}: {source}."
    )
    return score


def froc_figure(curves: dict[str, pd.DataFrame], max_fp: float = 8.0) -> go.Figure:
    """Sensitivity against false positives per image (log axis, 1/8 to 8), one line per class."""
    fig = go.Figure()
    for name, curve in curves.items():
        points = curve[(curve["fp_per_image"] > 0) & (curve["fp_per_image"] <= max_fp)]
        fig.add_trace(
            go.Scatter(
                x=points["fp_per_image"],
                y=points["sensitivity"],
                mode="lines",
                name=name,
                line={"width": 3 if name == "overall" else 1.5},
                hovertemplate="%{x:.2f} FP / image<br>sensitivity %{y:.3f}<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(
        xaxis={"title": "false positives per image", "type": "log", "range": [-0.95, 0.95]},
        yaxis={"title": "sensitivity (IoU >= 0.5)", "range": [0, 1.02]},
        height=440,
    )
    return fig


def detector_section(ws: Workspace, checkpoint: Path, dataset: str, split: str) -> None:
    """The Evaluate page for a detector: box metrics per class, FROC curves and image-level AUROC."""
    card = read_card(checkpoint)
    default = (default_score_threshold(card), score_threshold_source(card))
    score = score_threshold_input(f"eval_det_score:{checkpoint}", default)
    result = evaluation(ws, checkpoint, dataset, split, score)
    stored = result.stored
    st.caption(
        f"{len(stored.image_ids)} images of the {split} split, {len(stored.table):,} boxes kept"
        + (" · boxes reused from the workspace" if stored.from_cache else "")
    )
    tab_table, tab_froc, tab_image = st.tabs(["Box metrics", "FROC curves", "Image level (AUROC)"])
    with tab_table:
        shown = result.report[[c for c in SHOWN if c in result.report.columns]].rename(columns=SHOWN)
        st.dataframe(shown.round(3), width="stretch")
        st.caption(
            "mAP / mAR / F1 at IoU 0.25, 0.5 and 0.75 as in the RSNA Mask R-CNN evaluation; COCO mAP over "
            "IoU 0.5-0.95; the RSNA Kaggle score (per image TP / (TP + FP + FN) over IoU 0.40-0.75); FROC "
            "CPM: mean sensitivity at 1/8 to 8 false positives per image. Overall pools the classes."
        )
        csv_download(
            result.report.reset_index(),
            f"detector-{checkpoint.parent.name}-{dataset}-{split}",
            "Full table (CSV)",
        )
    with tab_froc:
        truth = ws.load_dataset(dataset).boxes
        curves = froc_curves(stored.table, truth, stored.image_ids, list(result.report.index[:-1]))
        st.plotly_chart(froc_figure(curves), width="stretch")
    with tab_image:
        st.caption("Each image's highest box score per class, scored as a classifier's probability would be.")
        cols = ["n", "positives", "auroc", "auroc_lo", "auroc_hi", "ap"]
        st.dataframe(
            result.image_level[[c for c in cols if c in result.image_level.columns]].round(3), width="stretch"
        )


@st.cache_data(show_spinner="Fusing the detectors' boxes and scoring them...", max_entries=8)
def _fused(
    home: str,
    checkpoints: tuple[str, ...],
    fps: tuple[str, ...],
    dataset: str,
    updated_at: float,
    split: str,
    methods: tuple[str, ...],
    score: float,
) -> pd.DataFrame:
    from cxrcore.evaluate.detector_eval import compare_detector_ensembles

    paths = list(checkpoints)
    return compare_detector_ensembles(
        paths, Workspace(home), dataset, split, methods=methods, score_threshold=score
    )


def ensemble_section(ws: Workspace, checkpoints: list[Path], dataset: str, split: str) -> None:
    """The Ensembles page for detectors: members and their fused boxes in one table."""
    methods = st.multiselect(
        "Box fusion", FUSION_METHODS, default=list(FUSION_METHODS), format_func=FUSION_NAMES.get
    )
    default = shared_score_threshold([read_card(p) for p in checkpoints])
    score = score_threshold_input("ens_det_score:" + "|".join(str(p) for p in checkpoints), default)
    if not methods:
        st.info("Pick at least one way to fuse the boxes.")
        return
    _ensure_detections(ws, checkpoints, dataset, split)
    paths = tuple(str(p) for p in checkpoints)
    fps = tuple(file_fingerprint(p) for p in checkpoints)
    updated_at = ws.get_dataset(dataset).updated_at
    table = _fused(str(ws.home), paths, fps, dataset, updated_at, split, tuple(methods), score)
    shown = table.set_index("model")[["kind", *[c for c in SHOWN if c in table.columns]]].rename(
        columns=SHOWN
    )
    st.dataframe(shown.round(3), width="stretch")
    st.caption(
        "Weighted box fusion averages overlapping boxes of the members (score-weighted), NMS keeps the best "
        "of each overlapping group, soft-NMS lowers the scores of overlapping boxes instead of dropping them."
    )
    csv_download(table, f"detector-ensembles-{dataset}-{split}", "Full table (CSV)")
