"""Home page of the chest X-ray dashboard: the loaded model, the datasets, running jobs, a quick upload,
and the research-use notice.

Run with ``make run`` (or ``streamlit run Home.py`` inside the virtual environment).
"""

from __future__ import annotations

import streamlit as st

from cxrcore import __version__
from cxrcore.train import jobs
from cxrcore.ui import home
from cxrcore.ui.page import RESEARCH_NOTICE, guarded, select_checkpoint, select_dataset, setup_page

ws = setup_page("Home")
st.title("Chest X-ray dashboard")
st.warning(f"**{RESEARCH_NOTICE}**")
st.markdown(
    "Train, evaluate and explain chest X-ray classifiers: explore a dataset, train a model, read its "
    "ROC curves and ensembles, and see where it looks on an X-ray of your own."
)
select_dataset(ws)
checkpoint = select_checkpoint(ws)

left, right = st.columns([3, 2])
with left, guarded("show the loaded model"):
    st.subheader("Loaded model")
    home.model_summary(checkpoint)
with right:
    st.subheader("Try an X-ray")
    home.quick_upload()

st.subheader("Registered datasets")
home.datasets_table(ws)
with guarded("list the jobs"):
    running = [j for j in jobs.list_jobs(ws) if j.status in ("queued", "running")]
    if running:
        st.subheader("Running jobs")
        home.jobs_table(running)
st.subheader("Pages")
home.page_links()
st.caption(f"cxrcore {__version__} · workspace: {ws.home}")
