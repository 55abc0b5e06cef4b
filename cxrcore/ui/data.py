"""Cached loaders for tables and statistics (``st.cache_data``), keyed by plain values."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cxrcore.data.index import IndexedDataset
from cxrcore.data.stats import dataset_statistics
from cxrcore.store import Workspace


@st.cache_data(show_spinner=False, max_entries=8)
def load_dataset(home: str, name: str, updated_at: float) -> IndexedDataset:
    """A registered dataset; ``updated_at`` makes a new split or re-registration miss the cache."""
    return Workspace(home).load_dataset(name)


@st.cache_data(show_spinner=False, max_entries=8)
def statistics(home: str, name: str, updated_at: float) -> dict[str, pd.DataFrame | dict]:
    """Every statistic of a registered dataset."""
    return dataset_statistics(load_dataset(home, name, updated_at).index)


def csv_download(frame: pd.DataFrame, name: str, label: str = "Download CSV") -> None:
    """A download button for a table."""
    st.download_button(
        label, frame.to_csv().encode(), file_name=f"{name}.csv", mime="text/csv", key=f"dl_{name}"
    )
