"""Ensembles: two or more checkpoints and their majority vote, simple and weighted average and stacking
(Rajaraman, Kim & Antani, PeerJ 2020), fitted on the validation split and compared on test. Members'
predictions not stored yet are made in the background, with their progress shown meanwhile."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from cxrcore.data.index import SPLIT_CHOICES, TEST_SPLIT
from cxrcore.evaluate.ensemble import METHOD_NAMES, METHODS
from cxrcore.evaluate.report import MEAN_ROW, TABLE_METRICS, best_marks
from cxrcore.models.catalog import list_checkpoints
from cxrcore.ui import detect_eval
from cxrcore.ui import evaluate as ev
from cxrcore.ui.data import csv_download
from cxrcore.ui.page import guarded, select_dataset, setup_page

ws = setup_page("Ensembles")
st.title("Ensembles")
dataset = select_dataset(ws)
entries = list_checkpoints(ws.home)
if dataset is None or len(entries) < 2:
    st.info("An ensemble needs a dataset and at least two checkpoints (the demo prepares them: `make run`).")
    st.stop()

titles = {str(e.path): e.title for e in entries}
# Opens with a ready comparison: up to three checkpoints sharing labels, trained on data like the dataset's.
dataset, default, note = ev.ensemble_defaults(ws, dataset)
if note:
    st.info(note)
members = st.multiselect("Members", list(titles), default=default, format_func=titles.get)
detectors = {str(e.path) for e in entries if e.info.get("task") == "detect"}
if members and set(members) <= detectors:
    split = st.selectbox("Scored on", SPLIT_CHOICES, index=SPLIT_CHOICES.index(TEST_SPLIT), key="ens_split")
    if len(members) < 2:
        st.info("Pick at least two detectors.")
        st.stop()
    with guarded("compare the detectors"):
        detect_eval.ensemble_section(ws, [Path(m) for m in members], dataset, split)
    st.stop()
if set(members) & detectors:
    st.error("An ensemble is of classifiers or of detectors: pick members of one kind.")
    st.stop()
methods = st.multiselect("Methods", METHODS, default=list(METHODS), format_func=METHOD_NAMES.get)
split = st.selectbox("Scored on", SPLIT_CHOICES, index=SPLIT_CHOICES.index(TEST_SPLIT), key="ens_split")
if len(members) < 2 or not methods:
    st.info("Pick at least two members and one method.")
    st.stop()

with guarded("compare the ensembles"):
    result = ev.comparison(ws, [Path(m) for m in members], dataset, methods, split)
    if result is not None:  # None: the members' predictions are being made in the background
        label = st.selectbox("Label", [MEAN_ROW, *result.labels], key="ens_label")
        st.subheader("Comparison")
        st.caption(
            "Thresholds: each member's and ensemble's operating point (Youden's J) on validation; the vote "
            "is positive when most members are. * marks the best in each column (lowest for ECE). "
            "Δ AUROC is each ensemble minus the best member, with DeLong's p-value per label."
        )
        shown = best_marks(result.table, label)
        rows = result.table[result.table["label"] == label].set_index("model")
        ci = [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(rows["auroc_lo"], rows["auroc_hi"], strict=True)]
        shown.insert(1, "AUROC 95% CI", ci if label != MEAN_ROW else ["pick a label" for _ in ci])
        shown["vs best member"] = rows["vs_best_member"]
        shown["Δ AUROC"] = rows["delta_auroc"].map(lambda v: "" if pd.isna(v) else f"{v:+.3f}")
        shown["p (DeLong)"] = rows["p_value"].map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
        st.dataframe(shown, width="stretch")
        csv_download(result.table, f"ensembles-{dataset}-{split}", "Full table, every label (CSV)")
        if label != MEAN_ROW:
            st.subheader(f"ROC curves · {label}")
            ev.comparison_roc(result, label)
        st.subheader("What was fitted on validation")
        for key, fitted in result.fitted.items():
            with st.expander(key):
                st.json(fitted, expanded=False)
        st.caption(f"Metrics in the table: {', '.join(TABLE_METRICS)}.")

if not ws.load_dataset(dataset).boxes.empty:
    st.subheader("Localisation against the true boxes")
    with guarded("score the localisation"):
        ev.localisation_section(ws, [Path(m) for m in members], dataset, split)
