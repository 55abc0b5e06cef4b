"""Patient-level splits: every image of a patient lands in the same split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrcore.data.index import (
    ALL_SPLITS,
    SPLIT_CHOICES,
    SPLITS,
    DatasetError,
    label_columns,
    validate_index,
)
from cxrcore.hints import unknown_choice

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.1, 0.2)  # train, valid, test


def parse_fractions(text: str | Sequence[float]) -> tuple[float, float, float]:
    """Parse '0.7,0.1,0.2' (train, valid, test) and check the fractions sum to 1."""
    try:
        values = [float(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except (TypeError, ValueError):
        values = []
    if len(values) != 3 or any(v < 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise DatasetError(
            f"fractions must be three non-negative numbers summing to 1 (train,valid,test); got {text!r}"
        )
    return values[0], values[1], values[2]


def _patient_strata(index: pd.DataFrame) -> pd.Series:
    """Each patient's stratum: its rarest positive label, or '' for patients with no positive label."""
    labels = label_columns(index)
    positives = index[labels].fillna(0.0).groupby(index["patient_id"]).max()
    order = positives.sum().sort_values(kind="stable").index  # rarest label first
    ranked = positives[order].to_numpy() > 0
    first = np.where(ranked.any(axis=1), ranked.argmax(axis=1), -1)
    return pd.Series([order[i] if i >= 0 else "" for i in first], index=positives.index)


def patient_split(
    index: pd.DataFrame,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    stratify: bool = True,
) -> pd.DataFrame:
    """Assign train/valid/test at patient level, label-stratified, deterministic by seed.

    Patients are grouped by their rarest positive label (when ``stratify``); within each group they
    are shuffled with a generator seeded by ``seed`` and each goes to the split furthest below its
    target share of that group's images. Rare labels therefore reach every split where the number of
    patients allows it.

    Returns:
        A copy of the index with the ``split`` column set.
    """
    targets = np.asarray(parse_fractions(fractions))
    rng = np.random.default_rng(seed)
    counts = index.groupby("patient_id").size()
    strata = _patient_strata(index) if stratify else pd.Series("", index=counts.index)
    assignment: dict[str, str] = {}
    for _, group in sorted(strata.groupby(strata), key=lambda kv: kv[0]):
        patients = group.index.to_numpy()[rng.permutation(len(group))]
        sizes = counts.loc[patients].to_numpy()
        goal = targets * sizes.sum()
        taken = np.zeros(3)
        for patient, size in zip(patients, sizes, strict=True):
            deficit = np.where(targets > 0, goal - taken, -np.inf)
            choice = int(np.argmax(deficit))
            taken[choice] += size
            assignment[patient] = SPLITS[choice]
    out = index.copy()
    out["split"] = out["patient_id"].map(assignment).astype("string")
    return validate_index(out)


def split_summary(index: pd.DataFrame) -> pd.DataFrame:
    """Images, patients and positives per label for each split."""
    if "split" not in index.columns or index["split"].isna().all():
        raise DatasetError("the index has no split yet; build one first")
    labels = label_columns(index)
    grouped = index.groupby("split", observed=True)
    summary = pd.DataFrame({"images": grouped.size(), "patients": grouped["patient_id"].nunique()})
    positives = grouped[labels].sum().add_prefix("pos: ")
    return summary.join(positives).reindex([s for s in SPLITS if s in summary.index])


def split_rows(index: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of one split that have an image file (ALL_SPLITS, "all": every row with a file)."""
    if split not in SPLIT_CHOICES:
        raise DatasetError(unknown_choice("split", split, SPLIT_CHOICES))
    rows = index[index["path"].notna()]
    if split != ALL_SPLITS:
        if "split" not in rows.columns or rows["split"].isna().all():
            raise DatasetError(
                "the dataset has no split: build one first (cxr data split NAME or the explorer)"
            )
        rows = rows[rows["split"] == split]
    if rows.empty:
        raise DatasetError(f"the {split} split has no images with a file")
    return rows
