"""Evaluate: one checkpoint on a dataset split, with ROC and PR curves, AUROC confidence intervals,
calibration, an operating-point tool, and how much of its maps' heat lies inside the lungs. Thresholds
come from the validation split. Predictions not stored yet are made in the background, with their progress
shown until the results are ready."""

from __future__ import annotations

import streamlit as st

from cxrcore.data.index import ALL_SPLITS, SPLIT_CHOICES, TEST_SPLIT
from cxrcore.evaluate.classification import N_BOOT, TARGET_RULES, THRESHOLD_RULE_NAMES, THRESHOLD_RULES
from cxrcore.evaluate.predict import split_has_images
from cxrcore.models.card import read_card
from cxrcore.ui import detect_eval, lungs
from cxrcore.ui import evaluate as ev
from cxrcore.ui.page import guarded, labels_fit, select_checkpoint, select_dataset, setup_page

ws = setup_page("Evaluate")
st.title("Evaluate")
dataset = select_dataset(ws)
checkpoint = select_checkpoint(ws)

if dataset is None or checkpoint is None:
    st.info("Pick a dataset and a model in the sidebar (the demo prepares both: `make run`).")
    st.stop()
if read_card(checkpoint).task == "detect":
    split = st.selectbox("Split", SPLIT_CHOICES, index=SPLIT_CHOICES.index(TEST_SPLIT), key="eval_split")
    with guarded("evaluate the detector"):
        detect_eval.detector_section(ws, checkpoint, dataset, split)
    st.stop()
if not labels_fit(ws, dataset, checkpoint):
    st.stop()

record = ws.get_dataset(dataset)
if record.notes.get("synthetic"):
    st.caption("Synthetic demo data: computer-generated phantoms, not real patients.")
left, mid, right = st.columns(3)
# A dataset without a split (someone else's labelled images) is scored whole, at the card's thresholds.
default_split = TEST_SPLIT if split_has_images(ws, dataset, TEST_SPLIT) else ALL_SPLITS
kept = st.session_state.get("eval_split")
if kept not in (None, ALL_SPLITS) and not split_has_images(ws, dataset, kept):
    st.session_state["eval_split"] = default_split  # a split the newly picked dataset does not have
split = left.selectbox("Split", SPLIT_CHOICES, index=SPLIT_CHOICES.index(default_split), key="eval_split")
rule = mid.selectbox(
    "Operating point (chosen on validation, else the model card's)",
    THRESHOLD_RULES,
    format_func=THRESHOLD_RULE_NAMES.get,
)
target = None
if rule in TARGET_RULES:
    target = right.slider(f"Target {rule}", 0.5, 0.99, 0.9, 0.01)

with guarded("evaluate the model"):
    result = ev.evaluation(ws, checkpoint, dataset, split, rule, target)
    if result is None:  # predictions are being made in the background; their progress is shown
        st.stop()
    labels = list(result.predictions.labels)
    n = len(result.predictions.table)
    st.caption(
        f"{n} images of the {split} split · AUROC 95% CI from {N_BOOT:,} stratified bootstrap resamples"
        f" · thresholds: {result.threshold_source}"
        + (" · predictions reused from the workspace" if result.predictions.from_cache else "")
    )
    chosen = st.multiselect("Labels", labels, default=labels[:6], key="eval_labels")
    # Only the open tab runs and draws (each holds charts or tables of its own).
    tab_roc, tab_table, tab_cal, tab_op, tab_lungs = st.tabs(
        ["ROC and PR curves", "Metrics table", "Calibration", "Operating point", "Heat in the lungs"],
        key="eval_tab",
        on_change="rerun",
    )
    with tab_roc:
        if tab_roc.open:
            ev.roc_section(result, chosen)
    with tab_table:
        if tab_table.open:
            st.dataframe(result.summary.round(4), width="stretch")
            ev.downloads(result, f"{checkpoint.parent.name}-{dataset}-{split}")
    with tab_cal:
        if tab_cal.open:
            ev.calibration_section(result.predictions, chosen, checkpoint)
    with tab_op:
        if tab_op.open:
            ev.threshold_tool(result)
    with tab_lungs:
        if tab_lungs.open:
            lungs.evaluate_lung_section(ws, checkpoint, dataset, split)
