"""The card side of a checkpoint file, readable without PyTorch: the model card embedded in the
safetensors header (typed as ``ModelCard``, see ``cxrcore.models.model_card``), the weights file's
fingerprint, and a summary for listings.

Kept free of torch and timm so that listing checkpoints (home page, pickers, ``cxr checkpoint info``)
stays fast; ``cxrcore.models.checkpoint`` writes and loads the weights.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import safetensors

from cxrcore.models.model_card import CARD_VERSION, CardError, ModelCard, card_from_dict

CARD_METADATA_KEY = "cxr_model_card"
SEGMENTER_CARD_KEY = "cxr_segmenter_card"  # a lung segmenter's card (cxrcore.models.segmenter_card)
WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"
GUARD_SUFFIX = ".guard.safetensors"
FINGERPRINT_CHARS = 16
_HASH_CHUNK = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint cannot be read, is not ours, or does not fit the model it describes."""


class SegmenterFileError(CheckpointError):
    """The file is a lung segmenter, not a classifier or detector: listings pass it by."""


def weights_path(path: str | Path) -> Path:
    """The ``.safetensors`` file for a checkpoint given by its weights file, sidecar or base name."""
    p = Path(path)
    if p.suffix == WEIGHTS_SUFFIX:
        return p
    if p.suffix == CARD_SUFFIX:
        return p.with_suffix(WEIGHTS_SUFFIX)
    return p.with_name(p.name + WEIGHTS_SUFFIX)


def guard_path(checkpoint: str | Path) -> Path:
    """Where a checkpoint's upload guard is stored (beside it)."""
    path = Path(checkpoint)
    return path.with_name(path.name.removesuffix(WEIGHTS_SUFFIX) + GUARD_SUFFIX)


def safetensors_metadata(weights: Path, what: str = "checkpoint") -> dict[str, str]:
    """A safetensors file's metadata (no tensor is read); CheckpointError naming an unreadable file."""
    if not weights.is_file():
        raise CheckpointError(f"{what} {str(weights)!r} does not exist")
    try:
        with safetensors.safe_open(str(weights), framework="numpy") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for corrupt or foreign files
        raise CheckpointError(f"{str(weights)!r} is not a readable safetensors file ({exc})") from exc


def raw_card(weights: Path) -> dict[str, Any]:
    """The card JSON embedded in a safetensors file, as stored (not migrated)."""
    metadata = safetensors_metadata(weights)
    if CARD_METADATA_KEY not in metadata and SEGMENTER_CARD_KEY in metadata:
        raise SegmenterFileError(
            f"{str(weights)!r} is a lung segmenter, not a classifier or detector; "
            "see python -m cxrcore segmenter evaluate"
        )
    if CARD_METADATA_KEY not in metadata:
        raise CheckpointError(
            f"{str(weights)!r} has no model card (metadata key {CARD_METADATA_KEY!r}); "
            "import foreign weights with cxrcore.models.external.import_state_dict"
        )
    try:
        card = json.loads(metadata[CARD_METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"model card of {str(weights)!r} is not valid JSON ({exc})") from exc
    if not isinstance(card, dict):
        raise CheckpointError(f"model card of {str(weights)!r} is not a JSON object")
    return card


def open_card(weights: Path) -> ModelCard:
    """The typed model card of a weights file (older card versions migrated)."""
    return _typed(raw_card(weights), weights)


def _typed(stored: dict[str, Any], weights: Path) -> ModelCard:
    """The typed form of a stored card, or CheckpointError naming the file."""
    if stored.get("format_version") not in (1, CARD_VERSION):
        raise CheckpointError(
            f"checkpoint format_version {stored.get('format_version')!r} of {str(weights)!r} is not "
            f"supported (this version reads 1 and {CARD_VERSION})"
        )
    try:
        return card_from_dict(stored)
    except CardError as exc:
        raise CheckpointError(f"model card of {str(weights)!r} cannot be read: {exc}") from exc


FileVersion = tuple[str, int, int, int]  # resolved path, inode, modification time (ns), size


def file_version(path: Path) -> FileVersion:
    """What identifies one version of a file, for results kept per version (a rewrite, atomic or in
    place, changes the inode, the time or the size). OSError when the file is missing."""
    st = path.stat()
    return str(path.resolve()), st.st_ino, st.st_mtime_ns, st.st_size


def read_card(path: str | Path) -> ModelCard:
    """The model card of a checkpoint, read from the safetensors header without loading weights.

    Read once per version of the file (path, size, modification time): pages ask for cards on every
    run. The card is shared by every caller, as a loaded checkpoint's is: read it, do not change it.
    """
    weights = weights_path(path)
    try:
        version = file_version(weights)
    except OSError:
        return open_card(weights)  # the reader's own message for a missing file
    return _read_card(version)


@functools.lru_cache(maxsize=64)
def _read_card(version: FileVersion) -> ModelCard:
    return open_card(Path(version[0]))


@functools.lru_cache(maxsize=256)
def _sha256_cached(version: FileVersion) -> str:
    """sha256 of a file, once per version."""
    digest = hashlib.sha256()
    with open(version[0], "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    """Full sha256 hex digest of a file."""
    return _sha256_cached(file_version(path))


def file_fingerprint(path: str | Path) -> str:
    """A sha256 prefix of the checkpoint's weights file, for keying cached predictions."""
    weights = weights_path(path)
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {str(weights)!r} does not exist")
    return _sha256(weights)[:FINGERPRINT_CHARS]


@functools.lru_cache(maxsize=256)
def _tensors_sha256_cached(version: FileVersion) -> str:
    """sha256 of a safetensors file's tensor layout and data, leaving out its metadata (the card)."""
    digest = hashlib.sha256()
    with open(version[0], "rb") as f:
        header_bytes = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_bytes))
        header.pop("__metadata__", None)
        digest.update(json.dumps(header, sort_keys=True).encode())
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def weights_fingerprint(path: str | Path) -> str:
    """A sha256 prefix of the weights alone (not the card): equal for a checkpoint whose card was rewritten.

    Stored logits depend on the weights only, so they are keyed by this; whatever the card changes
    (calibration, operating points) is applied when they are read.
    """
    weights = weights_path(path)
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {str(weights)!r} does not exist")
    try:
        digest = _tensors_sha256_cached(file_version(weights))
    except (ValueError, OSError) as exc:
        raise CheckpointError(f"{str(weights)!r} is not a readable safetensors file ({exc})") from exc
    return digest[:FINGERPRINT_CHARS]


def _best_metric(card: ModelCard) -> dict[str, Any] | None:
    """The best validation value over ``history`` by ``selected_by`` (else a ``val_`` key), or ``metrics``."""
    history = list(card.history)
    monitor = card.selected_by
    if not monitor and history:
        keys = [k for k in history[-1] if str(k).startswith("val_")]
        preferred = [k for k in ("val_mean_auroc", "val_auroc", "val_loss") if k in keys]
        monitor = (preferred or keys or [None])[0]
    points = [
        (float(h[monitor]), h.get("epoch", i + 1))
        for i, h in enumerate(history)
        if monitor in h and isinstance(h[monitor], int | float) and math.isfinite(h[monitor])
    ]
    if points:
        pick = min if "loss" in str(monitor) else max
        value, epoch = pick(points, key=lambda p: p[0])
        return {"metric": monitor, "value": value, "epoch": epoch}
    numeric = {k: v for k, v in card.metrics.items() if isinstance(v, int | float)}
    key = monitor if monitor in numeric else next(iter(numeric), None)
    if key is not None:
        return {"metric": key, "value": float(numeric[key]), "epoch": None}
    return None


def describe_checkpoint(path: str | Path) -> dict[str, Any]:
    """A summary of a checkpoint for listings and ``cxr checkpoint info`` (reads no weights)."""
    weights = weights_path(path)
    stored = raw_card(weights)
    card = _typed(stored, weights)
    return {
        "path": str(weights),
        "task": card.task,
        "architecture": card.spec.architecture,
        "labels": list(card.labels),
        "input_size": card.input_size,
        "num_parameters": card.num_parameters,
        "dataset": card.dataset.name,
        "dataset_fingerprint": card.dataset.fingerprint,
        "split_seed": card.dataset.split_seed,
        "synthetic": card.synthetic,
        "epochs_trained": len(card.history) or card.epoch or 0,
        "best_validation": _best_metric(card),
        "file_bytes": weights.stat().st_size,
        "sha256": file_fingerprint(weights),
        "created_at": card.created_at,
        "package_versions": card.package_versions,
        "card_version": stored.get("format_version"),
    }
