"""The compact custom CNN of the salient-network-activations study (5 convolutions, 3 dense layers).

Layout for a 227 px grey input:

    conv1 96@7x7 stride 2 -> ReLU -> LRN -> max-pool 3x3/2
    conv2 128@3x3 (pad 1) -> ReLU -> LRN -> max-pool 3x3/2
    conv3 256@3x3, conv4 256@3x3, conv5 256@3x3 (pad 1, each followed by ReLU)   <- CAM layer
    max-pool 3x3/2 -> flatten -> FC 4096 -> ReLU -> dropout 0.5 -> FC 4096 -> ReLU -> dropout 0.5 -> FC n

Local response normalisation uses the AlexNet constants (size 5, alpha 1e-4, beta 0.75, k 2).
Dense-layer weights are drawn from a Gaussian with standard deviation 0.01 and biases are 0, as in
the study. Convolution weights use He (Kaiming) initialisation by default: with the study's std 0.01
for the convolutions too (``conv_init="paper"``), each convolution shrinks the signal about fivefold,
so from random initialisation the network's outputs do not depend on the image and training stays at
chance (measured: validation AUROC 0.500 for 5 epochs on the phantoms). ``conv_init="paper"`` keeps
the study's initialisation for comparison.
The first dense layer's width follows from the input size, fixed at construction: 227 px gives a
13x13x256 map (about 194 M parameters in all); the smallest input is ``MIN_INPUT_SIZE`` (35 px),
which tests use at small sizes such as 64 px. The network only accepts the size it was built for.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from cxrcore.models.zoo import CUSTOM_CNN_INPUT_SIZE as DEFAULT_INPUT_SIZE

MIN_INPUT_SIZE = 35
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0
INIT_STD = 0.01
DROPOUT = 0.5
FC_WIDTH = 4096
CONV_WIDTHS = (96, 128, 256, 256, 256)
CONV_INITS = ("kaiming", "paper")


def _pooled(side: int) -> int:
    """Side after a 3x3 stride-2 max-pool without padding."""
    return (side - 3) // 2 + 1


def feature_map_side(input_size: int) -> int:
    """Side of the map after the last max-pool, for a square input of ``input_size`` pixels."""
    conv1 = (input_size - 7) // 2 + 1
    return _pooled(_pooled(_pooled(conv1)))


class CompactCNN(nn.Module):
    """Five convolutions with LRN and max-pooling, then three dense layers; returns logits."""

    def __init__(
        self,
        num_labels: int,
        in_chans: int = 1,
        input_size: int = DEFAULT_INPUT_SIZE,
        conv_init: str = "kaiming",
    ) -> None:
        super().__init__()
        if conv_init not in CONV_INITS:
            raise ValueError(f"unknown conv_init {conv_init!r}; valid options: {', '.join(CONV_INITS)}")
        if input_size < MIN_INPUT_SIZE:
            raise ValueError(f"custom CNN input_size must be at least {MIN_INPUT_SIZE} px, got {input_size}")
        self.input_size = int(input_size)
        c1, c2, c3, c4, c5 = CONV_WIDTHS
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_chans, c1, kernel_size=7, stride=2),
                relu1=nn.ReLU(),
                lrn1=nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K),
                pool1=nn.MaxPool2d(3, 2),
                conv2=nn.Conv2d(c1, c2, kernel_size=3, padding=1),
                relu2=nn.ReLU(),
                lrn2=nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K),
                pool2=nn.MaxPool2d(3, 2),
                conv3=nn.Conv2d(c2, c3, kernel_size=3, padding=1),
                relu3=nn.ReLU(),
                conv4=nn.Conv2d(c3, c4, kernel_size=3, padding=1),
                relu4=nn.ReLU(),
                conv5=nn.Conv2d(c4, c5, kernel_size=3, padding=1),
                relu5=nn.ReLU(),
            )
        )
        side = feature_map_side(self.input_size)
        self.pre_logits = nn.Sequential(
            OrderedDict(
                pool5=nn.MaxPool2d(3, 2),
                flatten=nn.Flatten(1),
                fc6=nn.Linear(c5 * side * side, FC_WIDTH),
                relu6=nn.ReLU(),
                drop6=nn.Dropout(DROPOUT),
                fc7=nn.Linear(FC_WIDTH, FC_WIDTH),
                relu7=nn.ReLU(),
                drop7=nn.Dropout(DROPOUT),
            )
        )
        self.classifier = nn.Linear(FC_WIDTH, num_labels)
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and conv_init == "kaiming":
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d | nn.Linear):
                self.init_classifier(module)

    @staticmethod
    def init_classifier(layer: nn.Module) -> None:
        """Gaussian weights (std 0.01) and zero bias, for any convolution or linear layer."""
        nn.init.normal_(layer.weight, mean=0.0, std=INIT_STD)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """The conv5 ReLU output (B, 256, h, w), before the last max-pool."""
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"custom CNN was built for {self.input_size}x{self.input_size} input, "
                f"got {x.shape[-2]}x{x.shape[-1]}; build it with input_size={x.shape[-1]} or resize"
            )
        return self.features(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits from the conv5 feature map."""
        return self.classifier(self.pre_logits(features))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, num_labels)."""
        return self.forward_head(self.forward_features(x))
