from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_png

from cxrcore.data.adapters import load_source
from cxrcore.data.index import DatasetError, validate_index
from cxrcore.data.leakage import leakage_against, leakage_by_split
from cxrcore.data.split import parse_fractions, patient_split, split_summary


def _random_index(n_patients: int = 300, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        for k in range(int(rng.integers(1, 4))):
            rows.append(
                {
                    "image_id": f"{p:05d}_{k}",
                    "path": None,
                    "patient_id": f"P{p:05d}",
                    "Common": float(rng.random() < 0.4),
                    "Rare": float(rng.random() < 0.03),
                }
            )
    return validate_index(pd.DataFrame(rows))


def test_patient_split_is_patient_level_deterministic_and_close_to_fractions() -> None:
    index = _random_index()
    a = patient_split(index, (0.7, 0.1, 0.2), seed=3)
    b = patient_split(index, (0.7, 0.1, 0.2), seed=3)
    c = patient_split(index, (0.7, 0.1, 0.2), seed=4)
    pd.testing.assert_series_equal(a["split"], b["split"])
    assert not a["split"].equals(c["split"])
    assert a.groupby("patient_id")["split"].nunique().max() == 1
    shares = a["split"].value_counts(normalize=True)
    assert abs(shares["train"] - 0.7) < 0.03 and abs(shares["valid"] - 0.1) < 0.03
    assert not leakage_by_split(a, check_bytes=False).leaks


def test_stratification_puts_rare_positives_in_every_split() -> None:
    index = _random_index(seed=7)
    split = patient_split(index, (0.6, 0.2, 0.2), seed=0)
    summary = split_summary(split)
    assert (summary["pos: Rare"] >= 1).all(), summary
    assert summary["images"].sum() == len(index)


@pytest.mark.parametrize("bad", ["0.7,0.2", "0.5,0.5,0.5", "a,b,c", (0.8, -0.1, 0.3)])
def test_bad_fractions_are_refused(bad: object) -> None:
    with pytest.raises(DatasetError, match="fractions must be three"):
        parse_fractions(bad)  # type: ignore[arg-type]


def test_leakage_finds_shared_patients_and_identical_files(tmp_path: Path) -> None:
    write_png(tmp_path / "train" / "normal" / "00000001_000.png", seed=1)
    write_png(tmp_path / "train" / "sick" / "00000002_000.png", seed=2)
    write_png(tmp_path / "test" / "normal" / "00000001_001.png", seed=3)  # same patient as a train image
    write_png(tmp_path / "test" / "sick" / "00000099_000.png", seed=2)  # same bytes as a train image
    write_png(tmp_path / "valid" / "normal" / "00000050_000.png", seed=5)
    index = load_source("folder", root=tmp_path).index
    report = leakage_by_split(index)
    pairs = {(p.a, p.b): p for p in report.pairs}
    assert pairs[("train", "test")].shared_patients == ("00000001",)
    assert pairs[("train", "test")].identical_images == (
        ("train/sick/00000002_000.png", "test/sick/00000099_000.png"),
    )
    assert not pairs[("train", "valid")].leaks and not pairs[("valid", "test")].leaks
    assert report.verdict.startswith("LEAKAGE: train / test: 1 shared patient(s)")
    assert report.to_frame()["shared_patients"].tolist() == [0, 1, 0]


def test_leakage_against_another_index() -> None:
    a = _random_index(20, seed=1)
    b = a[a["patient_id"].isin(["P00003", "P00011"])].assign(image_id=lambda f: "x" + f["image_id"])
    report = leakage_against(a, b, "internal", "external", check_bytes=False)
    assert report.pairs[0].shared_patients == ("P00003", "P00011")
    assert report.to_dict()["pairs"][0]["checked_bytes"] is False


def test_leakage_needs_a_split() -> None:
    with pytest.raises(DatasetError, match="no split"):
        leakage_by_split(_random_index(5))


def test_real_folder_split_leaks_as_published(data_dir: Path) -> None:
    index = load_source("folder", root=data_dir / "nih1000_64px").index
    assert len(index) == 1000
    pairs = {(p.a, p.b): len(p.shared_patients) for p in leakage_by_split(index).pairs}
    assert pairs == {("train", "valid"): 15, ("train", "test"): 8, ("valid", "test"): 9}
