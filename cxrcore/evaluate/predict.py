"""Batch prediction of a checkpoint over a dataset split, stored in the workspace and reused.

A prediction table has one row per image: ``image_id``, ``patient_id``, then for every label of the
model ``true:<label>`` (1 / 0 / NaN), ``logit:<label>`` and ``prob:<label>``. The logits are stored as
Parquet under ``$CXR_HOME/predictions/``, keyed by the checkpoint's weights fingerprint (the tensors,
not the card), the dataset's index fingerprint and split, and the preprocessing settings, so asking
again for the same thing reads the table instead of running the model; changing any of them makes a
new table. The probabilities are added when a table is read, calibrated as the checkpoint's card says
(``cxrcore.models.readout``), so recalibrating a checkpoint never needs the model to run again.

Images come from the preprocessing cache through a DataLoader (optionally with worker processes), so
decoding and preprocessing overlap the forward pass. PyTorch and the model code are imported only when
a model runs, so reading stored tables (what the dashboard's pages do first) stays light.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cxrcore import jsonsafe
from cxrcore.atomic import atomic_path
from cxrcore.data.index import DatasetError, label_columns
from cxrcore.data.split import split_rows
from cxrcore.labels import label_fit
from cxrcore.models.card import read_card, weights_fingerprint
from cxrcore.models.model_card import ModelCard
from cxrcore.models.readout import calibrated_probabilities, calibration_method, expit
from cxrcore.preprocess import PreprocessConfig
from cxrcore.store import Workspace
from cxrcore.stored_files import StoredFileError, read_stored_frame

if TYPE_CHECKING:  # PyTorch is imported where a model runs, not to read stored tables
    from cxrcore.data.torch_dataset import CXRDataset
    from cxrcore.models.checkpoint import Checkpoint
    from cxrcore.models.registry import CXRModel

log = logging.getLogger(__name__)

PREDICT_VERSION = 2  # bump when the table layout or the way predictions are made changes
Progress = Callable[[int, int], None]  # (images done, images in total)


@dataclass(frozen=True)
class Predictions:
    """A prediction table and what it was made from."""

    table: pd.DataFrame
    labels: tuple[str, ...]
    meta: dict[str, Any]
    from_cache: bool = False

    def _matrix(self, prefix: str) -> np.ndarray:
        return self.table[[f"{prefix}:{name}" for name in self.labels]].to_numpy(dtype=np.float64)

    @property
    def y_true(self) -> np.ndarray:
        """Truth matrix (images x labels) with NaN where a label is unknown."""
        return self._matrix("true")

    @property
    def y_prob(self) -> np.ndarray:
        """Predicted probabilities (images x labels), calibrated as the checkpoint's card says."""
        return self._matrix("prob")

    @property
    def raw_prob(self) -> np.ndarray:
        """Uncalibrated probabilities (the sigmoid of the logits), to compare calibration against."""
        return expit(self.logits)

    @property
    def logits(self) -> np.ndarray:
        """Logits (images x labels)."""
        return self._matrix("logit")


def truth_for(rows: pd.DataFrame, model_labels: Sequence[str], card: ModelCard) -> np.ndarray:
    """The truth matrix for a model's labels: its own columns, or 'any finding' over its training labels.

    Labels the dataset does not have are NaN (unknown) rather than an error, so a model can be scored
    on the labels two datasets share.
    """
    from cxrcore.data.torch_dataset import ANY_FINDING, target_matrix

    labels = list(model_labels)
    if labels == [ANY_FINDING]:
        trained_on = card.trained_labels
        source = [n for n in trained_on if n in rows.columns] or label_columns(rows)
        return target_matrix(rows, source, "any")
    fit = label_fit(labels, label_columns(rows))
    if not fit.ok:
        raise DatasetError(f"the dataset has none of the model's labels ({', '.join(labels)})")
    if fit.missing:
        log.warning("dataset lacks label(s) %s; they are scored as unknown", sorted(fit.missing))
    truth = np.full((len(rows), len(labels)), np.nan, dtype=np.float32)
    for j, name in enumerate(labels):
        if name in fit.shared:
            truth[:, j] = rows[name].to_numpy(dtype=np.float32)
    return truth


def read_stored_predictions(target: Path, labels: Sequence[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A stored prediction table and its metadata; StoredFileError naming the file when either is damaged."""
    remedy = "it is not used, and predicting again (--refresh) replaces it"
    table = read_stored_frame(target, "prediction table", remedy)
    side = target.with_suffix(".json")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoredFileError(f"the stored prediction metadata {side} is damaged ({exc}); {remedy}") from exc
    wanted = ["image_id", *(f"{kind}:{name}" for name in labels for kind in ("true", "logit"))]
    lacking = [c for c in wanted if c not in table.columns]
    if lacking or not isinstance(meta, dict) or meta.get("n_images") != len(table):
        what = f"lacks columns {lacking[:3]}" if lacking else "does not match its metadata"
        raise StoredFileError(f"the stored prediction table {target} {what}; {remedy}")
    return table, meta


def split_has_images(ws: Workspace, dataset: str, split: str) -> bool:
    """Whether a registered dataset's split has images with a file (``all``: any image at all)."""
    try:
        split_rows(ws.load_dataset(dataset).index, split)
    except DatasetError:
        return False
    return True


def prediction_key(checkpoint: Path, ws: Workspace, dataset: str, split: str, pcfg: PreprocessConfig) -> str:
    """The content key of a prediction table (checkpoint bytes, index, split assignment, preprocessing)."""
    record = ws.get_dataset(dataset)
    payload = {
        "v": PREDICT_VERSION,
        "weights": weights_fingerprint(checkpoint),
        "index": record.fingerprint,
        "split_info": record.split,
        "split": split,
        "preprocess": pcfg.key(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def run_model(
    model: CXRModel,
    dataset: CXRDataset,
    *,
    batch_size: int = 64,
    workers: int = 0,
    progress: Progress | None = None,
) -> np.ndarray:
    """Logits of a model over a dataset, in dataset order, without gradients."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, persistent_workers=False
    )
    device = next(model.parameters()).device
    out, done = [], 0
    with torch.inference_mode():
        for x, _ in loader:
            out.append(model(x.to(device)).float().cpu().numpy())
            done += len(x)
            if progress is not None:
                progress(done, len(dataset))
    return np.concatenate(out) if out else np.zeros((0, len(model.labels)), np.float32)


def _table(rows: pd.DataFrame, labels: Sequence[str], truth: np.ndarray, logits: np.ndarray) -> pd.DataFrame:
    """The stored table: ids, truth and logits (probabilities are added when it is read)."""
    columns: dict[str, Any] = {
        "image_id": rows["image_id"].to_numpy(),
        "patient_id": rows["patient_id"].to_numpy(),
    }
    for j, name in enumerate(labels):
        columns[f"true:{name}"] = truth[:, j]
        columns[f"logit:{name}"] = logits[:, j]
    return pd.DataFrame(columns)


def with_probabilities(table: pd.DataFrame, card: ModelCard) -> pd.DataFrame:
    """The table with a ``prob:<label>`` column after each ``logit:<label>``, calibrated by the card."""
    logits = table[[f"logit:{name}" for name in card.labels]].to_numpy(dtype=np.float64)
    probs = calibrated_probabilities(card, logits)
    columns: dict[str, Any] = {c: table[c] for c in table.columns if not c.startswith("prob:")}
    out: dict[str, Any] = {}
    for column, values in columns.items():
        out[column] = values
        if column.startswith("logit:"):
            out["prob:" + column.removeprefix("logit:")] = probs[:, card.labels.index(column[6:])]
    return pd.DataFrame(out, index=table.index)


def predict(
    checkpoint: str | Path | Checkpoint,
    ws: Workspace,
    dataset: str,
    split: str = "test",
    *,
    batch_size: int = 64,
    workers: int = 0,
    refresh: bool = False,
    progress: Progress | None = None,
) -> Predictions:
    """Predictions of a checkpoint (a file, or one already loaded) over a dataset split.

    Read from the workspace when already made; the checkpoint's weights are loaded only when not.
    """
    loaded = None if isinstance(checkpoint, str | Path) else checkpoint  # a loaded Checkpoint
    if loaded is not None and loaded.path is None:
        raise ValueError("predictions are stored per checkpoint file; save the model first")
    checkpoint = loaded.path if loaded is not None else Path(checkpoint)
    card = loaded.card if loaded is not None else read_card(checkpoint)
    pcfg = card.preprocess
    key = prediction_key(checkpoint, ws, dataset, split, pcfg)
    target = ws.predictions_dir / f"{key}.parquet"
    labels = card.labels
    if target.exists() and target.with_suffix(".json").exists() and not refresh:
        try:
            table, meta = read_stored_predictions(target, labels)
            meta["calibration"] = calibration_method(card)
            return Predictions(with_probabilities(table, card), labels, meta, from_cache=True)
        except StoredFileError as exc:  # a damaged table is never used: it is predicted anew
            log.warning("%s", exc)
    start = time.perf_counter()
    from cxrcore.data.cache import PreprocessCache
    from cxrcore.data.torch_dataset import CXRDataset
    from cxrcore.models.checkpoint import load_checkpoint

    model = (loaded or load_checkpoint(checkpoint)).model
    rows = split_rows(ws.load_dataset(dataset).index, split)
    truth = truth_for(rows, labels, card)
    cache = PreprocessCache(ws.cache_dir / "preprocessed", pcfg)
    images = CXRDataset(rows["path"].tolist(), truth, cache, model.spec.mean, model.spec.std)
    logits = run_model(model, images, batch_size=batch_size, workers=workers, progress=progress)
    table = _table(rows, labels, truth, logits)
    meta = {
        "key": key,
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_fingerprint": weights_fingerprint(checkpoint),  # the tensors, not the card
        "dataset": dataset,
        "index_fingerprint": ws.get_dataset(dataset).fingerprint,
        "split": split,
        "preprocess": pcfg.to_dict(),
        "labels": list(labels),
        "n_images": len(table),
        "seconds": round(time.perf_counter() - start, 3),
        "file": str(target),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_path(target.with_suffix(".json")) as tmp:
        Path(tmp).write_text(jsonsafe.dumps(meta, indent=1))
    ws.record_predictions(key, meta)
    log.info("predicted %d images of %s/%s in %.1f s", len(table), dataset, split, meta["seconds"])
    meta_read = {**meta, "calibration": calibration_method(card)}
    return Predictions(with_probabilities(table, card), labels, meta_read)
