"""The one JSON sanitiser: numpy, tensors, pandas, paths, dataclasses, sets; NaN and infinity as null."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pytest
import torch

from cxrcore.jsonsafe import dumps, to_jsonable


@dataclass(frozen=True)
class Point:
    x: float
    tags: tuple[str, ...] = ()
    inner: dict = field(default_factory=dict)


class WithToDict:
    def to_dict(self) -> dict:
        return {"a": np.float32(0.5)}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (math.nan, None),
        (math.inf, None),
        (-math.inf, None),
        (np.float64("nan"), None),
        (np.float32("inf"), None),
        (1.5, 1.5),
        (np.float32(0.5), 0.5),
        (np.int64(7), 7),
        (np.bool_(True), True),
        (True, True),
        (None, None),
        ("text", "text"),
        (np.array([[1.0, np.nan], [np.inf, 2.0]]), [[1.0, None], [None, 2.0]]),
        (np.arange(3, dtype=np.int16), [0, 1, 2]),
        (torch.tensor([0.25, float("nan")]), [0.25, None]),
        (Path("/tmp/a.png"), "/tmp/a.png"),
        (PurePosixPath("runs/x"), "runs/x"),
        ({"b", "a", "c"}, ["a", "b", "c"]),
        (frozenset({3, 1, 2}), [1, 2, 3]),
        ((1, np.nan), [1, None]),
        (Point(np.nan, ("a",), {"k": np.int32(2)}), {"x": None, "tags": ["a"], "inner": {"k": 2}}),
        (WithToDict(), {"a": 0.5}),
        ({1: "one", np.int64(2): "two"}, {"1": "one", "2": "two"}),
        (
            {"outer": [{"auroc": np.float64("nan"), "path": Path("p")}, {"scores": np.array([0.1])}]},
            {"outer": [{"auroc": None, "path": "p"}, {"scores": [0.1]}]},
        ),
        (pd.Series({"A": 0.5, "B": np.nan}), {"A": 0.5, "B": None}),
        (
            pd.DataFrame({"auroc": [0.9, np.nan]}, index=["Nodule", "Mass"]),
            {"Nodule": {"auroc": 0.9}, "Mass": {"auroc": None}},
        ),
        (pd.NA, None),
    ],
)
def test_to_jsonable(value: object, expected: object) -> None:
    out = to_jsonable(value)
    assert out == expected
    json.dumps(out, allow_nan=False)  # strict JSON, whatever went in


def test_numbers_come_back_as_plain_python_types() -> None:
    out = to_jsonable({"f": np.float32(0.5), "i": np.int64(3), "b": np.bool_(False)})
    assert [type(v) for v in out.values()] == [float, int, bool]


def test_dumps_is_strict_json_with_null_for_nan() -> None:
    text = dumps({"auroc": np.nan, "ci": [np.inf, 0.5]}, indent=None, sort_keys=True)
    assert text == '{"auroc": null, "ci": [null, 0.5]}'
    assert json.loads(text) == {"auroc": None, "ci": [None, 0.5]}


def test_unknown_types_raise_unless_a_default_is_given() -> None:
    with pytest.raises(TypeError, match="object is not JSON-serialisable"):
        to_jsonable({"x": object()})
    assert to_jsonable({"x": b"raw"}, default=lambda v: v.decode()) == {"x": "raw"}
    assert json.loads(dumps([complex(1, 2)], default=str)) == ["(1+2j)"]


def test_a_set_of_mixed_types_still_sorts() -> None:
    assert to_jsonable({1, "a"}) == [1, "a"]


def test_the_module_does_not_need_pytorch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None; from cxrcore.jsonsafe import dumps; "
        "print(dumps({'a': float('nan')}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == '{"a": null}'
