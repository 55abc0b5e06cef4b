"""The page harness itself: it must fail on an exception or an unexpected error box, and on a missing one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from page_harness import run, run_page

TESTS = Path(__file__).resolve().parent


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "page.py"
    path.write_text(f"import streamlit as st\n\n{body}\n")
    return path


@pytest.mark.parametrize(
    ("body", "expect_error", "message"),
    [
        ('st.error("boom")', None, "error boxes: .*boom"),  # an error box nobody expected
        ('raise ValueError("broken page")', None, "broken page"),  # an exception
        ('raise ValueError("boom")', "boom", "ValueError: boom"),  # fails even with an error expected
        ('st.write("fine")', "boom", "no error box"),  # the expected error box is missing
        ('st.error("something else")', "boom", "without 'boom'"),  # the wrong error box
        ('st.error("boom")\nst.error("other")', "boom", r"without 'boom'.*\['other'\]"),  # one error too many
    ],
)
def test_the_harness_fails(tmp_path: Path, body: str, expect_error: str | None, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        run_page(_script(tmp_path, body), expect_error=expect_error)


@pytest.mark.parametrize(
    ("body", "expect_error"),
    [('st.write("fine")', None), ('st.error("boom: no such file")', "boom"), ('st.warning("careful")', None)],
)
def test_the_harness_passes(tmp_path: Path, body: str, expect_error: str | None) -> None:
    at = run_page(_script(tmp_path, body), expect_error=expect_error)
    assert len(at.error) == (expect_error is not None)


def test_a_rerun_after_an_interaction_is_checked_too(tmp_path: Path) -> None:
    at = run_page(_script(tmp_path, 'if st.button("Go", key="go"):\n    st.error("boom")'))
    at.button(key="go").click()
    with pytest.raises(AssertionError, match="boom"):
        run(at)


def test_no_page_test_builds_or_runs_an_apptest_behind_the_harness() -> None:
    bypass = re.compile(r"AppTest\.from_(file|string|function)|\bat\w*\.run\(")
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(TESTS.glob("*.py"))
        if path.name not in ("page_harness.py", Path(__file__).name)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if bypass.search(line)
    ]
    assert not found, found
