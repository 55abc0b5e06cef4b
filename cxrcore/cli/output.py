"""Printing command results: plain text for people, JSON for scripts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cxrcore import jsonsafe

EXIT_ERROR = 2  # status of a command that failed for a reason the user can fix


def emit(payload: Any, as_json: bool, text: Callable[[], str]) -> None:
    """Print strict JSON (``cxrcore.jsonsafe``: NaN and infinity as null) or the text for people."""
    print(jsonsafe.dumps(payload, indent=2) if as_json else text())
