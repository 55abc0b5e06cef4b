"""Strict JSON for everything the engine and the command line write: one sanitiser, one NaN rule.

``to_jsonable`` turns numpy scalars and arrays, PyTorch tensors, pandas frames and series, paths,
dataclasses, objects with a ``to_dict`` method, tuples and sets into plain JSON values (sets sorted,
mapping keys as strings).

The NaN rule: NaN, +inf and -inf become ``None`` (JSON ``null``: a number that is missing or
undefined, such as the AUROC of a label with one class), wherever they sit. Strict JSON has no token
for them, and browsers, ``jq`` and most other readers reject Python's ``NaN``. ``dumps`` always writes
with ``allow_nan=False``, so a non-finite number can never slip through.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd


def to_jsonable(obj: Any, default: Callable[[Any], Any] | None = None) -> Any:
    """Plain JSON values for ``obj``, nested values included; NaN and infinities become None.

    Args:
        obj: the value to convert.
        default: called with any value of another type; its result is converted in turn. Without
            it such a value raises TypeError.

    Raises:
        TypeError: a value of a type with no JSON form (and no ``default``).
    """
    if obj is None or isinstance(obj, str | bool):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):  # numpy's float64 included
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item(), default)
    if isinstance(obj, Mapping):
        return {_key(k): to_jsonable(v, default) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v, default) for v in obj]
    if isinstance(obj, set | frozenset):
        return _sorted([to_jsonable(v, default) for v in obj])
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), default)
    if isinstance(obj, PurePath):
        return str(obj)
    torch = sys.modules.get("torch")  # a tensor exists only once PyTorch is loaded: never import it here
    if torch is not None and isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist(), default)
    if isinstance(obj, pd.DataFrame):
        return to_jsonable(obj.to_dict(orient="index"), default)
    if isinstance(obj, pd.Series):
        return to_jsonable(obj.to_dict(), default)
    if obj is pd.NA or obj is pd.NaT:
        return None
    if callable(getattr(obj, "to_dict", None)):
        return to_jsonable(obj.to_dict(), default)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, default)
    if default is not None:
        return to_jsonable(default(obj))
    raise TypeError(f"value of type {type(obj).__name__} is not JSON-serialisable: {obj!r}")


def dumps(obj: Any, *, default: Callable[[Any], Any] | None = None, **kwargs: Any) -> str:
    """Strict JSON text of ``to_jsonable(obj, default)``; other keywords go to ``json.dumps``."""
    return json.dumps(to_jsonable(obj, default), allow_nan=False, **kwargs)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else str(key.item() if isinstance(key, np.generic) else key)


def _sorted(items: list[Any]) -> list[Any]:
    """A converted set in order: its natural order, or by type name and JSON text when mixed."""
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=lambda v: (type(v).__name__, json.dumps(v, sort_keys=True)))
