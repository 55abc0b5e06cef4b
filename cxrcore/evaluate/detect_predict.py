"""A detector's boxes over a dataset split, stored in the workspace and reused (as predictions are).

The table is a detections frame (``DETECTION_COLUMNS``: image_id, label, x, y, w, h, score, in the pixel
space of each file) holding every box the detector keeps (scores down to ``SCORE_FLOOR``), so metrics
that sweep the score (AP, FROC) and the pages' score slider all read the same table. It is keyed by the
checkpoint's weights fingerprint (the tensors, not the card: choosing a score threshold rewrites the card
and keeps the boxes), the dataset's index fingerprint, the split and the preprocessing, and stored as
Parquet under ``$CXR_HOME/predictions/`` beside a JSON record of what made it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from cxrcore import jsonsafe
from cxrcore.atomic import atomic_path
from cxrcore.data.cache import PreprocessCache
from cxrcore.data.detections import empty_detections
from cxrcore.data.split import split_rows
from cxrcore.io.reader import image_size
from cxrcore.models.card import weights_fingerprint
from cxrcore.models.checkpoint import Checkpoint, load_checkpoint, read_card
from cxrcore.models.detection import detector_of, outputs_to_frame
from cxrcore.models.lock import inference_guard
from cxrcore.store import Workspace

log = logging.getLogger(__name__)

DETECT_VERSION = 1  # bump when the table layout or the way boxes are made changes
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class StoredDetections:
    """A detections table over a split, the images it covers, and what it was made from."""

    table: pd.DataFrame
    image_ids: tuple[str, ...]  # every image of the split, with or without boxes
    classes: tuple[str, ...]
    meta: dict[str, Any]
    from_cache: bool = False


def detections_key(checkpoint: Path, ws: Workspace, dataset: str, split: str, preprocess_key: str) -> str:
    """The content key of a detections table."""
    record = ws.get_dataset(dataset)
    payload = {
        "v": DETECT_VERSION,
        "task": "detect",
        "weights": weights_fingerprint(checkpoint),
        "index": record.fingerprint,
        "split_info": record.split,
        "split": split,
        "preprocess": preprocess_key,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def run_detector(
    loaded: Checkpoint, rows: pd.DataFrame, cache: PreprocessCache, progress: Progress | None = None
) -> pd.DataFrame:
    """Every box of a detector on the images of ``rows`` (prepared through ``cache``), in file pixels."""
    model = detector_of(loaded)
    frames = []
    with inference_guard(model), torch.inference_mode():
        for done, (image_id, path) in enumerate(zip(rows["image_id"], rows["path"], strict=True), start=1):
            x = torch.from_numpy(cache.get(path)).float().div(255.0)[None]
            out = model([x])[0]
            width, height = image_size(path)
            frames.append(outputs_to_frame(out, str(image_id), model.labels, (height, width), loaded))
            if progress is not None:
                progress(done, len(rows))
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else empty_detections()


def detect_split(
    checkpoint: str | Path | Checkpoint,
    ws: Workspace,
    dataset: str,
    split: str = "test",
    *,
    refresh: bool = False,
    progress: Progress | None = None,
) -> StoredDetections:
    """A detector's boxes over a dataset split; read from the workspace when already made."""
    loaded = checkpoint if isinstance(checkpoint, Checkpoint) else None
    if loaded is not None and loaded.path is None:
        raise ValueError("detections are stored per checkpoint file; save the model first")
    path = loaded.path if loaded is not None else Path(checkpoint)
    card = loaded.card if loaded is not None else read_card(path)
    if card.task != "detect":
        raise ValueError(f"{path.name} is a {card.task} model, not a detector")
    key = detections_key(path, ws, dataset, split, card.preprocess.key())
    target = ws.predictions_dir / f"{key}.detections.parquet"
    sidecar = target.with_suffix(".json")
    rows = split_rows(ws.load_dataset(dataset).index, split)
    ids = tuple(str(i) for i in rows["image_id"])
    if target.exists() and sidecar.exists() and not refresh:
        meta = json.loads(sidecar.read_text())
        return StoredDetections(pd.read_parquet(target), ids, card.labels, meta, from_cache=True)
    start = time.perf_counter()
    loaded = loaded or load_checkpoint(path)
    cache = PreprocessCache(ws.cache_dir / "preprocessed", card.preprocess)
    table = run_detector(loaded, rows, cache, progress)
    meta = {
        "key": key,
        "task": "detect",
        "checkpoint": str(path.resolve()),
        "checkpoint_fingerprint": weights_fingerprint(path),  # the tensors, not the card
        "dataset": dataset,
        "index_fingerprint": ws.get_dataset(dataset).fingerprint,
        "split": split,
        "preprocess": card.preprocess.to_dict(),
        "labels": list(card.labels),
        "n_images": len(ids),
        "n_boxes": len(table),
        "seconds": round(time.perf_counter() - start, 3),
        "file": str(target),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_path(sidecar) as tmp:
        Path(tmp).write_text(jsonsafe.dumps(meta, indent=1))
    log.info(
        "detected %d boxes on %d images of %s/%s in %.1f s",
        len(table),
        len(ids),
        dataset,
        split,
        meta["seconds"],
    )
    return StoredDetections(table, ids, card.labels, meta)
