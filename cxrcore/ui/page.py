"""Shared page set-up: config, research-use notice, sidebar dataset picker, error guard."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from cxrcore.data.index import DatasetError
from cxrcore.io import ImageReadError
from cxrcore.labels import LabelError
from cxrcore.store import Workspace, WorkspaceError
from cxrcore.ui import state

log = logging.getLogger(__name__)

RESEARCH_NOTICE = (
    "Research tool, not a medical device: its outputs are not a diagnosis and must not guide patient care."
)
_DATASET_WIDGET = "sidebar_dataset"
USER_ERRORS = (DatasetError, ImageReadError, LabelError, WorkspaceError, FileNotFoundError)


def setup_page(title: str, icon: str = "🫁") -> Workspace:
    """Configure the page, show the research notice in the sidebar, and return the workspace."""
    st.set_page_config(page_title=f"{title} · CXR dashboard", page_icon=icon, layout="wide")
    st.sidebar.caption(f"⚠️ {RESEARCH_NOTICE}")
    return Workspace()


@contextmanager
def guarded(action: str) -> Iterator[None]:
    """Show failures as one line that says what failed and what to do; never a traceback."""
    try:
        yield
    except USER_ERRORS as exc:
        st.error(f"Could not {action}: {exc}")
    except Exception as exc:  # the page must survive anything; the log keeps the details
        log.exception("unexpected failure while trying to %s", action)
        st.error(
            f"Could not {action}: unexpected {type(exc).__name__}: {exc}. Details are in the server log."
        )


def select_dataset(ws: Workspace) -> str | None:
    """Sidebar picker of registered datasets; the choice is kept across pages."""
    names = [r.name for r in ws.list_datasets()]
    if not names:
        st.sidebar.info("No dataset registered yet.")
        return None
    # The widget's own state is dropped when a page without it runs, so the choice lives in
    # state.DATASET and is copied into the widget before it is drawn (and back when the user picks).
    current = st.session_state.get(state.DATASET)
    st.session_state[_DATASET_WIDGET] = current if current in names else names[0]
    choice = st.sidebar.selectbox("Dataset", names, key=_DATASET_WIDGET, on_change=_keep_dataset_choice)
    st.session_state[state.DATASET] = choice
    return choice


def _keep_dataset_choice() -> None:
    st.session_state[state.DATASET] = st.session_state[_DATASET_WIDGET]
