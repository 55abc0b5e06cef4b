"""The lesion detectors' vocabulary: kinds, backbones, sizes and registry names, without PyTorch.

Pages and the CLI offer these choices before any detector is built, so they import this module and
stay light; ``cxrcore.models.detector`` builds the networks from the same names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

DETECTOR_KINDS: tuple[str, ...] = ("faster_rcnn", "mask_rcnn")
DEFAULT_KIND = "faster_rcnn"
KIND_NAMES = {"faster_rcnn": "Faster R-CNN", "mask_rcnn": "Mask R-CNN (box-filled masks)"}
# Backbone -> one-line summary; each is the timm network of the classifier entry of the same name.
DETECTOR_BACKBONES: dict[str, str] = {
    "resnet18": "ResNet-18",
    "resnet50": "ResNet-50",
    "mobilenetv3_large_100": "MobileNetV3-Large 1.0",
    "densenet121": "DenseNet-121",
}
DETECTOR_INPUT_SIZE = 512
MIN_INPUT_SIZE = 64
BOX_FORMAT = "xywh pixels of the original image, (x, y) the top-left corner"


def detector_name(kind: str, backbone: str) -> str:
    """The registry name of a detector, e.g. ``faster_rcnn_resnet18``."""
    return f"{kind}_{backbone}"


def parse_name(name: str) -> tuple[str, str]:
    """(kind, backbone) of a detector's registry name."""
    for kind in DETECTOR_KINDS:
        if name.startswith(kind + "_") and name[len(kind) + 1 :] in DETECTOR_BACKBONES:
            return kind, name[len(kind) + 1 :]
    raise ValueError(f"{name!r} is not a detector name (<kind>_<backbone>)")


def register_detectors() -> None:
    """Register every (kind, backbone) detector in the model registry (built on first use)."""
    from cxrcore.models.registry import register_model

    for kind in DETECTOR_KINDS:
        for backbone, summary in DETECTOR_BACKBONES.items():

            def build(
                num_labels: int, in_chans: int, *, input_size: int, _k: str = kind, _b: str = backbone
            ) -> nn.Module:
                from cxrcore.models.detector import build_detector

                return build_detector(_k, _b, num_labels, in_chans, input_size)

            register_model(
                detector_name(kind, backbone),
                input_size=DETECTOR_INPUT_SIZE,
                summary=f"{KIND_NAMES[kind]} with FPN on {summary}",
                task="detect",
            )(build)
