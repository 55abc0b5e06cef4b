"""Shared page set-up: config, research-use notice, sidebar dataset picker, error guard."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from cxrcore.errors import is_user_error
from cxrcore.notice import RESEARCH_NOTICE  # the pages import it from here
from cxrcore.store import Workspace
from cxrcore.ui import state, turns
from cxrcore.ui.warmup import schedule_warmup

log = logging.getLogger(__name__)

_DATASET_WIDGET = "sidebar_dataset"


def setup_page(title: str, icon: str = "🫁") -> Workspace:
    """Configure the page, show the research notice in the sidebar, and return the workspace."""
    st.set_page_config(page_title=f"{title} · CXR dashboard", page_icon=icon, layout="wide")
    st.sidebar.caption(f"⚠️ {RESEARCH_NOTICE}")
    ws = Workspace()
    schedule_warmup(ws.home)  # once per process: the models load in the background after this page
    return ws


@contextmanager
def guarded(action: str) -> Iterator[None]:
    """Show failures as one line that says what failed and what to do; never a traceback."""
    try:
        yield
    except Exception as exc:  # the page must survive anything; the log keeps the details
        if is_user_error(exc):
            st.error(f"Could not {action}: {exc}")
            return
        log.exception("unexpected failure while trying to %s", action)
        st.error(
            f"Could not {action}: unexpected {type(exc).__name__}: {exc}. Details are in the server log."
        )


@contextmanager
def compute_turn(priority: int = turns.FIRST) -> Iterator[None]:
    """Run the ``with`` block in its turn at the CPU (``cxrcore.ui.turns``); while this session waits for
    it, a line on the page says so."""
    note = None

    def waiting(ahead: int) -> None:
        nonlocal note
        note = st.empty()
        note.caption(f"Queued behind {ahead} other request(s) on this server; it starts when a core is free.")

    with turns.gate().turn(priority, on_wait=waiting):
        if note is not None:
            note.empty()
        yield


def select_dataset(ws: Workspace) -> str | None:
    """Sidebar picker of registered datasets; the choice is kept across pages."""
    names = [r.name for r in ws.list_datasets()]
    if not names:
        st.sidebar.info("No dataset registered yet.")
        return None
    # The widget's own state is dropped when a page without it runs, so the choice lives in
    # state.DATASET and is copied into the widget before it is drawn (and back when the user picks).
    current = st.session_state.get(state.DATASET)
    st.session_state[_DATASET_WIDGET] = current if current in names else _default_dataset(names)
    choice = st.sidebar.selectbox("Dataset", names, key=_DATASET_WIDGET, on_change=_keep_dataset_choice)
    st.session_state[state.DATASET] = choice
    return choice


def _default_dataset(names: list[str]) -> str:
    """The merged real dataset (the default model's) when registered, else the demo, else the first."""
    from cxrcore.workflows.demo import DEMO_DATASET
    from cxrcore.workflows.realdata import REAL_DATASET

    return next((n for n in (REAL_DATASET, DEMO_DATASET) if n in names), names[0])


def _keep_dataset_choice() -> None:
    st.session_state[state.DATASET] = st.session_state[_DATASET_WIDGET]


_CHECKPOINT_WIDGET = "sidebar_checkpoint"


def select_checkpoint(ws: Workspace, task: str | None = None) -> Path | None:
    """Sidebar picker of checkpoints (bundled real-data ones first); the choice is kept across pages.

    ``task`` ("classify" or "detect") lists only the models of that task; a choice of another task
    made on another page is kept for the pages that list it.
    """
    from cxrcore.models.catalog import list_checkpoints
    from cxrcore.models.model_card import TASK_NAMES

    every = list_checkpoints(ws.home)
    entries = [e for e in every if task is None or e.info.get("task") == task]
    if not entries:
        what = "checkpoint" if task is None or not every else TASK_NAMES[task].lower()
        st.sidebar.info(f"No {what} yet: train one on the Train page.")
        return None
    paths = [str(e.path) for e in entries]
    titles = {str(e.path): e.title for e in entries}
    current = st.session_state.get(state.CHECKPOINT)
    st.session_state[_CHECKPOINT_WIDGET] = current if current in paths else paths[0]
    choice = st.sidebar.selectbox(
        "Model",
        paths,
        format_func=titles.__getitem__,
        key=_CHECKPOINT_WIDGET,
        on_change=_keep_checkpoint_choice,
    )
    if current in paths or current not in {str(e.path) for e in every}:
        st.session_state[state.CHECKPOINT] = choice
    chosen = next(e for e in entries if str(e.path) == choice)
    if chosen.synthetic:
        st.sidebar.caption("This model was trained on synthetic phantoms, not real X-rays.")
    return Path(choice)


def _keep_checkpoint_choice() -> None:
    st.session_state[state.CHECKPOINT] = st.session_state[_CHECKPOINT_WIDGET]


def labels_fit(ws: Workspace, dataset: str, checkpoint: Path) -> bool:
    """Whether the model and the dataset share a label; if not, say so and offer a model that does."""
    from cxrcore.models.catalog import list_checkpoints

    labels = ws.get_dataset(dataset).labels
    entries = list_checkpoints(ws.home)
    chosen = next((e for e in entries if e.path == checkpoint.resolve()), None)
    if chosen is None or chosen.label_fit(labels).ok:
        return True
    st.info(
        f"The model **{chosen.title}** predicts {_few(chosen.info['labels'])}; the dataset **{dataset}** "
        f"is labelled {_few(labels)}. They have no label in common, so there is nothing to score."
    )
    fitting = next((e for e in entries if e.label_fit(labels).ok), None)
    if fitting is not None:
        st.button(f"Use {fitting.title}", on_click=_use_checkpoint, args=(str(fitting.path),))
    return False


def _few(names: list[str], n: int = 5) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def _use_checkpoint(path: str) -> None:
    st.session_state[state.CHECKPOINT] = path


def page_link(page: str, label: str, icon: str | None = None) -> None:
    """A link to another page; plain text when the page runs on its own (as in page tests)."""
    from streamlit.errors import StreamlitPageNotFoundError

    try:
        st.page_link(page, label=label, icon=icon)
    except StreamlitPageNotFoundError:
        st.caption(label)


class PageProgress:
    """Progress over images as a Streamlit progress bar, created on the first update and removed when the
    ``with`` block ends."""

    def __init__(self, text: str) -> None:
        self.text, self.bar = text, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = st.progress(0.0, text=self.text)
        self.bar.progress(done / max(total, 1), text=f"{self.text}: {done}/{total} images")

    def __enter__(self) -> PageProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.empty()
