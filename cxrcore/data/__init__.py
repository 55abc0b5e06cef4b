"""Datasets: the index contract, source adapters, patient splits, leakage, statistics, phantoms."""

from __future__ import annotations

from cxrcore.data.index import (
    BOX_COLUMNS,
    META_COLUMNS,
    SPLITS,
    DatasetError,
    IndexedDataset,
    build_index,
    index_fingerprint,
    label_columns,
    validate_boxes,
    validate_index,
)

__all__ = [
    "BOX_COLUMNS",
    "META_COLUMNS",
    "SPLITS",
    "DatasetError",
    "IndexedDataset",
    "build_index",
    "index_fingerprint",
    "label_columns",
    "validate_boxes",
    "validate_index",
]
