"""Running a page with AppTest and asserting it drew no exception and no error box."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def run_page(page: str, timeout: float = 120) -> AppTest:
    """Run ``page`` (relative to the repository root) once; fail on any exception or error message."""
    at = AppTest.from_file(str(ROOT / page), default_timeout=timeout)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at
