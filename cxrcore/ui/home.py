"""Widgets of the home page: the loaded model's card summary, a quick upload, datasets, jobs, links."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from cxrcore.io import MAX_UPLOAD_MB, UPLOAD_TYPES
from cxrcore.models.card import describe_checkpoint
from cxrcore.store import Workspace
from cxrcore.train.job_reporter import JobRecord
from cxrcore.ui import state
from cxrcore.ui.page import page_link
from cxrcore.workflows.demo import sample_phantom_png

EXPLAIN_PAGE = "pages/5_Explain.py"
PAGES = (
    ("pages/1_Dataset_Explorer.py", "Dataset explorer: class frequencies, leakage, sample images"),
    ("pages/2_Train.py", "Train a model, with live progress"),
    ("pages/3_Evaluate.py", "Evaluate: ROC curves, AUROC with CIs, calibration, thresholds"),
    ("pages/4_Ensembles.py", "Ensembles: vote, averages, stacking against their members"),
    (EXPLAIN_PAGE, "Explain an X-ray: probabilities, CAM, CRM and more"),
    ("pages/6_Models.py", "Models: model cards, import, ONNX export"),
)


def model_summary(checkpoint: Path | None) -> None:
    """What the selected checkpoint is, from its model card (no weights loaded)."""
    if checkpoint is None:
        st.info("No model yet: `make run` bundles the demo models; the Train page makes more.")
        return
    info = describe_checkpoint(checkpoint)
    best = info.get("best_validation") or {}
    c1, c2, c3 = st.columns(3)
    c1.metric("Architecture", str(info["architecture"]))
    c2.metric("Labels", len(info["labels"]))
    c3.metric("Best validation", f"{best['value']:.3f}" if best else "n/a", help=best.get("metric"))
    st.caption(
        f"{checkpoint.parent.name}/{checkpoint.name} · trained on {info.get('dataset') or 'unknown data'} "
        f"for {info.get('epochs_trained')} epoch(s) · labels: {', '.join(info['labels'])}"
    )


def quick_upload() -> None:
    """Upload an X-ray (or take a synthetic phantom) and go straight to the Explain page."""
    upload = st.file_uploader(
        f"PNG, JPEG or DICOM, up to {MAX_UPLOAD_MB} MB; kept in memory only",
        type=UPLOAD_TYPES,
        key="home_upload",
    )
    if upload is not None:
        st.session_state[state.UPLOAD] = (upload.name, upload.getvalue())
        st.switch_page(EXPLAIN_PAGE)
    if st.button("No file at hand? Use a synthetic phantom", key="home_phantom"):
        st.session_state[state.UPLOAD] = sample_phantom_png(int(time.time()) % 1000)
        st.switch_page(EXPLAIN_PAGE)


def datasets_table(ws: Workspace) -> None:
    """The registered datasets, synthetic ones marked."""
    records = ws.list_datasets()
    if not records:
        st.info("No dataset yet: `make demo` prepares the synthetic demo, or register one in the explorer.")
        return
    st.dataframe(
        [
            {
                "name": r.name,
                "source": r.adapter,
                "images": r.n_images,
                "patients": r.n_patients,
                "labels": ", ".join(r.labels),
                "split": ", ".join(f"{k} {v}" for k, v in (r.split or {}).get("counts", {}).items())
                or "none",
                "synthetic": "yes" if r.notes.get("synthetic") else "",
            }
            for r in records
        ],
        hide_index=True,
    )


def jobs_table(running: list[JobRecord]) -> None:
    """Queued and running training jobs with their progress (a detector's by its validation mAP@0.5)."""
    rows = [
        {
            "job": j.id,
            "model": j.config.get("model"),
            "dataset": j.config.get("dataset"),
            "status": j.status,
            "epoch": f"{j.epoch}/{j.total_epochs or '?'}",
            "val AUROC": (j.metrics or {}).get("val_auroc"),
            "val mAP@0.5": (j.metrics or {}).get("val_map50") if j.config.get("task") == "detect" else None,
        }
        for j in running
    ]
    frame = pd.DataFrame(rows)
    if not any(j.config.get("task") == "detect" for j in running):
        frame = frame.drop(columns="val mAP@0.5")
    st.dataframe(frame, hide_index=True)
    page_link("pages/2_Train.py", "Follow them on the Train page")


def page_links() -> None:
    """One link per page."""
    for path, label in PAGES:
        page_link(path, label)
