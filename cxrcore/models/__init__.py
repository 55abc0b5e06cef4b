"""Models: the registry (``create_model`` / ``list_models``), the built-in zoo and checkpoints.

Every model is a ``CXRModel``: ``forward`` returns logits, ``spec`` (a frozen ``ModelSpec``) carries
architecture, label names, input size, normalisation statistics and the classifier / CAM layer
names. Grey images enter every model as one channel.

Names are imported on first use, so ``cxrcore.models.card`` (model cards, no PyTorch) can be used
without loading PyTorch and timm; the built-in entries register themselves when the registry is
first asked for a model.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CheckpointError": "cxrcore.models.card",
    "describe_checkpoint": "cxrcore.models.card",
    "file_fingerprint": "cxrcore.models.card",
    "read_card": "cxrcore.models.card",
    "weights_fingerprint": "cxrcore.models.card",
    "CARD_VERSION": "cxrcore.models.model_card",
    "TASKS": "cxrcore.models.model_card",
    "ModelCard": "cxrcore.models.model_card",
    "Checkpoint": "cxrcore.models.checkpoint",
    "as_checkpoint": "cxrcore.models.checkpoint",
    "load_checkpoint": "cxrcore.models.checkpoint",
    "migrate_checkpoint": "cxrcore.models.checkpoint",
    "save_checkpoint": "cxrcore.models.checkpoint",
    "write_card": "cxrcore.models.checkpoint",
    "import_state_dict": "cxrcore.models.external",
    "CXRModel": "cxrcore.models.registry",
    "create_from_spec": "cxrcore.models.registry",
    "create_model": "cxrcore.models.registry",
    "list_models": "cxrcore.models.registry",
    "model_info": "cxrcore.models.registry",
    "register_model": "cxrcore.models.registry",
    "POOLINGS": "cxrcore.models.spec",
    "ModelSpec": "cxrcore.models.spec",
}

__all__ = sorted(_EXPORTS)

# Registers the bundled lung segmenter as the "segmenter" lung crop (cheap: no PyTorch until used).
from cxrcore.models import segmenter_card as _segmenter_card  # noqa: E402, F401


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cxrcore.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
