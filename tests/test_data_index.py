from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrcore.data.index import (
    DatasetError,
    build_index,
    index_fingerprint,
    label_columns,
    validate_boxes,
    validate_index,
)
from cxrcore.labels import LabelError, apply_uncertainty, check_same_labels


def _index(**overrides: object) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "image_id": ["a", "b", "c"],
            "path": ["a.png", "b.png", "c.png"],
            "patient_id": ["p1", "p1", "p2"],
            "Nodule": [1.0, 0.0, np.nan],
            "Effusion": [0.0, 0.0, 1.0],
        }
    )
    for key, value in overrides.items():
        frame[key] = value
    return frame


def test_valid_index_keeps_labels_in_order_and_as_float() -> None:
    index = validate_index(_index())
    assert label_columns(index) == ["Nodule", "Effusion"]
    assert index["Nodule"].dtype == np.float64
    assert np.isnan(index.loc[2, "Nodule"])


@pytest.mark.parametrize(
    ("frame", "phrase"),
    [
        (_index().drop(columns="patient_id"), "missing required column"),
        (_index(image_id=["a", "a", "c"]), "more than once"),
        (_index(Nodule=[1.0, 2.0, 0.0]), "must be 1, 0 or empty"),
        (_index(Nodule=["yes", 0, 1]), "'yes'"),
        (_index(split=["train", "holdout", "test"]), "unknown split name"),
        (_index()[["image_id", "path", "patient_id"]], "no label columns"),
        (_index(patient_id=["p1", None, "p2"]), "no patient_id"),
    ],
)
def test_contract_violations_are_named(frame: pd.DataFrame, phrase: str) -> None:
    with pytest.raises(DatasetError, match=phrase):
        validate_index(frame)


def test_build_index_orders_meta_columns_first() -> None:
    meta = pd.DataFrame({"patient_id": ["p"], "path": ["x.png"], "image_id": ["x"], "sex": ["F"]})
    index = build_index(meta, pd.DataFrame({"Mass": [1]}))
    assert list(index.columns) == ["image_id", "path", "patient_id", "sex", "Mass"]


def test_fingerprint_ignores_split_and_row_order_but_not_labels() -> None:
    base = validate_index(_index())
    shuffled = base.iloc[[2, 0, 1]].assign(split=["train", "valid", "test"])
    assert index_fingerprint(base) == index_fingerprint(shuffled)
    changed = base.copy()
    changed.loc[0, "Nodule"] = 0.0
    assert index_fingerprint(changed) != index_fingerprint(base)


def test_boxes_must_be_positive_and_known() -> None:
    index = validate_index(_index())
    good = pd.DataFrame({"image_id": ["a"], "label": ["Nodule"], "x": [1], "y": [2], "w": [3], "h": [4]})
    assert validate_boxes(good, index)["w"].iloc[0] == 3.0
    with pytest.raises(DatasetError, match="non-positive"):
        validate_boxes(good.assign(w=[0]), index)
    with pytest.raises(DatasetError, match="not in the index"):
        validate_boxes(good.assign(image_id=["zzz"]), index)


@pytest.mark.parametrize(("policy", "expected"), [("nan", np.nan), ("zeros", 0.0), ("ones", 1.0)])
def test_uncertainty_policy(policy: str, expected: float) -> None:
    values = pd.DataFrame({"Edema": [-1.0, 1.0, 0.0, np.nan]})
    out = apply_uncertainty(values, policy)  # type: ignore[arg-type]
    np.testing.assert_array_equal(out["Edema"].to_numpy()[1:3], [1.0, 0.0])
    assert np.isnan(out["Edema"].iloc[3])  # blank stays unknown under every policy
    if np.isnan(expected):
        assert np.isnan(out["Edema"].iloc[0])
    else:
        assert out["Edema"].iloc[0] == expected


def test_unknown_policy_and_label_mismatch() -> None:
    with pytest.raises(LabelError, match="valid options: nan, zeros, ones"):
        apply_uncertainty(pd.DataFrame({"A": [1.0]}), "maybe")  # type: ignore[arg-type]
    with pytest.raises(LabelError, match="only in first: \\['B'\\]"):
        check_same_labels(["A", "B"], ["A"])


def test_fingerprint_does_not_depend_on_where_the_data_lives() -> None:
    base = validate_index(_index())
    here = base.assign(path=["/data/cxr/" + p for p in base["path"]])
    there = base.assign(path=["/mnt/other/copy/" + p for p in base["path"]])
    assert index_fingerprint(here) == index_fingerprint(there)
    renamed = here.copy()
    renamed.loc[0, "path"] = "/data/cxr/elsewhere.png"
    assert index_fingerprint(renamed) != index_fingerprint(here)
