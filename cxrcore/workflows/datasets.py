"""Registering datasets in the workspace: a source through its adapter, registered ones merged into one,
a new patient-level split.

``python -m cxrcore data register | merge | split`` and the real-data recipe (``workflows.realdata``)
both run these functions, so the two register the same data and report it in the same words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from cxrcore import jsonsafe
from cxrcore.data import merge
from cxrcore.data.adapters import load_source
from cxrcore.data.index import IndexedDataset
from cxrcore.data.split import parse_fractions, patient_split, split_summary
from cxrcore.store import DatasetRecord, Workspace

DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)  # train, valid, test


def comma_names(text: str) -> list[str]:
    """The names of a comma-separated list, blanks dropped: "nih, tbx," gives ["nih", "tbx"]."""
    return [n.strip() for n in text.split(",") if n.strip()]


def register_source(
    ws: Workspace, name: str, source: str, arguments: dict[str, Any], replace: bool = False
) -> DatasetRecord:
    """Index a source with its adapter (``arguments`` are the adapter's) and store it as ``name``."""
    dataset = load_source(source, **arguments)
    return ws.register_dataset(name, source, arguments, dataset, replace=replace)


def registered_line(record: DatasetRecord) -> str:
    """The line that reports a registered source: images, patients, labels and the adapter's notes."""
    return (
        f"registered {record.name!r}: {record.n_images} images, {record.n_patients} patients, "
        f"{len(record.labels)} labels; notes: {jsonsafe.dumps(record.notes, default=str)}"
    )


def _box_sources(ws: Workspace, boxes_from: Sequence[str]) -> dict[str, IndexedDataset]:
    """The datasets whose boxes join a merge; "rsna=Pneumonia" relabels rsna's boxes as Pneumonia."""
    box_sources = {}
    for item in boxes_from:
        name, _, label = item.partition("=")
        extra = ws.load_dataset(name)
        if label:  # the boxes stand for this label of the merged dataset (RSNA opacities: Pneumonia)
            extra.boxes = extra.boxes.assign(label=label)
        box_sources[item] = extra
    return box_sources


def merge_datasets(
    ws: Workspace,
    name: str,
    sources: Sequence[str],
    *,
    boxes_from: Sequence[str] = (),
    proxy: bool = False,
    normals_negative: bool = False,
    source_task: bool = False,
    fractions: str | Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    replace: bool = False,
) -> DatasetRecord:
    """Register several registered datasets as one (labels aligned, NaN where unknown) with a patient split.

    ``proxy`` keeps one label, "Abnormal" (any finding), for pretraining; ``normals_negative`` makes an
    image its own source reads as normal negative for the other sources' labels too; ``source_task``
    gives one label per source instead of the findings; ``boxes_from`` names datasets whose boxes are
    drawn on the same image files, optionally relabelled ("rsna=Pneumonia").
    """
    names = list(sources)
    loaded = {n: ws.load_dataset(n) for n in names}
    box_names = list(boxes_from)
    box_sources = _box_sources(ws, box_names)
    if proxy:
        merged = merge.pretrain_dataset(loaded)
    else:
        indexes = {n: d.index for n, d in loaded.items()}
        merged = IndexedDataset(index=merge.merge_indexes(indexes, normals_negative=normals_negative))
        merged.notes["merged_from"] = names
        merged.notes["normals_negative"] = bool(normals_negative)
    if source_task:
        merged.index = merge.source_task(merged.index)
        merged.notes["source_task"] = "one label per source: 1 for the source's own images"
    merged.boxes = merge.merge_boxes(loaded, merged.index, box_sources)
    merged.notes["boxes"] = len(merged.boxes)
    shares = parse_fractions(fractions)
    merged.index = patient_split(merged.index, shares, seed=seed)
    settings = {
        "sources": names,
        "proxy": proxy,
        "normals_negative": normals_negative,
        "source_task": source_task,
        "boxes_from": box_names,
    }
    ws.register_dataset(name, "merge", settings, merged, replace=replace)
    return ws.save_split(name, merged.index, fractions=list(shares), seed=seed, stratified=True)


def merged_line(record: DatasetRecord) -> str:
    """The line that reports a merged dataset: images, the datasets merged, boxes and labels."""
    return (
        f"registered {record.name!r}: {record.n_images} images, {', '.join(record.arguments['sources'])}, "
        f"{record.notes['boxes']} boxes; labels {record.labels}"
    )


def split_dataset(
    ws: Workspace,
    name: str,
    fractions: str | Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    stratify: bool = True,
) -> pd.DataFrame:
    """A new patient-level split of a registered dataset (label-stratified unless told not to), stored."""
    index = ws.load_dataset(name).index
    shares = parse_fractions(fractions)
    split = patient_split(index, shares, seed=seed, stratify=stratify)
    ws.save_split(name, split, fractions=list(shares), seed=seed, stratified=stratify)
    return split


def split_table(index: pd.DataFrame) -> str:
    """The table that reports a split: images, patients and positives per label in each split."""
    return split_summary(index).to_string()
