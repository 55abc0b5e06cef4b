"""Merging datasets through the label contract, e.g. for a proxy task over many chest X-ray sources.

Each source keeps its own rows; label columns are the union of all sources' labels, NaN where a
source says nothing about a label (unknown, not absent). Image ids get the source dataset's name as a
prefix so they stay unique, and the ``source`` column says where each row came from.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from cxrcore.data.index import (
    META_COLUMNS,
    DatasetError,
    IndexedDataset,
    empty_boxes,
    label_columns,
    validate_index,
)

PROXY_LABEL = "Abnormal"


def merge_indexes(datasets: Mapping[str, pd.DataFrame], normals_negative: bool = False) -> pd.DataFrame:
    """One index over several: union of labels (NaN where a source lacks one), prefixed ids and patients.

    With ``normals_negative``, an image its own source reads as normal (every one of that source's
    labels a known 0, e.g. NIH "No Finding" or a NORMAL folder) is also 0 for the other sources'
    labels: a normal chest has no finding of any kind. Other rows keep NaN for labels their source
    does not have.
    """
    if len(datasets) < 1:
        raise DatasetError("nothing to merge: give at least one dataset")
    labels: list[str] = []
    for index in datasets.values():
        labels += [name for name in label_columns(index) if name not in labels]
    parts = []
    for name, index in datasets.items():
        part = index.copy()
        part["image_id"] = name + "/" + part["image_id"].astype(str)
        part["patient_id"] = name + "/" + part["patient_id"].astype(str)
        part["source"] = name if "source" not in part.columns else part["source"].fillna(name)
        part = part.reindex(columns=[c for c in META_COLUMNS if c in part.columns] + labels)
        if normals_negative:
            own = label_columns(index)
            normal = (index[own].to_numpy(dtype=np.float64) == 0.0).all(axis=1)
            others = [c for c in labels if c not in own]
            part.loc[normal, others] = 0.0
        parts.append(part)
    merged = pd.concat(parts, ignore_index=True)
    merged = merged[[c for c in META_COLUMNS if c in merged.columns] + labels]
    return validate_index(merged)


def merge_boxes(
    datasets: Mapping[str, IndexedDataset], merged: pd.DataFrame, extra: Mapping[str, IndexedDataset] = {}
) -> pd.DataFrame:
    """The sources' boxes under the merged ids, plus ``extra`` datasets' boxes matched by image file.

    ``extra`` is for box tables over the same files (RSNA's pneumonia boxes are drawn on NIH images):
    a box is kept when its image's file is a row of the merged index.
    """
    parts = []
    for name, ds in datasets.items():
        if len(ds.boxes):
            parts.append(ds.boxes.assign(image_id=name + "/" + ds.boxes["image_id"].astype(str)))
    by_path = dict(zip(merged["path"].astype(str), merged["image_id"], strict=True))
    for ds in extra.values():
        path_of = dict(zip(ds.index["image_id"].astype(str), ds.index["path"].astype(str), strict=True))
        ids = ds.boxes["image_id"].astype(str).map(path_of).map(by_path)
        parts.append(ds.boxes.assign(image_id=ids)[ids.notna()])
    return pd.concat(parts, ignore_index=True) if parts else empty_boxes()


def source_task(index: pd.DataFrame) -> pd.DataFrame:
    """Replace the labels by one label per source (1 for its own images): can a model tell them apart?

    A model that predicts an image's source well can use the source as a shortcut for any label whose
    frequency differs between sources.
    """
    if "source" not in index.columns:
        raise DatasetError("a source task needs a merged dataset (its 'source' column)")
    sources = sorted(index["source"].astype(str).unique())
    out = index.drop(columns=label_columns(index))
    out = out.assign(**{name: (index["source"].astype(str) == name).astype("float64") for name in sources})
    return validate_index(out)


def proxy_task(index: pd.DataFrame, name: str = PROXY_LABEL) -> pd.DataFrame:
    """Replace the labels by one proxy label: 1 if any label is positive, 0 if all are known negatives.

    Rows where nothing is positive but something is unknown stay NaN (they cannot be called normal).
    """
    labels = label_columns(index)
    values = index[labels].to_numpy(dtype=np.float64)
    positive = np.nan_to_num(values, nan=0.0).max(axis=1) == 1.0
    all_known = ~np.isnan(values).any(axis=1)
    proxy = np.where(positive, 1.0, np.where(all_known, 0.0, np.nan))
    out = index.drop(columns=labels).assign(**{name: proxy})
    return validate_index(out)


def pretrain_dataset(datasets: Mapping[str, IndexedDataset]) -> IndexedDataset:
    """The merged normal-vs-abnormal collection used to pretrain a modality-specific backbone."""
    # The proxy label is decided within each source, on that source's own labels: a label another
    # source has is not "unknown" for an image of this one, it was never part of its vocabulary.
    proxy = merge_indexes({name: proxy_task(ds.index) for name, ds in datasets.items()})
    counts = proxy[PROXY_LABEL].value_counts(dropna=False).to_dict()
    notes = {
        "merged_from": list(datasets),
        "proxy_task": f"{PROXY_LABEL}: any finding positive vs all findings negative",
        "proxy_counts": {str(k): int(v) for k, v in counts.items()},
    }
    return IndexedDataset(index=proxy, notes=notes)
