"""The one way page tests drive a page with AppTest: every run fails on an exception or an error box.

Build with ``page(path)``, run (and re-run after each interaction) with ``run(at)``; ``run_page(path)``
does both. A test that means the page to show an error passes ``expect_error`` with a piece of its text:
the run then fails if that error is missing or another error box appears beside it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120  # seconds allowed for one run of a page script


def page(path: str | Path, timeout: float = TIMEOUT) -> AppTest:
    """Build, without running, an AppTest for ``path`` (relative to the repository root, or absolute)."""
    return AppTest.from_file(str(ROOT / path), default_timeout=timeout)


def check(at: AppTest, expect_error: str | None = None) -> AppTest:
    """Assert the last run raised nothing and drew no error box, or only boxes holding ``expect_error``."""
    assert not at.exception, "the page raised:\n" + "\n".join(
        f"{e.proto.type}: {e.message}\n" + "\n".join(e.stack_trace) for e in at.exception
    )
    errors = [str(e.value) for e in at.error]
    if expect_error is None:
        assert not errors, f"the page shows error boxes: {errors}"
    else:
        assert errors, f"the page shows no error box; expected one containing {expect_error!r}"
        unexpected = [e for e in errors if expect_error not in e]
        assert not unexpected, f"error boxes without {expect_error!r}: {unexpected}"
    return at


def run(at: AppTest, expect_error: str | None = None) -> AppTest:
    """Run the script (first run, or re-run after an interaction) and ``check`` the result."""
    # The app's config redacts exception messages for its users; a failing test should show them.
    shown = config.get_option("client.showErrorDetails")
    config.set_option("client.showErrorDetails", "full")
    try:
        at.run()
    finally:
        config.set_option("client.showErrorDetails", shown)
    return check(at, expect_error)


def run_page(path: str | Path, timeout: float = TIMEOUT, expect_error: str | None = None) -> AppTest:
    """Build and run ``path`` once, then ``check`` it."""
    return run(page(path, timeout), expect_error)


def open_tab(at: AppTest, key: str, label: str) -> AppTest:
    """Switch a page's tabs (``st.tabs(..., key=key, on_change="rerun")``) to ``label``, as a click on the
    tab does, and ``run`` the page again."""
    at.session_state[key] = label
    return run(at)


def count_calls(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    """Wrap ``module.name`` (the real function) so that each call is counted; returns the counter."""
    calls = [0]
    original: Callable[..., Any] = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def tables_in_html(html: str) -> list[pd.DataFrame]:
    """Each <table> of a piece of HTML as a frame of its cells' text (pandas' reader: entities decoded,
    numbers read as numbers)."""
    if "<table" not in html:
        return []
    return pd.read_html(io.StringIO(html), flavor="lxml", keep_default_na=False)


def html_tables(at: AppTest) -> list[pd.DataFrame]:
    """The plain tables the page drew with ``st.html`` (``cxrcore.ui.tables``), one frame each."""
    return [table for element in at.get("html") for table in tables_in_html(element.proto.body)]


def panel_rows(at: AppTest) -> list[list[str]]:
    """The Explain panel as drawn: one picture per label, its caption naming the tiles left to right
    (the image, then each method), split into those names."""
    captions = [image.caption for element in at.get("image") for image in element.proto.imgs]
    return [caption.split(" | ") for caption in captions if " | " in caption]


def readings_tables(at: AppTest) -> list[pd.DataFrame]:
    """The Explain page's per-label readings tables (probability, threshold, call, ...), by label."""
    return [
        t.set_index("label")
        for t in html_tables(at)
        if {"label", "probability", "threshold", "call"} <= set(t)
    ]


def wait_for_background_predictions(home: str | Path, timeout: float = 180.0) -> None:
    """Wait until no background prediction worker of the workspace at ``home`` runs (pages started them)."""
    import time

    from cxrcore.evaluate import background

    deadline = time.monotonic() + timeout
    claims = Path(home) / "predictions" / "background"
    while any(background.claim_running(path) for path in claims.glob("*.claim")):
        assert time.monotonic() < deadline, f"background predictions still running after {timeout:g} s"
        time.sleep(0.2)
