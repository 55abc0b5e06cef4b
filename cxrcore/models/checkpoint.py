"""Checkpoints: weights in one safetensors file whose metadata embeds a JSON model card.

``save_checkpoint("runs/a", model, card)`` writes ``runs/a.safetensors`` (authoritative: weights plus
the card under the metadata key ``cxr_model_card``) and a human-readable sidecar ``runs/a.json``
holding the same card plus the weights file's size and sha256. The safetensors file alone is enough
to rebuild the model; loading never unpickles anything.

The card always gets ``format_version``, ``spec`` (the model's ``ModelSpec``), ``created_at`` (UTC ISO),
``package_versions`` and ``num_parameters``; callers add the rest under these conventional keys:
``train_config``, ``dataset`` (a name, or a mapping with ``name`` / ``fingerprint`` / ``split``),
``dataset_fingerprint``, ``split_seed``, ``history`` (one dict per epoch, e.g.
``{"epoch": 1, "train_loss": ..., "val_auroc": ...}``), ``monitor`` or ``selected_by`` (the history
key that picks the best epoch), ``metrics`` (final validation metrics), ``preprocess`` and
``norm_stats``.

Writes are atomic: both files are written to hidden temporary files in the target folder, then the
sidecar is renamed into place and the weights file last. The weights file appearing is the commit
point, so whoever sees it also sees its sidecar; a crash before it leaves the previous checkpoint
loadable, and the sidecar's recorded sha256 tells whether it describes the weights beside it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import timm
import torch

import cxrcore
from cxrcore import jsonsafe
from cxrcore.atomic import target_mode, temp_beside
from cxrcore.models.card import (  # noqa: F401  (re-exported: the card side of a checkpoint)
    CARD_METADATA_KEY,
    CARD_SUFFIX,
    FORMAT_VERSION,
    WEIGHTS_SUFFIX,
    CheckpointError,
    _open_card,
    _sha256,
    describe_checkpoint,
    file_fingerprint,
    read_card,
    weights_path,
)
from cxrcore.models.registry import CXRModel, create_from_spec
from cxrcore.models.spec import ModelSpec

logger = logging.getLogger(__name__)

_RESERVED = ("format_version", "spec", "created_at", "package_versions", "num_parameters")


def _package_versions() -> dict[str, str]:
    """Versions of the packages that produced the checkpoint."""
    return {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "cxrcore": cxrcore.__version__,
    }


def _full_card(model: CXRModel, card: Mapping[str, Any]) -> dict[str, Any]:
    """The caller's card with the standard fields set from the model and the environment."""
    ignored = sorted(set(card) & set(_RESERVED))
    if ignored:
        logger.warning("model card keys %s are set by save_checkpoint; the given values are ignored", ignored)
    full: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "spec": model.spec.to_dict(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "package_versions": _package_versions(),
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    full.update({k: v for k, v in card.items() if k not in _RESERVED})
    return full


def _fsync(path: Path) -> None:
    """Flush a file's contents to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries to disk where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _restore_sidecar(sidecar: Path, previous: bytes | None) -> None:
    """Put the previous sidecar back (or remove the new one) after the weights failed to land."""
    try:
        if previous is None:
            sidecar.unlink(missing_ok=True)
            return
        tmp = temp_beside(sidecar)
        tmp.write_bytes(previous)
        os.replace(tmp, sidecar)
    except OSError as exc:
        logger.error("could not restore sidecar %s after a failed save: %s", sidecar, exc)


def save_checkpoint(
    path: str | Path, model: CXRModel, card: Mapping[str, Any], *, half: bool = False
) -> Path:
    """Write ``<path>.safetensors`` (weights + embedded card) and ``<path>.json`` atomically.

    ``half`` stores floating-point weights as float16 (half the file; loading turns them back into
    float32), for checkpoints shipped with the project.

    Returns:
        The path of the weights file.

    Raises:
        CheckpointError: a card value cannot be written as JSON.
    """
    weights = weights_path(path)
    sidecar = weights.with_suffix(CARD_SUFFIX)
    full = _full_card(model, card)
    full["weights_dtype"] = "float16" if half else "float32"
    try:
        text = jsonsafe.dumps(full)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot write model card: {exc}") from exc
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    temps: list[Path] = []
    try:
        tmp_weights = temp_beside(weights)
        temps.append(tmp_weights)
        safetensors.torch.save_file(tensors, str(tmp_weights), metadata={CARD_METADATA_KEY: text})
        os.chmod(tmp_weights, target_mode(weights))  # the writer may have re-created the file
        _fsync(tmp_weights)
        sidecar_card = dict(full)
        sidecar_card["weights_file"] = {
            "name": weights.name,
            "bytes": tmp_weights.stat().st_size,
            "sha256": _sha256(tmp_weights),
        }
        tmp_sidecar = temp_beside(sidecar)
        temps.append(tmp_sidecar)
        tmp_sidecar.write_text(jsonsafe.dumps(sidecar_card, indent=2) + "\n", encoding="utf-8")
        _fsync(tmp_sidecar)
        previous = sidecar.read_bytes() if sidecar.is_file() else None
        os.replace(tmp_sidecar, sidecar)
        try:
            os.replace(tmp_weights, weights)
        except BaseException:
            _restore_sidecar(sidecar, previous)
            raise
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    _fsync_dir(weights.parent)
    logger.info("saved checkpoint %s (%s)", weights, model.spec.architecture)
    return weights


def _model_from_card(card: Mapping[str, Any], weights: Path) -> CXRModel:
    """An uninitialised (meta-device) model built from the card's spec."""
    if "spec" not in card:
        raise CheckpointError(f"model card of {str(weights)!r} has no 'spec'")
    try:
        spec = ModelSpec.from_dict(card["spec"])
        with torch.device("meta"):
            return create_from_spec(spec)
    except ValueError as exc:
        raise CheckpointError(f"cannot rebuild the model of {str(weights)!r}: {exc}") from exc


def check_state_dict(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], where: str
) -> None:
    """Raise CheckpointError naming the first missing, unexpected or mis-shaped tensor of a state dict."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"weights in {where} do not match the model: {len(missing)} missing (first: {missing[:3]}), "
            f"{len(unexpected)} unexpected (first: {unexpected[:3]})"
        )
    for key, tensor in expected.items():
        if tuple(found[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"shape mismatch in {where} at {key!r}: checkpoint {tuple(found[key].shape)}, "
                f"model {tuple(tensor.shape)}"
            )


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> tuple[CXRModel, dict]:
    """Rebuild a model from a checkpoint and load its weights strictly; returns (model in eval mode, card).

    Raises:
        CheckpointError: missing file, corrupt or foreign file, missing card, unknown architecture,
            or weights that do not fit the architecture (naming the first mismatching key).
    """
    weights = weights_path(path)
    card = _open_card(weights)
    model = _model_from_card(card, weights)
    try:
        tensors = safetensors.torch.load_file(str(weights), device="cpu")
    except Exception as exc:  # corrupt data section
        raise CheckpointError(f"cannot read weights from {str(weights)!r} ({exc})") from exc
    if card.get("weights_dtype") == "float16":
        tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    check_state_dict(model.state_dict(), tensors, repr(str(weights)))
    model.load_state_dict(tensors, strict=True, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        # State not saved in state_dict (non-persistent buffers) needs a real initialisation.
        model = create_from_spec(model.spec)
        model.load_state_dict(tensors, strict=True)
    return model.to(map_location).eval(), card
