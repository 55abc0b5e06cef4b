from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrcore.data.index import validate_index
from cxrcore.data.stats import (
    age_summary,
    category_summary,
    cooccurrence,
    dataset_statistics,
    frequency_weights,
    images_per_patient,
    label_frequencies,
    loss_contributions,
)


@pytest.fixture
def index() -> pd.DataFrame:
    return validate_index(
        pd.DataFrame(
            {
                "image_id": list("abcde"),
                "path": list("abcde"),
                "patient_id": ["p1", "p1", "p2", "p3", "p3"],
                "view": ["PA", "PA", "AP", None, "PA"],
                "age": [30, 31, 70, np.nan, 150],
                "A": [1, 1, 0, 0, np.nan],
                "B": [1, 0, 0, 0, 0],
            }
        )
    )


def test_frequencies_ignore_unknown_labels(index: pd.DataFrame) -> None:
    freq = label_frequencies(index)
    assert freq.loc["A", ["positives", "negatives", "unknown"]].tolist() == [2, 2, 1]
    assert freq.loc["A", "freq_pos"] == pytest.approx(0.5)
    assert freq.loc["B", "freq_pos"] == pytest.approx(0.2)
    weights = frequency_weights(index)
    assert weights.loc["B"].tolist() == pytest.approx([0.8, 0.2])


def test_weighting_equalises_positive_and_negative_contributions(index: pd.DataFrame) -> None:
    contrib = loss_contributions(index)
    assert contrib.loc["B", "positive"] == pytest.approx(0.2)
    assert contrib.loc["B", "negative"] == pytest.approx(0.8)
    np.testing.assert_allclose(contrib["positive_weighted"], contrib["negative_weighted"])
    assert contrib.loc["B", "positive_weighted"] == pytest.approx(0.16)


def test_cooccurrence_counts_and_normalisations(index: pd.DataFrame) -> None:
    counts = cooccurrence(index)
    assert counts.to_numpy().tolist() == [[2, 1], [1, 1]]
    assert cooccurrence(index, "jaccard").loc["A", "B"] == pytest.approx(0.5)
    assert cooccurrence(index, "conditional").loc["B", "A"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="valid options"):
        cooccurrence(index, "cosine")


def test_patient_and_demographic_summaries(index: pd.DataFrame) -> None:
    assert images_per_patient(index)["patients"].to_dict() == {1: 1, 2: 2}
    views = category_summary(index, "view")
    assert views.loc["PA", "images"] == 3 and views.loc["unknown", "images"] == 1
    assert category_summary(index, "sex").loc["unknown", "images"] == 5
    ages = age_summary(index)
    assert ages.loc["unknown", "images"] == 1 and ages.loc["implausible", "images"] == 1
    assert ages["images"].sum() == 5


def test_full_nih_statistics_match_pandas(data_dir: Path) -> None:
    from cxrcore.data.adapters import load_source
    from cxrcore.labels import NIH14_LABELS

    csv = data_dir / "nih14" / "Data_Entry_2017_v2020.csv.gz"
    index = load_source("nih14", labels_csv=csv).index
    stats = dataset_statistics(index)
    raw = pd.read_csv(csv)
    tokens = raw["Finding Labels"].str.split("|").explode().value_counts()
    freq = stats["frequencies"]
    for label in NIH14_LABELS:
        assert freq.loc[label, "positives"] == tokens[label]
        assert freq.loc[label, "negatives"] == len(raw) - tokens[label]
    assert stats["overview"]["patients"] == raw["Patient ID"].nunique()
    assert stats["view"]["images"].to_dict() == raw["View Position"].value_counts().sort_index().to_dict()
