"""A compact CNN built for fine, local class maps: stride 8, a 62 px view, a global-average-pool head.

The standard backbones end at stride 32, so at the small inputs a CPU trains quickly (64-128 px) their
last feature map is 2x2 to 4x4 cells and every class map of it is a blur over a quarter of the image;
and their receptive fields cover the whole image, so the evidence for a lesion can surface in any
cell. This network keeps a 16x16 map at 128 px (8 px per cell) and a receptive field of 62 px, about
a few times a nodule's width: a cell responds to what lies around it, so with the average-pool head
the class activation map and the CRM show where the evidence is. (A version with dilated
convolutions, 142 px of view, classified as well but spread a nodule's evidence over the whole map.)

Layout (``w`` = widths, one grey channel in)::

    conv 3x3 w0 -> max-pool 2                      (1/2)
    conv 3x3 w1 -> max-pool 2                      (1/4)
    conv 3x3 w2, conv 3x3 w2 -> max-pool 2         (1/8)
    conv 3x3 w3, conv 3x3 w3                       (1/8)   <- CAM layer: net.features
    global average pool -> linear

Every convolution is followed by batch norm and ReLU and pads by one, so a cell's receptive field is
centred on its own pixels; downsampling is 2x2 max-pooling, which keeps cell centres where bilinear
upsampling of the map puts them (a 3x3 stride-2 convolution would shift them by half an input pixel
per level, half a cell after three levels).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

from torch import Tensor, nn

MIN_INPUT_SIZE = 16
TINY_GROUPS = 4  # group norm: per-image statistics, so results never depend on the batch
WIDTHS = (32, 64, 128, 128)


def _conv(c_in: int, c_out: int) -> list[tuple[str, nn.Module]]:
    return [
        ("conv", nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)),
        ("norm", nn.BatchNorm2d(c_out)),
        ("act", nn.ReLU()),  # not in place: a hook on the norm layer sees its own output
    ]


class AvgPoolNet(nn.Module):
    """A network of ``features`` (a spatial map) then global average pooling and ``classifier`` (linear).

    Subclasses set the two modules; this gives the ``forward_features`` / ``forward_head`` interface
    the registry expects, with ``logits == classifier(features.mean((2, 3)))`` exactly.
    """

    features: nn.Module
    classifier: nn.Linear

    def forward_features(self, x: Tensor) -> Tensor:
        """The last spatial feature map."""
        return self.features(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits from global-average-pooled features."""
        return self.classifier(features.mean((2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, num_labels)."""
        return self.forward_head(self.forward_features(x))


class LocalisingCNN(AvgPoolNet):
    """Stride-8 convolutions with a 62 px receptive field and a global-average-pool + linear head."""

    def __init__(self, num_labels: int, in_chans: int = 1) -> None:
        super().__init__()
        w0, w1, w2, w3 = WIDTHS
        plan: list[tuple[str, int, int]] = [  # (name, in, out); "pool" entries downsample by 2
            ("c1", in_chans, w0),
            ("pool1", 0, 0),
            ("c2", w0, w1),
            ("pool2", 0, 0),
            ("c3a", w1, w2),
            ("c3b", w2, w2),
            ("pool3", 0, 0),
            ("c4a", w2, w3),
            ("c4b", w3, w3),
        ]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for name, c_in, c_out in plan:
            if name.startswith("pool"):
                layers[name] = nn.MaxPool2d(2)
                continue
            for part, module in _conv(c_in, c_out):
                layers[f"{name}_{part}"] = module
        self.features = nn.Sequential(layers)
        self.classifier = nn.Linear(w3, num_labels)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


class TinyNet(AvgPoolNet):
    """Three stride-2 convolutions (16-32-64 channels) with group norm, average pooling and a linear layer.

    Group norm instead of batch norm keeps every output independent of the rest of the batch, so a
    run split across processes matches a one-process run and training and evaluation behave alike.
    """

    def __init__(self, num_labels: int, in_chans: int = 1) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        widths = (in_chans, 16, 32, 64)
        for i, (c_in, c_out) in enumerate(itertools.pairwise(widths), start=1):
            layers[f"conv{i}"] = nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=False)
            layers[f"norm{i}"] = nn.GroupNorm(TINY_GROUPS, c_out)
            layers[f"act{i}"] = nn.ReLU()
        self.features = nn.Sequential(layers)
        self.classifier = nn.Linear(widths[-1], num_labels)
