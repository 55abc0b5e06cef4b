"""Printing command results: plain text for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

EXIT_ERROR = 2  # status of a command that failed for a reason the user can fix


def jsonable(value: Any) -> Any:
    if isinstance(value, pd.DataFrame):
        return json.loads(value.to_json(orient="index"))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def emit(payload: Any, as_json: bool, text: Callable[[], str]) -> None:
    print(json.dumps(jsonable(payload), indent=2) if as_json else text())
