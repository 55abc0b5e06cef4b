"""Models: the registry (``create_model`` / ``list_models``), the built-in zoo and checkpoints.

Every model is a ``CXRModel``: ``forward`` returns logits, ``spec`` (a frozen ``ModelSpec``) carries
architecture, label names, input size, normalisation statistics and the classifier / CAM layer
names. Grey images enter every model as one channel.
"""

from __future__ import annotations

from cxrcore.models import zoo  # noqa: F401  (registers the built-in entries)
from cxrcore.models.checkpoint import (
    CheckpointError,
    describe_checkpoint,
    file_fingerprint,
    load_checkpoint,
    read_card,
    save_checkpoint,
)
from cxrcore.models.external import import_state_dict
from cxrcore.models.registry import (
    CXRModel,
    create_from_spec,
    create_model,
    list_models,
    model_info,
    register_model,
)
from cxrcore.models.spec import POOLINGS, ModelSpec

__all__ = [
    "POOLINGS",
    "CXRModel",
    "CheckpointError",
    "ModelSpec",
    "create_from_spec",
    "create_model",
    "describe_checkpoint",
    "file_fingerprint",
    "import_state_dict",
    "list_models",
    "load_checkpoint",
    "model_info",
    "read_card",
    "register_model",
    "save_checkpoint",
]
