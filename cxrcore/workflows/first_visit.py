"""What the Evaluate and Ensembles pages open with, and starting those predictions before anyone looks.

The Evaluate page opens with the first listed checkpoint (the bundled real-data model first) on the
sidebar's dataset; the Ensembles page with ``ensemble_defaults``. ``start_first_predictions`` starts,
in the background, the stored predictions those first views need (test and validation splits), so a
first visit after ``demo prepare`` finds them ready or in progress.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cxrcore.data.index import TEST_SPLIT, VALID_SPLIT
from cxrcore.evaluate import background
from cxrcore.evaluate.predict import split_has_images
from cxrcore.models.catalog import CheckpointEntry, list_checkpoints
from cxrcore.store import Workspace
from cxrcore.workflows.demo import DEMO_DATASET

log = logging.getLogger(__name__)

MAX_DEFAULT_MEMBERS = 3
FIRST_SPLITS: tuple[str, ...] = (TEST_SPLIT, VALID_SPLIT)  # scored on test, thresholds chosen on valid


def _fitting_group(ws: Workspace, dataset: str) -> list[CheckpointEntry]:
    """The largest set of checkpoints sharing one label set that fit ``dataset`` and were trained on data
    of its kind (real X-rays for a real dataset, phantoms for a synthetic one); at most three classifiers,
    no "last"."""
    record = ws.get_dataset(dataset)
    synthetic = bool(record.notes.get("synthetic"))
    groups: dict[tuple[str, ...], list[CheckpointEntry]] = {}
    for entry in list_checkpoints(ws.home):
        if entry.path.stem == "last" or entry.info.get("task") == "detect" or entry.synthetic != synthetic:
            continue
        if not entry.label_fit(record.labels).ok:
            continue
        groups.setdefault(tuple(entry.info["labels"]), []).append(entry)
    best = max(groups.values(), key=len, default=[])  # the first of the largest groups
    return best[:MAX_DEFAULT_MEMBERS]


def ensemble_defaults(ws: Workspace, dataset: str) -> tuple[str, list[str], str]:
    """The dataset and members the Ensembles page opens with, and a note when it is not the sidebar's.

    Checkpoints trained on data like the selected dataset's (the bundled real-data ones on a real
    dataset); when fewer than two fit, the bundled demo models on the demo phantoms.
    """
    members = _fitting_group(ws, dataset)
    if len(members) >= 2:
        return dataset, [str(e.path) for e in members], ""
    demo = [r.name for r in ws.list_datasets() if r.name == DEMO_DATASET]
    if demo and dataset != DEMO_DATASET:
        members = _fitting_group(ws, DEMO_DATASET)
        if len(members) >= 2:
            note = (
                f"Fewer than two models trained on data like {dataset} fit it, so the comparison opens with "
                f"the bundled demo models on {DEMO_DATASET} (synthetic phantoms, not real patients)."
            )
            return DEMO_DATASET, [str(e.path) for e in members], note
    return dataset, [], ""


def first_views(ws: Workspace, dataset: str) -> dict[str, list[str]]:
    """Per dataset, the checkpoints whose predictions the two pages' first views of ``dataset`` need."""
    wanted: dict[str, list[str]] = {}
    entries = list_checkpoints(ws.home)
    labels = ws.get_dataset(dataset).labels
    if entries and entries[0].info.get("task") != "detect" and entries[0].label_fit(labels).ok:
        wanted[dataset] = [str(entries[0].path)]  # the Evaluate page's sidebar default
    shown, members, _ = ensemble_defaults(ws, dataset)
    for member in members:
        if member not in wanted.setdefault(shown, []):
            wanted[shown].append(member)
    return wanted


def start_first_predictions(
    ws: Workspace, dataset: str, delay_s: float = 0.0
) -> list[tuple[str, str, str, background.PredictionStatus]]:
    """Start in the background the predictions the pages' first views of ``dataset`` need; never waits.
    The workers wait ``delay_s`` seconds before they load anything.

    Returns (checkpoint, dataset, split, status) for each, ready ones included.
    """
    started = []
    for name, checkpoints in first_views(ws, dataset).items():
        splits = [split for split in FIRST_SPLITS if split_has_images(ws, name, split)]
        for checkpoint in checkpoints:  # the Evaluate page's model first: its view needs one model only
            for split in splits:
                status = background.start(checkpoint, ws, name, split, delay_s=delay_s)
                started.append((checkpoint, name, split, status))
                log.info("%s on %s/%s: %s", Path(checkpoint).name, name, split, status.state)
    return started
