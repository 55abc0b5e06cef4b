"""The uniform model interface every registered classifier has: ``CXRModel``, a network with its spec.

``cxrcore.models.registry`` builds these (``create_model``); this module holds the PyTorch side, so the
registry can list and describe models without loading PyTorch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from cxrcore.models.spec import ModelSpec

logger = logging.getLogger(__name__)


class CXRModel(nn.Module):
    """A classifier with its spec: ``forward`` returns logits, features and head are separately reachable.

    Input is a normalised float tensor of shape (B, spec.in_chans, H, W); see ``cxrcore.models.spec``
    for the one-channel grey convention.
    """

    spec: ModelSpec
    net: nn.Module

    def __init__(self, net: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.net = net
        self.spec = spec
        self._check_layers()

    def _check_layers(self) -> None:
        """Raise ValueError unless the spec's classifier and CAM layer names resolve in the network."""
        for field, name in (("classifier", self.spec.classifier), ("cam_layer", self.spec.cam_layer)):
            try:
                self.get_submodule(name)
            except AttributeError as exc:
                arch = self.spec.architecture
                raise ValueError(f"spec.{field} {name!r} is not a module of {arch}") from exc
        if not isinstance(self.get_submodule(self.spec.classifier), nn.Linear):
            raise ValueError(f"spec.classifier {self.spec.classifier!r} is not an nn.Linear")

    @property
    def labels(self) -> tuple[str, ...]:
        """Output names, one per logit."""
        return self.spec.labels

    def _check_input(self, x: Tensor) -> None:
        """Raise ValueError unless ``x`` is a floating (B, in_chans, H, W) tensor."""
        if not isinstance(x, Tensor):
            raise ValueError(f"model input must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.spec.in_chans:
            raise ValueError(
                f"{self.spec.architecture} expects input of shape (B, {self.spec.in_chans}, H, W) "
                f"(grey images are one channel, never repeated to three), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(f"model input must be a floating-point tensor (normalised), got {x.dtype}")

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape (B, num_labels) for a normalised batch."""
        return self.forward_head(self.forward_features(x))

    def forward_features(self, x: Tensor) -> Tensor:
        """The last spatial feature map (B, C, h, w), identical to the output of ``spec.cam_layer``."""
        self._check_input(x)
        return self.net.forward_features(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits from the feature map returned by ``forward_features``."""
        return self.net.forward_head(features)

    def classifier_module(self) -> nn.Linear:
        """The final linear layer."""
        return self.get_submodule(self.spec.classifier)  # type: ignore[return-value]

    def cam_module(self) -> nn.Module:
        """The module whose output is the last spatial feature map."""
        return self.get_submodule(self.spec.cam_layer)

    def reset_head(self, labels: Sequence[str]) -> None:
        """Replace the final linear layer with a freshly initialised one for a new label set."""
        new_spec = self.spec.with_labels(labels)
        old = self.classifier_module()
        new = nn.Linear(
            old.in_features,
            new_spec.num_labels,
            bias=old.bias is not None,
            device=old.weight.device,
            dtype=old.weight.dtype,
        )
        init = getattr(self.net, "init_classifier", None)
        if callable(init):
            init(new)
        parent, _, child = self.spec.classifier.rpartition(".")
        setattr(self.get_submodule(parent), child, new)
        if hasattr(self.net, "num_classes"):
            self.net.num_classes = new_spec.num_labels
        logger.info(
            "reset %s head: %d -> %d labels",
            new_spec.architecture,
            self.spec.num_labels,
            len(new_spec.labels),
        )
        self.spec = new_spec

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the final linear layer (the part ``reset_head`` replaces)."""
        yield from self.classifier_module().parameters()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter outside the final linear layer."""
        head = {id(p) for p in self.classifier_module().parameters()}
        for p in self.parameters():
            if id(p) not in head:
                yield p

    @staticmethod
    def probabilities(logits: Tensor) -> Tensor:
        """Uncalibrated per-label probabilities (independent sigmoids) of a bare model.

        A checkpoint's probabilities come from ``Checkpoint.probabilities``, which applies the
        calibration stored in its card (``cxrcore.models.readout``).
        """
        return torch.sigmoid(logits)

    def extra_repr(self) -> str:
        """Architecture and label count in the module's repr."""
        return f"architecture={self.spec.architecture!r}, num_labels={self.spec.num_labels}"
