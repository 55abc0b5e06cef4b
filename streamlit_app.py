"""Home page of the chest X-ray dashboard: what is loaded, the datasets, and the research-use notice.

Run with ``make run`` (or ``streamlit run streamlit_app.py`` inside the virtual environment).
"""

from __future__ import annotations

import streamlit as st

from cxrcore import __version__
from cxrcore.ui.page import RESEARCH_NOTICE, select_dataset, setup_page

ws = setup_page("Home")
st.title("Chest X-ray dashboard")
st.warning(f"**{RESEARCH_NOTICE}**")
st.markdown(
    "Train, evaluate and explain chest X-ray classifiers. Start with the **Dataset explorer** "
    "to see class frequencies, patient leakage and sample images with their boxes."
)
select_dataset(ws)
records = ws.list_datasets()
st.subheader("Registered datasets")
if records:
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
else:
    st.info(
        "No dataset registered yet: run `make demo` for the synthetic demo, or register one in the explorer."
    )
st.page_link("pages/1_Dataset_Explorer.py", label="Open the dataset explorer", icon="📊")
st.caption(f"cxrcore {__version__} · workspace: {ws.home}")
