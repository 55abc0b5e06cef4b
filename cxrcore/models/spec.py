"""The frozen description every model carries: architecture, labels, input size, normalisation, layers.

Grey input, one way for every model: images enter the network as ONE channel (``in_chans=1``). timm
adapts the stem convolution of its backbones to a single channel at construction, and weights
imported from three-channel (RGB) networks have their first convolution summed over the colour axis
(see ``cxrcore.models.external``), which is exactly equivalent to feeding the grey image repeated to
three channels. An image is never repeated to three channels anywhere: training, evaluation and
upload all feed the same (B, 1, H, W) tensor, normalised with ``(x - mean) / std`` on the [0, 1]
scale using the statistics stored in the spec.

``pooling`` says what the head does with the last spatial feature map (the output of ``cam_layer``):

- ``"avg"``: global average pooling followed by the final linear layer and nothing else, so
  ``logits == classifier(features.mean((2, 3)))`` holds exactly and CAM needs no gradients;
- ``"flatten"``: any other head (flattened fully connected layers, or pooling followed by further
  layers before the classifier); class maps then need gradient methods such as Grad-CAM.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

POOLINGS: tuple[str, ...] = ("avg", "flatten")


@dataclass(frozen=True)
class ModelSpec:
    """Metadata that travels with a model and is enough to rebuild it from the registry.

    Attributes:
        architecture: registry name, e.g. ``"resnet18"``.
        labels: output names, one per logit, in output order.
        input_size: side of the square input in pixels.
        in_chans: input channels; 1 for every built-in model (see the module docstring).
        mean: normalisation mean on the [0, 1] scale (training sets it from the training split).
        std: normalisation standard deviation on the [0, 1] scale.
        classifier: dotted name of the final ``nn.Linear``, relative to the ``CXRModel``.
        cam_layer: dotted name of the module whose output is the last spatial feature map.
        pooling: ``"avg"`` for a global-average-pool + linear head, ``"flatten"`` otherwise.
    """

    architecture: str
    labels: tuple[str, ...]
    input_size: int
    in_chans: int = 1
    mean: float = 0.5
    std: float = 0.25
    classifier: str = ""
    cam_layer: str = ""
    pooling: str = "avg"

    def __post_init__(self) -> None:
        """Normalise types and reject values no model can use."""
        if isinstance(self.labels, str) or not isinstance(self.labels, Sequence):
            raise ValueError(f"labels must be a sequence of names, got {self.labels!r}")
        labels = tuple(str(label) for label in self.labels)
        if not labels:
            raise ValueError("labels must name at least one output")
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"labels must be unique; repeated: {duplicates}")
        if not isinstance(self.architecture, str) or not self.architecture:
            raise ValueError(f"architecture must be a non-empty string, got {self.architecture!r}")
        if int(self.input_size) < 1 or int(self.in_chans) < 1:
            raise ValueError(
                f"input_size and in_chans must be positive, got {self.input_size!r} and {self.in_chans!r}"
            )
        mean, std = float(self.mean), float(self.std)
        if not math.isfinite(mean) or not math.isfinite(std) or std <= 0:
            raise ValueError(f"mean must be finite and std positive, got {self.mean!r} and {self.std!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; valid options: {', '.join(POOLINGS)}")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "input_size", int(self.input_size))
        object.__setattr__(self, "in_chans", int(self.in_chans))
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def num_labels(self) -> int:
        """Number of outputs (logits) of the model."""
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict (labels as a list)."""
        d = dataclasses.asdict(self)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        """Rebuild a spec from ``to_dict`` output; unknown keys raise ValueError naming the valid ones."""
        if not isinstance(d, Mapping):
            raise ValueError(f"ModelSpec.from_dict expects a mapping, got {type(d).__name__}")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"unknown ModelSpec key(s) {unknown}; valid keys: {', '.join(valid)}")
        missing = [f.name for f in fields(cls) if f.default is dataclasses.MISSING and f.name not in d]
        if missing:
            raise ValueError(f"ModelSpec is missing required key(s) {missing}")
        return cls(**d)

    def with_labels(self, labels: Sequence[str]) -> ModelSpec:
        """A copy of the spec with another label set."""
        return dataclasses.replace(self, labels=tuple(labels))

    def with_norm(self, mean: float, std: float) -> ModelSpec:
        """A copy of the spec with other normalisation statistics."""
        return dataclasses.replace(self, mean=float(mean), std=float(std))
