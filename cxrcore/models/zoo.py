"""The built-in model entries: timm backbones, the compact custom CNN and a tiny test model.

Every entry is randomly initialised and takes one grey channel by default (see
``cxrcore.models.spec``). Pretrained weights are never downloaded; foreign weights come in through
``cxrcore.models.external.import_state_dict``.

Where each entry's last spatial feature map comes from (the CAM layer) and what its head does:

| entry | CAM layer | classifier | head |
|---|---|---|---|
| densenet121 | net.features (ends with norm5 + ReLU) | net.classifier | avg |
| resnet18 / resnet50 | net.layer4 | net.fc | avg |
| efficientnet_b0 | net.bn2 (BatchNorm + SiLU after conv_head) | net.classifier | avg |
| mobilenetv3_large_100 | net.blocks | net.classifier | flatten: pool -> 1x1 conv -> act -> linear |
| vgg16_bn | net.features | net.head.fc | flatten: 7x7 conv MLP -> pool -> linear |
| custom_cnn | net.features (conv5 ReLU) | net.classifier | flatten: pool -> FC 4096 x2 -> linear |
| tiny | net.features | net.classifier | avg |
| localiser | net.features (stride 8, 16x16 at 128 px) | net.classifier | avg |
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cxrcore.models.registry import Builder, register_model

if TYPE_CHECKING:
    from torch import nn

# Default input sizes of the entries; the networks' modules read theirs from here.
TIMM_INPUT_SIZE = 224
TINY_INPUT_SIZE = 64
CUSTOM_CNN_INPUT_SIZE = 227
LOCALISER_INPUT_SIZE = 128

# registry name -> (classifier, cam layer, pooling, summary); names relative to the timm network.
_TIMM_ENTRIES: dict[str, tuple[str, str, str, str]] = {
    "densenet121": ("classifier", "features", "avg", "DenseNet-121, the CheXNet backbone"),
    "resnet18": ("fc", "layer4", "avg", "ResNet-18"),
    "resnet50": ("fc", "layer4", "avg", "ResNet-50"),
    "efficientnet_b0": ("classifier", "bn2", "avg", "EfficientNet-B0"),
    "mobilenetv3_large_100": ("classifier", "blocks", "flatten", "MobileNetV3-Large 1.0"),
    "vgg16_bn": ("head.fc", "features", "flatten", "VGG-16 with batch norm"),
}


def _timm_builder(timm_name: str, classifier: str, cam_layer: str, pooling: str) -> Builder:
    """A registry builder for one timm architecture (random initialisation only)."""

    def build(
        num_labels: int, in_chans: int, *, input_size: int, **kwargs: Any
    ) -> tuple[nn.Module, str, str, str]:
        import timm

        if kwargs.pop("pretrained", False):
            raise ValueError(
                "pretrained weights are never downloaded; import them with "
                "cxrcore.models.external.import_state_dict"
            )
        net = timm.create_model(
            timm_name, pretrained=False, num_classes=num_labels, in_chans=in_chans, **kwargs
        )
        return net, classifier, cam_layer, pooling

    build.__name__ = f"build_{timm_name}"
    return build


for _name, (_classifier, _cam_layer, _pooling, _summary) in _TIMM_ENTRIES.items():
    register_model(_name, input_size=TIMM_INPUT_SIZE, summary=_summary)(
        _timm_builder(_name, _classifier, _cam_layer, _pooling)
    )


@register_model(
    "custom_cnn",
    input_size=CUSTOM_CNN_INPUT_SIZE,
    summary="Compact custom CNN (5 conv + 3 FC, LRN, dropout 0.5) of the salient-activations study",
)
def build_custom_cnn(
    num_labels: int, in_chans: int, *, input_size: int = CUSTOM_CNN_INPUT_SIZE, conv_init: str = "kaiming"
) -> tuple[nn.Module, str, str, str]:
    """The compact custom CNN, sized for ``input_size`` (``conv_init``: see cxrcore.models.custom_cnn)."""
    from cxrcore.models.custom_cnn import CompactCNN

    net = CompactCNN(num_labels, in_chans=in_chans, input_size=input_size, conv_init=conv_init)
    return net, "classifier", "features", "flatten"


@register_model("tiny", input_size=TINY_INPUT_SIZE, summary="Tiny 3-conv network for tests and demos")
def build_tiny(
    num_labels: int, in_chans: int, *, input_size: int = TINY_INPUT_SIZE
) -> tuple[nn.Module, str, str, str]:
    """The tiny test network (any input size of at least 8 px)."""
    from cxrcore.models.localiser import TinyNet

    return TinyNet(num_labels, in_chans=in_chans), "classifier", "features", "avg"


@register_model(
    "localiser",
    input_size=LOCALISER_INPUT_SIZE,
    summary="Compact stride-8 CNN with a local view: fine CAM/CRM maps (16x16 at 128 px)",
)
def build_localiser(
    num_labels: int, in_chans: int, *, input_size: int = LOCALISER_INPUT_SIZE
) -> tuple[nn.Module, str, str, str]:
    """The localising CNN (any input size of at least 16 px; the map is 1/8 of it)."""
    from cxrcore.models import localiser

    if input_size < localiser.MIN_INPUT_SIZE:
        raise ValueError(
            f"localiser input_size must be at least {localiser.MIN_INPUT_SIZE} px, got {input_size}"
        )
    return localiser.LocalisingCNN(num_labels, in_chans=in_chans), "classifier", "features", "avg"
