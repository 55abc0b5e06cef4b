"""Train: configure a classifier or lesion-detector run, launch it as a background job, follow it live.

Jobs run one at a time as separate processes; their state lives in the workspace database, so the
page can be reloaded (or the app restarted) without losing them.
"""

from __future__ import annotations

import streamlit as st

from cxrcore.train import jobs
from cxrcore.ui.detector_form import detector_form
from cxrcore.ui.page import guarded, select_dataset, setup_page
from cxrcore.ui.train import JOB_WIDGET, jobs_section, task_choice, train_form

ws = setup_page("Train")
st.title("Train")
name = select_dataset(ws)

st.subheader("New training run")
if name is None:
    st.info("Register a dataset in the Dataset explorer first.")
else:
    record = ws.get_dataset(name)
    if record.notes.get("synthetic"):
        st.caption("Synthetic demo data: computer-generated phantoms, not real patients.")
    with guarded("launch the training job"):
        task = task_choice()
        cfg = detector_form(ws, record) if task == "detect" else train_form(ws, record)
        if cfg is not None:
            job_id = jobs.submit(ws, cfg)
            st.session_state[JOB_WIDGET] = job_id
            st.success(f"Job {job_id} launched.")

st.subheader("Jobs")
jobs_section(ws)
