"""Checkpoints: weights in one safetensors file whose metadata embeds the JSON model card.

``save_checkpoint("runs/a", model, card)`` writes ``runs/a.safetensors`` (authoritative: weights plus
the card under the metadata key ``cxr_model_card``) and a human-readable sidecar ``runs/a.json``
holding the same card plus the weights file's size and sha256. The safetensors file alone is enough
to rebuild the model; loading never unpickles anything.

``load_checkpoint(path)`` returns a ``Checkpoint``: the model (eval mode), its typed ``ModelCard``
(see ``cxrcore.models.model_card``) and where it came from. Everything that uses a model on images
(explanations, predictions, the upload guard, the pages, the CLI) takes a ``Checkpoint``, so the
model's preprocessing and normalisation always come from its card and are never rebuilt beside it.
A bare ``CXRModel`` (a freshly built one) is wrapped by ``as_checkpoint`` with default preprocessing
at its input size.

Writes are atomic: both files are written to hidden temporary files in the target folder, then the
sidecar is renamed into place and the weights file last. The weights file appearing is the commit
point, so whoever sees it also sees its sidecar; a crash before it leaves the previous checkpoint
loadable, and the sidecar's recorded sha256 tells whether it describes the weights beside it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import timm
import torch

import cxrcore
from cxrcore import jsonsafe
from cxrcore.atomic import target_mode, temp_beside, write_error
from cxrcore.models.card import (  # noqa: F401  (re-exported: the card side of a checkpoint)
    CARD_METADATA_KEY,
    CARD_SUFFIX,
    WEIGHTS_SUFFIX,
    CheckpointError,
    _sha256,
    describe_checkpoint,
    file_fingerprint,
    open_card,
    raw_card,
    read_card,
    weights_path,
)
from cxrcore.models.detector import CXRDetector
from cxrcore.models.model_card import GENERATED, CardError, ModelCard, card_from_dict
from cxrcore.models.readout import calibrated_probabilities
from cxrcore.models.registry import CXRModel, create_from_spec
from cxrcore.models.spec import ModelSpec
from cxrcore.preprocess import NormStats, PreprocessConfig, normalise, prepare, to_unit

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A model ready to use on images: the model (eval mode), its typed card, and its file (if any)."""

    model: CXRModel | CXRDetector
    card: ModelCard
    path: Path | None = None

    def __post_init__(self) -> None:
        """The card must describe this model, task included."""
        if self.card.spec != self.model.spec:
            raise CheckpointError(
                f"the card's spec {self.card.spec} does not describe the model ({self.model.spec})"
            )
        task = "detect" if isinstance(self.model, CXRDetector) else "classify"
        if self.card.task != task:
            raise CheckpointError(f"the card says task {self.card.task!r} but the model is a {task} model")

    @property
    def spec(self) -> ModelSpec:
        """The model's spec (architecture, labels, input size, normalisation, layers)."""
        return self.model.spec

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's output names."""
        return self.model.spec.labels

    @property
    def input_size(self) -> int:
        """Side of the model's square input in pixels."""
        return self.model.spec.input_size

    @property
    def preprocess(self) -> PreprocessConfig:
        """How an image becomes this model's input (from the card)."""
        return self.card.preprocess

    @property
    def task(self) -> str:
        """The model's task (``TASKS``)."""
        return self.card.task

    @property
    def name(self) -> str:
        """A short name: the file's stem, or the architecture for a model held only in memory."""
        return self.path.stem if self.path is not None else self.model.spec.architecture

    def input_tensor(self, pixels: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """The model input (1, 1, S, S) for a grey [0, 1] (H, W) image, and the [0, 1] square it shows.

        The card's preprocessing, then normalisation with the spec's mean and std, exactly as the
        training images were prepared; on the model's device and in its dtype.

        Raises:
            ValueError: ``pixels`` is not a non-empty 2-D float image in [0, 1].
        """
        spec = self.model.spec
        u8 = prepare(pixels, self.preprocess)
        x = torch.from_numpy(normalise(u8, NormStats(spec.mean, spec.std, 0)))[None, None]
        param = next(self.model.parameters())
        return x.to(device=param.device, dtype=param.dtype), to_unit(u8)

    def fingerprint(self) -> str | None:
        """The weights file's content fingerprint (None for a model held only in memory)."""
        return None if self.path is None else file_fingerprint(self.path)

    def probabilities(self, logits: torch.Tensor | np.ndarray) -> np.ndarray:
        """Per-label probabilities of logits (..., n_labels), calibrated as the card says (float64)."""
        if isinstance(logits, torch.Tensor):
            logits = logits.detach().to(device="cpu", dtype=torch.float64).numpy()
        return calibrated_probabilities(self.card, logits)


def as_checkpoint(model: Checkpoint | CXRModel | CXRDetector) -> Checkpoint:
    """A Checkpoint as it is, or a bare model wrapped with a default card (preprocessing at its size)."""
    if isinstance(model, Checkpoint):
        return model
    if isinstance(model, CXRDetector):
        return Checkpoint(model, ModelCard.for_spec(model.spec, task="detect"))
    if not isinstance(model, CXRModel):
        raise TypeError(f"expected a Checkpoint, a CXRModel or a CXRDetector, got {type(model).__name__}")
    return Checkpoint(model, ModelCard.for_spec(model.spec))


def _package_versions() -> dict[str, str]:
    """Versions of the packages that produced the checkpoint."""
    return {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "cxrcore": cxrcore.__version__,
    }


def _full_card(
    model: CXRModel | CXRDetector, card: ModelCard | Mapping[str, Any] | None, half: bool
) -> ModelCard:
    """The caller's card (typed, or a partial mapping) with the fields set from the model and environment.

    Raises:
        CheckpointError: the card does not fit the model (e.g. a preprocessing input size that differs
            from the model's) or a value cannot be read.
    """
    try:
        if isinstance(card, ModelCard):
            typed = card.replace(spec=model.spec)
        else:
            given = dict(card or {})
            ignored = sorted(set(given) & set(GENERATED))
            if ignored:
                logger.warning("model card keys %s are set by save_checkpoint; given values ignored", ignored)
            given = {k: v for k, v in given.items() if k not in GENERATED}
            given.setdefault("task", "detect" if isinstance(model, CXRDetector) else "classify")
            typed = card_from_dict({**given, "spec": model.spec.to_dict()})
    except CardError as exc:
        raise CheckpointError(f"cannot write model card: {exc}") from exc
    return typed.replace(
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        package_versions=_package_versions(),
        num_parameters=sum(p.numel() for p in model.parameters()),
        weights_dtype="float16" if half else "float32",
    )


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
    path: str | Path,
    model: CXRModel | CXRDetector,
    card: ModelCard | Mapping[str, Any] | None = None,
    *,
    half: bool = False,
) -> Path:
    """Write ``<path>.safetensors`` (weights + embedded card) and ``<path>.json`` atomically.

    ``card`` is a ``ModelCard`` or a mapping of its fields (read like a stored card, so older key
    names are accepted); its spec is always the model's. ``half`` stores floating-point weights as
    float16 (half the file; loading turns them back into float32), for checkpoints shipped with the
    project.

    Returns:
        The path of the weights file.

    Raises:
        CheckpointError: the card does not fit the model, or a card value cannot be written as JSON.
        WriteError: the files could not be written (full disk, read-only folder); the previous
            checkpoint at ``path``, if any, is unchanged and loadable.
    """
    full = _full_card(model, card, half)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    weights = write_tensors(path, tensors, full.to_dict())
    logger.info("saved checkpoint %s (%s)", weights, model.spec.architecture)
    return weights


def write_tensors(
    path: str | Path,
    tensors: dict[str, torch.Tensor],
    card: dict[str, Any],
    card_key: str = CARD_METADATA_KEY,
) -> Path:
    """Write the weights file (the card under ``card_key``) and its sidecar atomically (module docstring).

    The lung segmenter's checkpoints are written through here too, under a key of their own.
    """
    weights = weights_path(path)
    sidecar = weights.with_suffix(CARD_SUFFIX)
    try:
        text = jsonsafe.dumps(card)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot write model card: {exc}") from exc
    temps: list[Path] = []
    try:
        weights.parent.mkdir(parents=True, exist_ok=True)
        tmp_weights = temp_beside(weights)
        temps.append(tmp_weights)
        safetensors.torch.save_file(tensors, str(tmp_weights), metadata={card_key: text})
        os.chmod(tmp_weights, target_mode(weights))  # the writer may have re-created the file
        _fsync(tmp_weights)
        sidecar_card = json.loads(text)
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
    except (OSError, safetensors.SafetensorError) as exc:  # a full disk, a size limit, a read-only folder
        raise write_error(weights, exc) from exc
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    _fsync_dir(weights.parent)
    return weights


def read_tensors(weights: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file exactly as stored (no float conversion)."""
    try:
        return safetensors.torch.load_file(str(weights), device="cpu")
    except Exception as exc:  # corrupt data section
        raise CheckpointError(f"cannot read weights from {str(weights)!r} ({exc})") from exc


def migrate_checkpoint(path: str | Path) -> bool:
    """Rewrite a checkpoint's card in the current version, weights untouched; False if it already was.

    The tensors are copied as stored (no float conversion), and the card keeps its creation time and
    package versions: they describe how the weights were made.
    """
    weights = weights_path(path)
    stored = raw_card(weights)
    card = open_card(weights)
    if stored == card.to_dict():
        return False
    write_tensors(weights, read_tensors(weights), card.to_dict())
    logger.info("migrated the model card of %s to version %s", weights, card.to_dict()["format_version"])
    return True


def write_card(path: str | Path, card: ModelCard) -> Path:
    """Replace a checkpoint's model card (e.g. with a calibration), the tensors copied as stored.

    The card must describe the same model (spec and weights dtype); like ``migrate_checkpoint`` it keeps
    the creation time and package versions it is given.

    Raises:
        CheckpointError: the card's spec or weights dtype differs from the stored one.
    """
    weights = weights_path(path)
    current = open_card(weights)
    if card.spec != current.spec or card.weights_dtype != current.weights_dtype:
        raise CheckpointError(f"the new card of {str(weights)!r} describes another model than its weights")
    write_tensors(weights, read_tensors(weights), card.to_dict())
    logger.info("rewrote the model card of %s", weights)
    return weights


def _model_from_card(card: ModelCard, weights: Path) -> CXRModel | CXRDetector:
    """An uninitialised (meta-device) model built from the card's spec."""
    try:
        with torch.device("meta"):
            return create_from_spec(card.spec)
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


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild a model from a checkpoint and load its weights strictly (the model in eval mode).

    Raises:
        CheckpointError: missing file, corrupt or foreign file, missing card, unknown architecture,
            or weights that do not fit the architecture (naming the first mismatching key).
    """
    weights = weights_path(path)
    card = open_card(weights)
    model = _model_from_card(card, weights)
    tensors = read_tensors(weights)
    if card.weights_dtype == "float16":
        tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    check_state_dict(model.state_dict(), tensors, repr(str(weights)))
    model.load_state_dict(tensors, strict=True, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        # State not saved in state_dict (non-persistent buffers) needs a real initialisation.
        model = create_from_spec(model.spec)
        model.load_state_dict(tensors, strict=True)
    return Checkpoint(model.to(map_location).eval(), card, weights)
