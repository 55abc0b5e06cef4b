"""Lesion detectors: torchvision's Faster R-CNN and Mask R-CNN with an FPN on the registry's backbones.

A detector entry is named ``<kind>_<backbone>`` (``faster_rcnn_resnet18``, ``mask_rcnn_densenet121``,
...) and is registered in the one model registry with ``task="detect"``; ``create_model`` builds it
like any classifier and wraps it in a ``CXRDetector``, whose ``spec`` names the classes (``labels``),
the input size and the training images' mean / std.

The trunk is the timm network the classifier of the same backbone uses (``features_only``), so the
trunk weights of any classifier checkpoint of the project load into it by name
(``load_trunk_weights``): chest X-ray classifiers serve as a modality-specific start for detection.
A feature pyramid (torchvision's ``FeaturePyramidNetwork``) runs on the trunk's stride 8, 16 and 32
maps plus a max-pooled stride 64 level; it is narrower than torchvision's defaults (128 channels, a
256-wide box head), so detectors train on a CPU.

Sizes follow the input: an image is shrunk (never enlarged past its own size by ``fit_image``) so that
its longer side is ``input_size`` before it enters the network; anchors are ``input_size / 16`` to
``input_size / 2`` across the four levels, two sizes per level, three aspect ratios. Every setting
that shapes the weights is fixed by the entry's name, so a checkpoint rebuilds from its spec alone.

Class indices: torchvision reserves 0 for the background, so class ``labels[i]`` is index ``i + 1``
inside the network; ``CXRDetector`` converts both ways.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import timm
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from cxrcore.models.detector_names import (  # noqa: F401  (the vocabulary, re-exported)
    BOX_FORMAT,
    DEFAULT_KIND,
    DETECTOR_BACKBONES,
    DETECTOR_INPUT_SIZE,
    DETECTOR_KINDS,
    KIND_NAMES,
    MIN_INPUT_SIZE,
    parse_name,
)
from cxrcore.models.spec import ModelSpec

logger = logging.getLogger(__name__)

FPN_CHANNELS = 128
BOX_HEAD_WIDTH = 256
TRUNK_LEVELS = (2, 3, 4)  # timm feature indices at strides 8, 16, 32
ASPECT_RATIOS = (0.5, 1.0, 2.0)
# Keep low-scoring boxes: FROC and AP sweep the score; the pages filter with a slider.
SCORE_FLOOR = 0.01
MAX_DETECTIONS = 50


class TrunkFPN(nn.Module):
    """A timm trunk's stride 8-32 feature maps through a feature pyramid, plus a pooled level."""

    def __init__(self, backbone: str, in_chans: int) -> None:
        super().__init__()
        self.body = timm.create_model(
            backbone, pretrained=False, features_only=True, out_indices=TRUNK_LEVELS, in_chans=in_chans
        )
        self.fpn = FeaturePyramidNetwork(
            self.body.feature_info.channels(), FPN_CHANNELS, extra_blocks=LastLevelMaxPool()
        )
        self.out_channels = FPN_CHANNELS

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """Pyramid levels "0" (stride 8) to "2" (stride 32) and "pool" (stride 64)."""
        maps = self.body(x)
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))


def anchor_sizes(input_size: int) -> tuple[tuple[float, ...], ...]:
    """Two anchor sizes per pyramid level, from input_size / 16 up to about input_size / 1.4."""
    base = input_size / 16
    return tuple((base * 2**i, base * 2**i * 1.41) for i in range(len(TRUNK_LEVELS) + 1))


def build_detector(kind: str, backbone: str, num_classes: int, in_chans: int, input_size: int) -> nn.Module:
    """A randomly initialised torchvision detector of ``kind`` on a ``backbone`` trunk with FPN."""
    if kind not in DETECTOR_KINDS:
        raise ValueError(f"unknown detector kind {kind!r}; valid options: {', '.join(DETECTOR_KINDS)}")
    if input_size < MIN_INPUT_SIZE:
        raise ValueError(f"detector input_size must be at least {MIN_INPUT_SIZE} px, got {input_size}")
    trunk = TrunkFPN(backbone, in_chans)
    levels = [str(i) for i in range(len(TRUNK_LEVELS))]
    anchors = AnchorGenerator(anchor_sizes(input_size), (ASPECT_RATIOS,) * (len(TRUNK_LEVELS) + 1))
    common: dict[str, Any] = {
        "min_size": input_size,
        "max_size": input_size,
        "image_mean": [0.5] * in_chans,  # replaced by the spec's statistics (CXRDetector.set_norm)
        "image_std": [0.25] * in_chans,
        "rpn_anchor_generator": anchors,
        "rpn_pre_nms_top_n_train": 1000,
        "rpn_post_nms_top_n_train": 500,
        "rpn_pre_nms_top_n_test": 500,
        "rpn_post_nms_top_n_test": 200,
        "box_roi_pool": MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
        "box_head": TwoMLPHead(FPN_CHANNELS * 7 * 7, BOX_HEAD_WIDTH),
        "box_predictor": FastRCNNPredictor(BOX_HEAD_WIDTH, num_classes + 1),
        "box_score_thresh": SCORE_FLOOR,
        "box_detections_per_img": MAX_DETECTIONS,
        "box_batch_size_per_image": 128,
    }
    if kind == "faster_rcnn":
        return FasterRCNN(trunk, **common)
    return MaskRCNN(
        trunk,
        mask_roi_pool=MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(FPN_CHANNELS, [64, 64, 64, 64], 1),
        mask_predictor=MaskRCNNPredictor(64, 64, num_classes + 1),
        **common,
    )


class CXRDetector(nn.Module):
    """A detector with its spec: images in, scored boxes per class out (see the module docstring).

    ``forward(images, targets)`` takes a list of (in_chans, H, W) float tensors in [0, 1] (already
    fitted with ``fit_image``); in training mode with targets it returns torchvision's loss dict, in
    eval mode a list of ``{"boxes" (n, 4) x1 y1 x2 y2, "labels" (n,) class indices, "scores" (n,)}``
    in the coordinates of the images given, with class indices counted from 0 (``spec.labels``).
    """

    task = "detect"

    def __init__(self, net: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.net = net
        self.spec = spec
        self.set_norm(spec.mean, spec.std)

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names, one per detectable finding."""
        return self.spec.labels

    @property
    def kind(self) -> str:
        """``faster_rcnn`` or ``mask_rcnn``."""
        return parse_name(self.spec.architecture)[0]

    @property
    def backbone(self) -> str:
        """The trunk's registry name."""
        return parse_name(self.spec.architecture)[1]

    def set_norm(self, mean: float, std: float) -> None:
        """Normalise inputs with these [0, 1]-scale statistics (the training images')."""
        self.spec = self.spec.with_norm(mean, std)
        self.net.transform.image_mean = [float(mean)] * self.spec.in_chans
        self.net.transform.image_std = [float(std)] * self.spec.in_chans

    def forward(self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None = None) -> Any:
        """Losses (training with targets) or detections with 0-based class indices (eval)."""
        for image in images:
            if image.ndim != 3 or image.shape[0] != self.spec.in_chans or not image.is_floating_point():
                raise ValueError(
                    f"{self.spec.architecture} takes (in_chans={self.spec.in_chans}, H, W) float images "
                    f"in [0, 1]; got {tuple(image.shape)} {image.dtype}"
                )
        if targets is not None:
            targets = [{**t, "labels": t["labels"] + 1} for t in targets]
        out = self.net(list(images), targets)
        if self.training:
            return out
        return [{**o, "labels": o["labels"] - 1} for o in out]

    def trunk(self) -> nn.Module:
        """The timm feature extractor (the part a classifier checkpoint can initialise)."""
        return self.net.backbone.body

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """The trunk's parameters (frozen by "head only" training)."""
        yield from self.trunk().parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter outside the trunk: pyramid, proposal network, box (and mask) heads."""
        trunk = {id(p) for p in self.trunk().parameters()}
        for p in self.parameters():
            if id(p) not in trunk:
                yield p

    def extra_repr(self) -> str:
        """Architecture and class count in the module's repr."""
        return f"architecture={self.spec.architecture!r}, classes={len(self.spec.labels)}"


def load_trunk_weights(detector: CXRDetector, classifier_state: dict[str, Tensor]) -> int:
    """Copy a classifier's trunk weights (its ``net.*`` tensors) into the detector; returns how many.

    timm's feature extractor keeps the classifier network's parameter names, except that the first
    level of nesting is joined with "_" for some networks (DenseNet's ``features.conv0`` becomes
    ``features_conv0``), so names are compared with "_" and "." treated alike.

    Raises:
        ValueError: fewer than nine in ten of the trunk's tensors found a tensor of the same name and shape.
    """

    def key(name: str) -> str:
        return name.replace("_", ".")

    source = {key(k.removeprefix("net.")): v for k, v in classifier_state.items()}
    trunk = detector.trunk()
    state = trunk.state_dict()
    loaded = {
        k: source[key(k)] for k, v in state.items() if key(k) in source and source[key(k)].shape == v.shape
    }
    if len(loaded) < 0.9 * len(state):
        raise ValueError(
            f"the classifier's weights fit only {len(loaded)} of {len(state)} trunk tensors of "
            f"{detector.spec.architecture}: use a classifier of the same backbone ({detector.backbone})"
        )
    trunk.load_state_dict({**state, **loaded})
    logger.info("initialised %d of %d trunk tensors from a classifier", len(loaded), len(state))
    return len(loaded)


def is_detector(model: nn.Module) -> bool:
    """Whether a model is a detector (rather than a classifier)."""
    return isinstance(model, CXRDetector)
