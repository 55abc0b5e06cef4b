"""The model registry: names, summaries and builders of every model, listed without loading PyTorch.

A builder registered with ``@register_model`` returns ``(net, classifier, cam_layer, pooling)`` where
``classifier`` and ``cam_layer`` are dotted module names relative to ``net``; the registry wraps the
network in a ``CXRModel`` whose spec names them relative to the wrapper (``"net." + name``). The
network must provide ``forward_features(x)`` (last spatial feature map) and ``forward_head(features)``
(logits), as timm models do. ``create_model`` is the only way the rest of the engine builds a model.
Builders import PyTorch when called, so listing the entries (a page's model picker) stays light;
``CXRModel`` lives in ``cxrcore.models.network`` and is served from here on first use.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cxrcore.hints import unknown_choice
from cxrcore.models.model_card import TASKS
from cxrcore.models.spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn

    from cxrcore.models.detector import CXRDetector
    from cxrcore.models.network import CXRModel

logger = logging.getLogger(__name__)

# A builder: (num_labels, in_chans, *, input_size, **kwargs) -> (net, classifier, cam_layer, pooling).
Builder = Callable[..., "tuple[nn.Module, str, str, str]"]

# Label count used by ``model_info`` parameter counts (the NIH ChestX-ray14 findings).
INFO_NUM_LABELS = 14


@dataclass(frozen=True)
class _Entry:
    """One registered architecture."""

    name: str
    builder: Builder
    input_size: int
    summary: str
    task: str = "classify"


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    name: str, *, input_size: int, summary: str, task: str = "classify"
) -> Callable[[Builder], Builder]:
    """Decorator registering a builder under ``name`` with its default input size, summary and task.

    A classifier's builder returns ``(net, classifier, cam_layer, pooling)``; a detector's
    (``task="detect"``) returns the torchvision detector, which ``create_model`` wraps in a
    ``CXRDetector`` (see ``cxrcore.models.detector``).
    """
    if task not in TASKS:
        raise ValueError(unknown_choice("task", task, TASKS))

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = _Entry(name, builder, int(input_size), summary, task)
        return builder

    return decorate


def _ensure_builtins() -> None:
    """Register the built-in entries (names and builders only: PyTorch loads when a model is built)."""
    from cxrcore.models import zoo  # noqa: F401  (its entries register themselves on import)

    if not any(entry.task == "detect" for entry in _REGISTRY.values()):
        from cxrcore.models.detector_names import register_detectors

        register_detectors()


def _lookup(name: str) -> _Entry:
    """The registry entry for ``name``; ValueError listing close matches and valid names otherwise."""
    _ensure_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    names = sorted(_REGISTRY)
    raise ValueError(unknown_choice("model", name, names, cutoff=0.5))


def list_models(task: str | None = None) -> list[str]:
    """Names of the registered models, sorted: every one, or those of one task (``TASKS``)."""
    _ensure_builtins()
    if task is not None and task not in TASKS:
        raise ValueError(unknown_choice("task", task, TASKS))
    return sorted(name for name, entry in _REGISTRY.items() if task is None or entry.task == task)


def model_task(name: str) -> str:
    """The task of a registered model: "classify" or "detect"."""
    return _lookup(name).task


def _resolve_labels(num_labels: int | None, labels: Sequence[str] | None) -> tuple[str, ...]:
    """Label names from either a count or explicit names."""
    if labels is None and num_labels is None:
        raise ValueError("give num_labels or labels to define the model's outputs")
    if labels is None:
        if int(num_labels) < 1:  # type: ignore[arg-type]
            raise ValueError(f"num_labels must be at least 1, got {num_labels!r}")
        return tuple(f"label_{i}" for i in range(int(num_labels)))  # type: ignore[arg-type]
    if isinstance(labels, str):
        raise ValueError(f"labels must be a sequence of names, not the string {labels!r}")
    if num_labels is not None and int(num_labels) != len(labels):
        raise ValueError(f"num_labels={num_labels} disagrees with {len(labels)} label names")
    return tuple(labels)


def create_model(
    name: str,
    *,
    num_labels: int | None = None,
    labels: Sequence[str] | None = None,
    in_chans: int = 1,
    input_size: int | None = None,
    mean: float = 0.5,
    std: float = 0.25,
    **kwargs: Any,
) -> CXRModel | CXRDetector:
    """Build a registered model (a classifier, or a ``CXRDetector`` for a detector) with random weights.

    Labels default to ``("label_0", ...)`` when only ``num_labels`` is given. Extra keyword arguments
    go to the builder (e.g. ``drop_rate`` for timm models); they are not recorded in the spec, so they
    must not change the shapes of the weights.

    Raises:
        ValueError: unknown name (with close matches), or an inconsistent label definition.
    """
    from cxrcore.models.network import CXRModel

    entry = _lookup(name)
    names = _resolve_labels(num_labels, labels)
    size = entry.input_size if input_size is None else int(input_size)
    if entry.task == "detect":
        from cxrcore.models.detector import CXRDetector

        net = entry.builder(num_labels=len(names), in_chans=int(in_chans), input_size=size, **kwargs)
        spec = ModelSpec(
            architecture=name, labels=names, input_size=size, in_chans=int(in_chans), mean=mean, std=std
        )
        return CXRDetector(net, spec)
    net, classifier, cam_layer, pooling = entry.builder(
        num_labels=len(names), in_chans=int(in_chans), input_size=size, **kwargs
    )
    spec = ModelSpec(
        architecture=name,
        labels=names,
        input_size=size,
        in_chans=int(in_chans),
        mean=mean,
        std=std,
        classifier=f"net.{classifier}",
        cam_layer=f"net.{cam_layer}",
        pooling=pooling,
    )
    return CXRModel(net, spec)


def create_from_spec(spec: ModelSpec) -> CXRModel | CXRDetector:
    """Rebuild a model (random weights) from a spec, e.g. one read from a checkpoint's card."""
    model = create_model(
        spec.architecture,
        labels=spec.labels,
        in_chans=spec.in_chans,
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
    )
    if model.spec != spec:
        logger.warning(
            "spec layer names differ from the current %s build (%s / %s / %s); using the current ones",
            spec.architecture,
            spec.classifier,
            spec.cam_layer,
            spec.pooling,
        )
    return model


@functools.cache
def _count_parameters(name: str) -> tuple[int, str, str, str]:
    """Parameter count at 1 channel and the default size, plus layer names, built without memory."""
    import torch

    with torch.device("meta"):
        model = create_model(name, num_labels=INFO_NUM_LABELS, in_chans=1)
    count = sum(p.numel() for p in model.parameters())
    return count, model.spec.pooling, model.spec.classifier, model.spec.cam_layer


def model_info(name: str) -> dict[str, Any]:
    """Name, summary, default input size, pooling, layer names and parameter count (14 labels, 1 channel)."""
    entry = _lookup(name)
    count, pooling, classifier, cam_layer = _count_parameters(name)
    return {
        "name": entry.name,
        "summary": entry.summary,
        "input_size": entry.input_size,
        "task": entry.task,
        "pooling": pooling,
        "classifier": classifier,
        "cam_layer": cam_layer,
        "num_parameters": count,
    }


def __getattr__(name: str) -> Any:
    """``CXRModel`` (from ``cxrcore.models.network``), imported on first use: listing needs no PyTorch."""
    if name == "CXRModel":
        from cxrcore.models.network import CXRModel

        return CXRModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
