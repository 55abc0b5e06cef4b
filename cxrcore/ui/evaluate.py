"""Widgets of the Evaluate and Ensembles pages: cached evaluations, curves, tables and the threshold tool."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import streamlit as st

from cxrcore.data.index import VALID_SPLIT
from cxrcore.evaluate import background
from cxrcore.evaluate.calibration import compare_scores, reliability_curve
from cxrcore.evaluate.classification import (
    FIXED_RULE,
    THRESHOLD_RULE_NAMES,
    average_precision,
    pr_points,
    roc_points,
    threshold_metrics,
)
from cxrcore.evaluate.predict import Predictions, predict, split_has_images
from cxrcore.evaluate.report import EnsembleComparison, Evaluation, compare_ensembles, evaluate_checkpoint
from cxrcore.models.card import file_fingerprint, read_card
from cxrcore.models.readout import CALIBRATION_NAMES
from cxrcore.store import Workspace
from cxrcore.ui import charts
from cxrcore.ui.data import csv_download
from cxrcore.ui.page import PageProgress
from cxrcore.workflows.first_visit import ensemble_defaults as ensemble_defaults  # the page's defaults

if TYPE_CHECKING:  # the maps need PyTorch: imported when localisation is asked for
    from cxrcore.evaluate.map_localisation import LocalisationReport

CALIBRATION_COLUMNS = {
    "n": "images",
    "positives": "positives",
    "ece_before": "ECE before",
    "ece_after": "ECE after",
    "brier_before": "Brier before",
    "brier_after": "Brier after",
}


POLL_S = 1.0  # how often a page waiting on background predictions reads their progress


def model_name(checkpoint: str | Path) -> str:
    """A model's short name on the page: a bundled file's stem, or a run's folder and file (``tiny/best``)."""
    path = Path(checkpoint)
    return f"{path.parent.name}/{path.stem}" if path.stem in ("best", "last") else path.stem


def _pending(ws: Workspace, checkpoints: list[str], dataset: str, splits: set[str]) -> list[tuple[str, str]]:
    """(checkpoint, split) pairs whose predictions are not stored; small splits are predicted here first."""
    pending = []
    for checkpoint in checkpoints:
        for split in sorted(splits):
            if background.is_stored(background.prediction_target(checkpoint, ws, dataset, split)):
                continue
            if background.split_size(ws, dataset, split) > background.INLINE_MAX_IMAGES:
                pending.append((checkpoint, split))
                continue
            with PageProgress(f"Predicting {model_name(checkpoint)} on the {split} split") as bar:
                predict(checkpoint, ws, dataset, split, progress=bar)
    return pending


def _retry(home: str, checkpoint: str, dataset: str, split: str) -> None:
    background.start(checkpoint, Workspace(home), dataset, split, retry=True)


@st.fragment(run_every=POLL_S)
def _progress_panel(home: str, pending: list[tuple[str, str]], dataset: str) -> None:
    """Live progress of background predictions; the whole page runs again once every one is stored."""
    ws = Workspace(home)
    found = [(c, s, background.status(c, ws, dataset, s)) for c, s in pending]
    if all(status.state == background.READY for _, _, status in found):
        st.rerun()
    for checkpoint, split, status in found:
        what = f"{model_name(checkpoint)} on the {split} split"
        if status.state == background.FAILED:
            st.error(f"Predicting {what} failed: {status.error}")
            if status.log_tail:
                st.code(status.log_tail, language=None)
            st.button(
                "Try again",
                key=f"retry_{status.key}",
                on_click=_retry,
                args=(home, checkpoint, dataset, split),
            )
        elif status.state == background.READY:
            st.progress(1.0, text=f"Predicted {what}: ready")
        else:
            total = max(status.total, 1)
            text = f"Predicting {what}: {status.done}/{status.total} images"
            text += " (waiting for other predictions to finish)" if status.waiting else ""
            st.progress(min(status.done / total, 1.0), text=text)


def predictions_ready(ws: Workspace, checkpoints: list[str], dataset: str, splits: set[str]) -> bool:
    """Whether the stored predictions needed are all there; if not, start them in the background and
    show their progress (small splits are predicted at once, with a progress bar)."""
    pending = _pending(ws, checkpoints, dataset, splits)
    if not pending:
        return True
    for checkpoint, split in pending:
        background.start(checkpoint, ws, dataset, split)
    st.caption(
        "Predictions run in the background at low priority and are stored in the workspace; the page "
        "shows the results when they are ready (other pages stay usable meanwhile)."
    )
    _progress_panel(str(ws.home), pending, dataset)
    return False


@st.cache_data(show_spinner="Computing metrics...", max_entries=16)
def _evaluation(
    home: str,
    checkpoint: str,
    fp: str,
    dataset: str,
    updated_at: float,
    split: str,
    rule: str,
    target: float | None,
) -> Evaluation:
    return evaluate_checkpoint(checkpoint, Workspace(home), dataset, split, rule=rule, target=target)


def evaluation(
    ws: Workspace, checkpoint: Path, dataset: str, split: str, rule: str, target: float | None
) -> Evaluation | None:
    """One checkpoint's evaluation, cached by weights fingerprint, dataset version, split and rule; None
    while its predictions are made in the background (their progress is shown)."""
    updated_at = ws.get_dataset(dataset).updated_at
    with_valid = rule != FIXED_RULE and split_has_images(ws, dataset, VALID_SPLIT)
    if not predictions_ready(ws, [str(checkpoint)], dataset, {split, VALID_SPLIT} if with_valid else {split}):
        return None
    fp = file_fingerprint(checkpoint)
    return _evaluation(str(ws.home), str(checkpoint), fp, dataset, updated_at, split, rule, target)


@st.cache_data(show_spinner="Fitting the ensembles and computing metrics...", max_entries=8)
def _comparison(
    home: str,
    checkpoints: tuple[str, ...],
    fps: tuple[str, ...],
    dataset: str,
    updated_at: float,
    methods: tuple[str, ...],
    split: str,
) -> EnsembleComparison:
    return compare_ensembles(list(checkpoints), Workspace(home), dataset, methods, split=split)


def comparison(
    ws: Workspace, checkpoints: list[Path], dataset: str, methods: list[str], split: str
) -> EnsembleComparison | None:
    """Members and ensembles on one split (ensembles fitted on validation), cached like evaluation(); None
    while the members' predictions are made in the background."""
    paths = [str(p) for p in checkpoints]
    updated_at = ws.get_dataset(dataset).updated_at
    if not predictions_ready(ws, paths, dataset, {split, VALID_SPLIT}):
        return None
    fps = tuple(file_fingerprint(p) for p in paths)
    return _comparison(str(ws.home), tuple(paths), fps, dataset, updated_at, tuple(methods), split)


def _known(preds: Predictions, j: int) -> tuple[np.ndarray, np.ndarray]:
    y = preds.y_true[:, j]
    keep = ~np.isnan(y)
    return y[keep], preds.y_prob[keep, j]


def _single_class(y: np.ndarray) -> bool:
    return y.size == 0 or y.min() == y.max()


def roc_section(result: Evaluation, chosen: list[str]) -> None:
    """ROC and precision-recall curves of the chosen labels, AUROC with its CI in the legend."""
    preds, summary = result.predictions, result.summary
    roc, pr = {}, {}
    for label in chosen:
        y, p = _known(preds, preds.labels.index(label))
        if _single_class(y):
            st.warning(f"{label}: only one class in this split, so it has no ROC curve.")
            continue
        row = summary.loc[label]
        fpr, tpr, _ = roc_points(y, p)
        roc[f"{label} · AUROC {row['auroc']:.3f} [{row['auroc_lo']:.3f}, {row['auroc_hi']:.3f}]"] = (fpr, tpr)
        precision, recall, _ = pr_points(y, p)
        pr[f"{label} · AP {average_precision(y, p):.3f}"] = (recall, precision)
    left, right = st.columns(2)
    left.plotly_chart(charts.curve_figure(roc, "roc"), width="stretch")
    right.plotly_chart(charts.curve_figure(pr, "pr"), width="stretch")


def _calibration_caption(checkpoint: Path) -> str:
    """What calibration the card holds and where it was fitted, or how to fit one."""
    calibration = read_card(checkpoint).calibration
    if not calibration:
        return (
            "This model's probabilities are not calibrated (the plain sigmoid): fit a calibration with "
            f"`python -m cxrcore checkpoint calibrate {checkpoint} --dataset DATASET`."
        )
    fitted = calibration.get("fitted_on") or {}
    return (
        f"Probabilities calibrated by {CALIBRATION_NAMES.get(calibration['method'], calibration['method'])}, "
        f"fitted on {fitted.get('dataset')}/{fitted.get('split')} ({fitted.get('n_images')} images). "
        "Before: the plain sigmoid of the logits (dashed); after: the calibrated probabilities (solid)."
    )


def calibration_section(preds: Predictions, chosen: list[str], checkpoint: Path) -> None:
    """Reliability curves and ECE / Brier score per label, before and after the card's calibration."""
    st.caption(_calibration_caption(checkpoint))
    known = [label for label in chosen if _known(preds, preds.labels.index(label))[0].size]
    if not known:
        st.info("No known labels to calibrate against in this split.")
        return
    columns = [preds.labels.index(label) for label in known]
    y, before, after = preds.y_true[:, columns], preds.raw_prob[:, columns], preds.y_prob[:, columns]
    curves, dashed = {}, []
    for j, label in enumerate(known):
        keep = ~np.isnan(y[:, j])
        curves[f"{label} · before"] = reliability_curve(y[keep, j], before[keep, j])
        curves[f"{label} · after"] = reliability_curve(y[keep, j], after[keep, j])
        dashed.append(f"{label} · before")
    table = compare_scores(y, before, after, known)
    left, right = st.columns([2, 1])
    left.plotly_chart(charts.reliability_figure(curves, dashed), width="stretch")
    shown = table.rename(columns=CALIBRATION_COLUMNS)[list(CALIBRATION_COLUMNS.values())]
    right.dataframe(shown.round(4), width="stretch")


def threshold_tool(result: Evaluation) -> None:
    """Pick a label and a threshold; see the confusion matrix and the metrics at that threshold."""
    preds = result.predictions
    label = st.selectbox("Label", preds.labels, key="eval_threshold_label")
    y, p = _known(preds, preds.labels.index(label))
    chosen = float(result.thresholds.get(label, 0.5))
    threshold = st.slider(
        "Threshold",
        0.0,
        1.0,
        value=round(chosen, 3),
        step=0.001,
        format="%.3f",
        key=f"eval_threshold_{label}",
        help="Starts at the validation split's operating point "
        f"({THRESHOLD_RULE_NAMES[result.threshold_rule]}).",
    )
    if y.size == 0:
        st.info("This label is unknown for every image of the split.")
        return
    m = threshold_metrics(y, p, threshold)
    left, right = st.columns([1, 1])
    left.plotly_chart(
        charts.confusion_figure(int(m["tp"]), int(m["fp"]), int(m["tn"]), int(m["fn"])),
        width="stretch",
    )
    shown = {k: m[k] for k in ("sensitivity", "specificity", "ppv", "npv", "f1", "mcc", "accuracy")}
    right.dataframe(pd.Series(shown, name="value").to_frame().round(4))


def downloads(result: Evaluation, stem: str) -> None:
    """CSV downloads of the prediction table and the metrics table."""
    left, right = st.columns(2)
    with left:
        csv_download(
            result.predictions.table.set_index("image_id"), f"{stem}-predictions", "Predictions (CSV)"
        )
    with right:
        csv_download(result.summary, f"{stem}-metrics", "Metrics (CSV)")


def comparison_roc(result: EnsembleComparison, label: str) -> None:
    """ROC curves of every member and ensemble for one label."""
    j = result.labels.index(label)
    y = result.test_true[:, j]
    keep = ~np.isnan(y)
    if _single_class(y[keep]):
        st.warning(f"{label}: only one class in this split, so it has no ROC curve.")
        return
    rows = result.table[result.table["label"] == label].set_index("model")
    curves = {}
    for name in result.names:
        fpr, tpr, _ = roc_points(y[keep], result.test_scores[name][keep, j])
        curves[f"{name} · {rows.loc[name, 'auroc']:.3f}"] = (fpr, tpr)
    st.plotly_chart(charts.curve_figure(curves, "roc", height=520), width="stretch")


@st.cache_data(show_spinner="Scoring the maps against the true boxes...", max_entries=8)
def _localisation(
    home: str,
    checkpoints: tuple[str, ...],
    fps: tuple[str, ...],
    dataset: str,
    updated_at: float,
    split: str,
    method: str,
    threshold: float,
    max_images: int,
    tolerance: float,
    smooth: float,
) -> LocalisationReport:
    from cxrcore.evaluate.map_localisation import localisation_report

    return localisation_report(
        list(checkpoints),
        Workspace(home),
        dataset,
        split,
        method=method,
        threshold=threshold,
        max_images=max_images,
        pointing_tolerance=tolerance,
        smooth=smooth,
    )


def localisation_section(ws: Workspace, checkpoints: list[Path], dataset: str, split: str) -> None:
    """Members' and the ensemble's maps scored against the dataset's boxes (PeerJ protocol).

    Closed until asked for: the maps need PyTorch, which the page's first draw does without.
    """
    if not st.toggle("Score the maps against the true boxes", key="loc_show"):
        return
    from cxrcore.evaluate.map_localisation import FRAME, MAP_METHODS
    from cxrcore.ui.explain import box_threshold_input, smoothing_input

    c1, c2, c3, c4, c5 = st.columns(5)
    method = c1.selectbox("Map", MAP_METHODS, key="loc_method")
    threshold = box_threshold_input(c2, "loc_threshold")
    max_images = c3.number_input("Images (at most)", 5, 500, 50, 5, key="loc_images")
    tolerance = c4.number_input(
        f"Pointing tolerance (px of {FRAME})",
        0,
        64,
        8,
        1,
        key="loc_tolerance",
        help="Also count a peak this close to a true box as a hit (0: strict only).",
    )
    smooth = smoothing_input(c5, "loc_smooth")
    if not st.button("Score localisation", key="loc_run"):
        return
    paths = tuple(str(p) for p in checkpoints)
    report = _localisation(
        str(ws.home),
        paths,
        tuple(file_fingerprint(p) for p in paths),
        dataset,
        ws.get_dataset(dataset).updated_at,
        split,
        method,
        float(threshold),
        int(max_images),
        float(tolerance),
        float(smooth),
    )
    st.dataframe(report.table.round(4), width="stretch")
    st.caption(
        "mean IoU: PeerJ per-image IoU (union of boxes from the map vs union of true boxes); PeerJ mAP: "
        "IoU 0.1-0.7 in 10 steps, 11-point interpolation; COCO mAP: IoU 0.5-0.95; pointing: share of "
        "maps whose peak falls inside a true box; pointing_within: the same, counting a peak within the "
        f"tolerance of a box (maps are scored in a frame {FRAME} px long). The ensemble map is the mean "
        "of the members' maps."
    )
    csv_download(report.rows, f"localisation-{dataset}-{split}", "Per image and label (CSV)")
