"""Importing foreign weights: torchvision-layout state dicts, CheXNet checkpoints, plain safetensors.

``import_state_dict`` reads ``.safetensors`` files with safetensors and anything else with
``torch.load(..., weights_only=True)``, which restores tensors and plain containers only and refuses
any other pickled object. It accepts a bare state dict or one wrapped under ``"state_dict"`` /
``"model"`` (CheXNet checkpoints store ``{"epoch": ..., "state_dict": {...}, ...}``) and normalises
key names onto the registered network:

- wrapper prefixes are stripped: ``module.`` (DataParallel), ``densenet121.`` (CheXNet's wrapper
  module), ``model.`` and ``net.`` (a ``CXRModel``'s own state dict);
- old torchvision DenseNet names ``norm.1`` / ``relu.1`` / ``conv.1`` / ``norm.2`` / ``conv.2`` become
  ``norm1`` / ``conv1`` / ``norm2`` / ``conv2`` (timm's DenseNet uses torchvision's module names);
- a classifier stored as ``Sequential(Linear, Sigmoid)`` (``classifier.0.weight``) maps onto the plain
  final linear layer; its logits are kept, the sigmoid is ``CXRModel.probabilities``.

Three-channel (RGB) first-layer weights are summed over the colour axis to fit our one-channel input,
which gives exactly the output the RGB network gives for the grey image repeated to three channels
with the same normalised value in each channel. Networks trained with per-channel ImageNet statistics
(CheXNet) saw slightly different values per channel; their closest single-channel statistics on the
[0, 1] scale are mean 0.449 and std 0.226 (pass them as ``mean`` / ``std``).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from cxrcore.labels import NIH14_LABELS
from cxrcore.models.checkpoint import CheckpointError, check_state_dict
from cxrcore.models.registry import CXRModel, create_model, model_info

logger = logging.getLogger(__name__)

WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model")
PREFIXES: tuple[str, ...] = ("module.", "densenet121.", "model.", "net.")
_LEGACY_DENSE = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)
_NIH14_OUTPUTS = len(NIH14_LABELS)


def _read(source: str | Path) -> Any:
    """The object stored in a weights file, loaded without unpickling arbitrary objects."""
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        try:
            return safetensors.torch.load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{str(path)!r} is not a readable safetensors file ({exc})") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for refused objects, others for corrupt files
        raise CheckpointError(
            f"refused to load {str(path)!r}: only tensors and plain containers are read "
            f"(torch.load weights_only=True) ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from exc


def read_weights_bytes(name: str, data: bytes) -> Any:
    """The object in an uploaded weights file (kept in memory), read as safely as ``_read`` reads files."""
    if name.endswith(".safetensors"):
        try:
            return safetensors.torch.load(data)
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{name!r} is not a readable safetensors file ({exc})") from exc
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for refused objects, others for corrupt files
        raise CheckpointError(
            f"refused to load {name!r}: only tensors and plain containers are read "
            f"(torch.load weights_only=True) ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from exc


def import_weights_file(
    name: str,
    data: bytes,
    target_dir: str | Path,
    architecture: str = "densenet121",
    labels: Sequence[str] | None = None,
) -> Path:
    """Import uploaded foreign weights as a checkpoint of ours (``<target_dir>/<file stem>.safetensors``)."""
    from cxrcore.models.checkpoint import save_checkpoint

    model = import_state_dict(read_weights_bytes(name, data), architecture, labels)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(name).stem)[:60] or "imported"
    card = {
        "imported_from": name,
        "note": "foreign weights; input normalisation assumed (mean 0.5, std 0.25)",
    }
    return save_checkpoint(Path(target_dir) / f"{stem}.safetensors", model, card)


def _unwrap(obj: Any, where: str) -> dict[str, Tensor]:
    """The state dict inside a checkpoint object (bare, or under a wrapper key)."""
    while isinstance(obj, Mapping) and not all(isinstance(v, Tensor) for v in obj.values()):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"no state dict of tensors found in {where} (top level: {keys}); "
            f"expected a mapping of tensors, possibly under one of {list(WRAPPER_KEYS)}"
        )
    return {str(k): v for k, v in obj.items()}


def _normalise_key(key: str) -> str:
    """A key without wrapper prefixes and with old DenseNet layer names modernised."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    match = _LEGACY_DENSE.match(key)
    if match:
        key = "".join(match.groups())
    return key


def _normalise(state: Mapping[str, Tensor], classifier: str) -> dict[str, Tensor]:
    """Normalise every key; map a ``Sequential(Linear, ...)`` classifier onto the plain linear layer."""
    out = {_normalise_key(k): v for k, v in state.items()}
    if f"{classifier}.weight" not in out and f"{classifier}.0.weight" in out:
        inner = f"{classifier}.0."
        out = {(f"{classifier}.{k[len(inner) :]}" if k.startswith(inner) else k): v for k, v in out.items()}
    return out


def _adapt_channels(state: dict[str, Tensor], target: Mapping[str, Tensor]) -> None:
    """Sum RGB first-layer convolution weights over the colour axis where the target takes one channel."""
    for key, tensor in state.items():
        want = target.get(key)
        if want is None or tensor.ndim != 4 or want.ndim != 4 or tensor.shape == want.shape:
            continue
        same_other = tensor.shape[0] == want.shape[0] and tensor.shape[2:] == want.shape[2:]
        if same_other and want.shape[1] == 1 and tensor.shape[1] > 1:
            state[key] = tensor.sum(dim=1, keepdim=True)
            logger.info("summed %s over %d input channels for grey input", key, tensor.shape[1])


def _choose_labels(source_outputs: int | None, labels: Sequence[str] | None) -> tuple[tuple[str, ...], bool]:
    """Label names for the imported model, and whether the source classifier can be kept."""
    if labels is None:
        if source_outputs is None or source_outputs == _NIH14_OUTPUTS:
            names = NIH14_LABELS
        else:
            names = tuple(f"label_{i}" for i in range(source_outputs))
    else:
        names = tuple(labels)
    return names, source_outputs == len(names)


def import_state_dict(
    path_or_state: str | Path | Mapping[str, Any],
    architecture: str = "densenet121",
    labels: Sequence[str] | None = None,
    *,
    mean: float = 0.5,
    std: float = 0.25,
) -> CXRModel:
    """Build a one-channel ``architecture`` model and load foreign weights into it (eval mode).

    The source classifier is kept when its output count equals the number of labels (labels default
    to the NIH ChestX-ray14 findings for 14 outputs); otherwise the head is reset and a warning logged.

    Raises:
        CheckpointError: unreadable or refused file, no state dict inside, or keys and shapes that
            do not fit the architecture (naming the missing and unexpected keys).
    """
    where = "the given state dict" if isinstance(path_or_state, Mapping) else repr(str(path_or_state))
    raw = path_or_state if isinstance(path_or_state, Mapping) else _read(path_or_state)
    classifier = model_info(architecture)["classifier"].removeprefix("net.")
    state = _normalise(_unwrap(raw, where), classifier)
    source_weight = state.get(f"{classifier}.weight")
    source_outputs = None if source_weight is None else int(source_weight.shape[0])
    names, keep_head = _choose_labels(source_outputs, labels)
    model = create_model(architecture, labels=names, in_chans=1, mean=mean, std=std)
    target = model.net.state_dict()
    if not keep_head:
        logger.warning(
            "source classifier has %s outputs, model has %d labels: classifier reset to random weights",
            source_outputs,
            len(names),
        )
        state = {k: v for k, v in state.items() if not k.startswith(f"{classifier}.")}
        state.update({k: v for k, v in target.items() if k.startswith(f"{classifier}.")})
    for key, value in target.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value  # absent from checkpoints written by old PyTorch versions
    _adapt_channels(state, target)
    check_state_dict(target, state, f"{where} (as {architecture})")
    model.net.load_state_dict(state, strict=True)
    logger.info("imported %d tensors from %s into %s", len(state), where, architecture)
    return model.eval()
