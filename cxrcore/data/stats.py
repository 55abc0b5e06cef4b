"""Dataset statistics as pure functions that take an index and return DataFrames.

Frequencies count known labels only: a NaN (unknown) label is neither positive nor negative.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrcore.data.index import label_columns


def label_frequencies(index: pd.DataFrame) -> pd.DataFrame:
    """Positives, negatives, unknowns and positive/negative frequency per label."""
    labels = label_columns(index)
    values = index[labels].to_numpy(dtype=np.float64)
    pos = np.nansum(values == 1.0, axis=0)
    neg = np.nansum(values == 0.0, axis=0)
    known = pos + neg
    with np.errstate(invalid="ignore", divide="ignore"):
        freq_pos = np.where(known > 0, pos / known, np.nan)
    return pd.DataFrame(
        {
            "positives": pos.astype(np.int64),
            "negatives": neg.astype(np.int64),
            "unknown": (len(index) - known).astype(np.int64),
            "freq_pos": freq_pos,
            "freq_neg": 1.0 - freq_pos,
        },
        index=pd.Index(labels, name="label"),
    )


def frequency_weights(index: pd.DataFrame) -> pd.DataFrame:
    """Per-label loss weights that balance positives and negatives: w_pos = freq_neg, w_neg = freq_pos."""
    freq = label_frequencies(index)
    return pd.DataFrame({"w_pos": freq["freq_neg"], "w_neg": freq["freq_pos"]}, index=freq.index)


def loss_contributions(index: pd.DataFrame) -> pd.DataFrame:
    """Share of the loss from positive and negative examples per label, before and after weighting.

    Unweighted, positives contribute freq_pos and negatives freq_neg; after multiplying by
    w_pos = freq_neg and w_neg = freq_pos both contribute freq_pos * freq_neg, so they are equal.
    """
    freq = label_frequencies(index)
    weights = frequency_weights(index)
    return pd.DataFrame(
        {
            "positive": freq["freq_pos"],
            "negative": freq["freq_neg"],
            "positive_weighted": freq["freq_pos"] * weights["w_pos"],
            "negative_weighted": freq["freq_neg"] * weights["w_neg"],
        },
        index=freq.index,
    )


def cooccurrence(index: pd.DataFrame, normalise: str | None = None) -> pd.DataFrame:
    """Label co-occurrence: counts of images positive for both labels (diagonal: positives of each).

    Args:
        normalise: None for counts, "jaccard" for |A and B| / |A or B|, "conditional" for
            P(column label | row label).
    """
    labels = label_columns(index)
    x = (index[labels].to_numpy(dtype=np.float64) == 1.0).astype(np.float64)
    counts = x.T @ x
    if normalise is None:
        out = counts
    elif normalise == "jaccard":
        diag = np.diag(counts)
        union = diag[:, None] + diag[None, :] - counts
        out = np.divide(counts, union, out=np.zeros_like(counts), where=union > 0)
    elif normalise == "conditional":
        diag = np.diag(counts)[:, None]
        out = np.divide(counts, diag, out=np.zeros_like(counts), where=diag > 0)
    else:
        raise ValueError(
            f"unknown normalisation {normalise!r}; valid options: None, 'jaccard', 'conditional'"
        )
    return pd.DataFrame(out, index=pd.Index(labels, name="label"), columns=labels)


def images_per_patient(index: pd.DataFrame) -> pd.DataFrame:
    """How many patients have 1, 2, 3, ... images."""
    per_patient = index.groupby("patient_id", sort=False).size()
    dist = per_patient.value_counts().sort_index()
    return pd.DataFrame({"patients": dist.to_numpy()}, index=pd.Index(dist.index.to_numpy(), name="images"))


def category_summary(index: pd.DataFrame, column: str) -> pd.DataFrame:
    """Image and patient counts per value of a metadata column (e.g. view or sex); missing as 'unknown'."""
    if column not in index.columns:
        return pd.DataFrame(
            {"images": [len(index)], "patients": [index["patient_id"].nunique()]},
            index=pd.Index(["unknown"], name=column),
        )
    values = index[column].astype("string").fillna("unknown")
    grouped = index.groupby(values, sort=True)
    return pd.DataFrame({"images": grouped.size(), "patients": grouped["patient_id"].nunique()}).rename_axis(
        column
    )


def age_summary(
    index: pd.DataFrame, bins: Sequence[int] = (0, 18, 30, 40, 50, 60, 70, 80, 200)
) -> pd.DataFrame:
    """Images per age band; ages outside 0-120 years are counted as implausible, missing as unknown."""
    ages = index["age"] if "age" in index.columns else pd.Series(np.nan, index=index.index)
    plausible = ages.between(0, 120)
    bands = pd.cut(ages[plausible], bins=list(bins), right=False)
    counts = bands.value_counts(sort=False)
    out = pd.DataFrame({"images": counts.to_numpy()}, index=pd.Index(counts.index.astype(str), name="age"))
    extra = pd.DataFrame(
        {"images": [int(ages.isna().sum()), int((ages.notna() & ~plausible).sum())]},
        index=pd.Index(["unknown", "implausible"], name="age"),
    )
    return pd.concat([out, extra[extra["images"] > 0]])


def overview(index: pd.DataFrame) -> dict[str, object]:
    """Headline counts: images, patients, labels, files known, split sizes."""
    splits = index["split"].value_counts().to_dict() if "split" in index.columns else {}
    return {
        "images": len(index),
        "patients": int(index["patient_id"].nunique()),
        "labels": label_columns(index),
        "with_file": int(index["path"].notna().sum()),
        "splits": {str(k): int(v) for k, v in splits.items()},
    }


def dataset_statistics(index: pd.DataFrame) -> dict[str, pd.DataFrame | dict]:
    """Every statistic above, by name (what ``cxr data stats`` prints and the explorer plots)."""
    return {
        "overview": overview(index),
        "frequencies": label_frequencies(index),
        "loss_contributions": loss_contributions(index),
        "cooccurrence": cooccurrence(index),
        "images_per_patient": images_per_patient(index),
        "view": category_summary(index, "view"),
        "sex": category_summary(index, "sex"),
        "age": age_summary(index),
    }
