"""Dataset explorer: label frequencies, loss weighting, co-occurrence, patients, splits, leakage, gallery."""

from __future__ import annotations

import numpy as np
import streamlit as st

from cxrcore.data.leakage import leakage_against, leakage_by_split
from cxrcore.data.split import split_summary
from cxrcore.data.stats import cooccurrence
from cxrcore.explain.overlay import draw_boxes, label_colours, thumbnail
from cxrcore.io import read_image
from cxrcore.ui import charts, state
from cxrcore.ui.data import csv_download, load_dataset, statistics
from cxrcore.ui.forms import register_form, split_builder
from cxrcore.ui.page import guarded, select_dataset, setup_page

TAB_WIDGET = "explorer_tab"
EXPLORER_TABS = ("Labels", "Co-occurrence", "Patients", "Splits & leakage", "Gallery")

ws = setup_page("Dataset explorer", "📊")
st.title("Dataset explorer")
name = select_dataset(ws)
with st.expander("Register a dataset", expanded=name is None):
    register_form(ws)
if name is None:
    st.stop()

record = ws.get_dataset(name)
home = str(ws.home)
dataset = load_dataset(home, name, record.updated_at)
stats = statistics(home, name, record.updated_at)
index, labels = dataset.index, dataset.labels

if record.notes.get("synthetic"):
    st.info("Synthetic demo data: computer-generated phantoms, not real patients.")
overview = stats["overview"]
cols = st.columns(5)
cols[0].metric("Images", f"{overview['images']:,}")
cols[1].metric("Patients", f"{overview['patients']:,}")
cols[2].metric("Labels", len(labels))
cols[3].metric("Boxes", f"{len(dataset.boxes):,}")
cols[4].metric("Images with a file", f"{overview['with_file']:,}")
if record.notes.get("dropped_missing_image"):
    st.caption(
        f"{record.notes['dropped_missing_image']:,} rows of the label file have no image file "
        "and were left out."
    )

if overview["splits"]:  # patient overlap is cheap to check: shown whichever tab is open
    shared = leakage_by_split(index, check_bytes=False)
    if shared.leaks:
        st.error(f"{shared.verdict} (details in *Splits & leakage*).")

# Only the open tab runs (and draws its charts): a first visit computes and draws the label charts only.
tab_labels, tab_cooc, tab_patients, tab_split, tab_gallery = st.tabs(
    list(EXPLORER_TABS), key=TAB_WIDGET, on_change="rerun"
)

with tab_labels:
    if tab_labels.open:
        st.subheader("Class frequencies")
        st.plotly_chart(charts.frequency_bars(stats["frequencies"]), key="freq")
        csv_download(stats["frequencies"], f"{name}_frequencies")
        st.subheader("Loss contributions, before and after frequency weighting")
        st.caption(
            "w_pos = freq_neg and w_neg = freq_pos make positives and negatives contribute equally per label."
        )
        st.plotly_chart(charts.contribution_bars(stats["loss_contributions"]), key="contrib")
        csv_download(stats["loss_contributions"], f"{name}_loss_contributions")

with tab_cooc:
    if tab_cooc.open:
        mode = st.radio(
            "Show",
            ["counts", "jaccard", "conditional"],
            horizontal=True,
            help="conditional: share of row-label images that also have the column label",
        )
        matrix = stats["cooccurrence"] if mode == "counts" else cooccurrence(index, mode)
        st.plotly_chart(charts.cooccurrence_heatmap(matrix, mode), key="cooc")
        csv_download(matrix, f"{name}_cooccurrence_{mode}")

with tab_patients:
    if tab_patients.open:
        c1, c2 = st.columns(2)
        per_patient = charts.count_bars(
            stats["images_per_patient"], "images", "patients", "Patients by number of images"
        )
        c1.plotly_chart(per_patient, key="ipp")
        c2.plotly_chart(charts.count_bars(stats["age"], "age", "images", "Images by age band"), key="age")
        c3, c4 = st.columns(2)
        c3.plotly_chart(charts.count_bars(stats["view"], "view", "images", "Images by view"), key="view")
        c4.plotly_chart(charts.count_bars(stats["sex"], "sex", "images", "Images by sex"), key="sex")

with tab_split:
    if tab_split.open:
        if overview["splits"]:
            summary = split_summary(index)
            st.dataframe(summary)
            check_bytes = st.checkbox("Also look for byte-identical image files", value=True)
            with guarded("check for leakage"):
                report = leakage_by_split(index, check_bytes=check_bytes)
                (st.error if report.leaks else st.success)(report.verdict)
                st.dataframe(report.to_frame(), hide_index=True)
                for pair in report.pairs:
                    if pair.shared_patients:
                        with st.expander(f"{pair.a} / {pair.b}: {len(pair.shared_patients)} shared patients"):
                            st.dataframe(
                                index[index["patient_id"].isin(pair.shared_patients)][
                                    ["image_id", "patient_id", "split"]
                                ],
                                hide_index=True,
                            )
        else:
            st.info("This dataset has no split yet.")
        st.subheader("Build a patient-level split")
        split_builder(ws, name, index)
        others = [r.name for r in ws.list_datasets() if r.name != name]
        if others:
            other = st.selectbox("Compare with another dataset", others)
            if st.button("Check leakage against it"):
                with guarded("compare the datasets"):
                    other_ds = load_dataset(home, other, ws.get_dataset(other).updated_at)
                    report = leakage_against(index, other_ds.index, name, other)
                    (st.error if report.leaks else st.success)(report.verdict)

with tab_gallery:
    if tab_gallery.open:
        with_file = index[index["path"].notna()]
        if with_file.empty:
            st.info("Label-only dataset: there are no image files to show.")
        else:
            label = st.selectbox("Images positive for", labels)
            count = st.slider("How many", 4, 24, 8, 4)
            if st.button("Shuffle"):
                st.session_state[state.GALLERY_SEED] = st.session_state.get(state.GALLERY_SEED, 0) + 1
            pool = with_file[with_file[label] == 1]
            rng = np.random.default_rng(st.session_state.get(state.GALLERY_SEED, 0))
            picked = pool.iloc[rng.permutation(len(pool))[:count]]
            st.caption(f"{len(pool):,} images positive for {label}; showing {len(picked)}, with their boxes.")
            colours = label_colours(sorted(dataset.boxes["label"].unique()))
            grid = st.columns(4)
            for i, row in enumerate(picked.itertuples(index=False)):
                with grid[i % 4], guarded(f"show {row.image_id}"):
                    pixels, _ = read_image(row.path)
                    small, scale = thumbnail(pixels, 320)
                    drawn = draw_boxes(
                        small, dataset.boxes[dataset.boxes["image_id"] == row.image_id], colours, scale
                    )
                    st.image(drawn, caption=str(row.image_id))
