"""Tests for the model registry, the zoo entries and the uniform CXRModel interface."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from cxrcore.models import (
    POOLINGS,
    CXRModel,
    ModelSpec,
    create_from_spec,
    create_model,
    list_models,
    model_info,
    register_model,
)
from cxrcore.models.custom_cnn import MIN_INPUT_SIZE, feature_map_side

EXPECTED_MODELS = {
    "custom_cnn",
    "densenet121",
    "efficientnet_b0",
    "localiser",
    "mobilenetv3_large_100",
    "resnet18",
    "resnet50",
    "tiny",
    "vgg16_bn",
}
EXPECTED_POOLING = {
    "custom_cnn": "flatten",
    "densenet121": "avg",
    "efficientnet_b0": "avg",
    "localiser": "avg",
    "mobilenetv3_large_100": "flatten",
    "resnet18": "avg",
    "resnet50": "avg",
    "tiny": "avg",
    "vgg16_bn": "flatten",
}
# Building VGG16-BN (138 M parameters) takes about 3 s on a CPU: its cases run with the slow tests.
HEAVY_MODELS = {"vgg16_bn"}
MODEL_CASES = [
    pytest.param(n, marks=pytest.mark.slow) if n in HEAVY_MODELS else n for n in sorted(EXPECTED_MODELS)
]
SIZE = 64  # small input for every model; the custom CNN is built for it (its minimum is 35 px)
LABELS = ("a", "b", "c")
_BUILT: dict[str, CXRModel] = {}


def built(name: str) -> CXRModel:
    """One eval-mode 3-label model per architecture, shared by the read-only tests of this module."""
    if name not in _BUILT:
        torch.manual_seed(0)
        size = SIZE if name == "custom_cnn" else None
        _BUILT[name] = create_model(name, labels=LABELS, input_size=size).eval()
    return _BUILT[name]


def grey_batch(n: int = 2, size: int = SIZE) -> torch.Tensor:
    """A normalised one-channel batch."""
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(1))


def test_list_models_contains_every_entry() -> None:
    assert set(list_models(task="classify")) == EXPECTED_MODELS
    assert list_models() == sorted(list_models())


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'; did you mean 'resnet18'") as info:
        create_model("resnet19", num_labels=2)
    assert "valid options:" in str(info.value) and "densenet121" in str(info.value)
    with pytest.raises(ValueError, match="unknown model 'zzz'"):
        model_info("zzz")


def test_register_model_refuses_duplicate_name() -> None:
    with pytest.raises(ValueError, match="'tiny' is already registered"):
        register_model("tiny", input_size=64, summary="again")(lambda **kw: None)


def test_pretrained_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="never downloaded"):
        create_model("resnet18", num_labels=2, pretrained=True)


@pytest.mark.parametrize(
    ("name", "count"),
    [("tiny", 24_318), ("resnet18", 11_177_422), ("densenet121", 6_961_934), ("custom_cnn", 195_642_958)],
)
def test_model_info_reports_fields_and_parameter_count(name: str, count: int) -> None:
    info = model_info(name)
    assert info["num_parameters"] == count
    assert info["pooling"] == EXPECTED_POOLING[name]
    assert info["input_size"] == {"tiny": 64, "custom_cnn": 227}.get(name, 224)
    assert info["summary"]


def test_model_info_count_matches_a_real_build() -> None:
    model = create_model("tiny", num_labels=14)
    assert model_info("tiny")["num_parameters"] == sum(p.numel() for p in model.parameters())


def test_labels_from_count_or_names() -> None:
    assert create_model("tiny", num_labels=2).spec.labels == ("label_0", "label_1")
    assert create_model("tiny", labels=["x", "y", "z"]).spec.labels == ("x", "y", "z")
    with pytest.raises(ValueError, match="give num_labels or labels"):
        create_model("tiny")
    with pytest.raises(ValueError, match="num_labels=2 disagrees with 3 label names"):
        create_model("tiny", num_labels=2, labels=["x", "y", "z"])
    with pytest.raises(ValueError, match="unique"):
        create_model("tiny", labels=["x", "x"])


@pytest.mark.parametrize("name", MODEL_CASES)
def test_every_model_takes_one_channel_and_returns_logits(name: str) -> None:
    model = built(name)
    assert model.spec.in_chans == 1 and model.spec.architecture == name
    assert model.spec.pooling == EXPECTED_POOLING[name]
    with torch.no_grad():
        logits = model(grey_batch())
    assert logits.shape == (2, len(LABELS))
    assert torch.isfinite(logits).all()
    assert isinstance(model.classifier_module(), nn.Linear)
    assert model.classifier_module().out_features == len(LABELS)


@pytest.mark.parametrize("name", MODEL_CASES)
def test_features_head_and_cam_layer_agree_with_forward(name: str) -> None:
    model = built(name)
    x = grey_batch()
    captured: list[torch.Tensor] = []
    handle = model.get_submodule(model.spec.cam_layer).register_forward_hook(
        lambda _m, _i, out: captured.append(out.detach().clone())
    )
    try:
        with torch.no_grad():
            features = model.forward_features(x)
            logits = model(x)
    finally:
        handle.remove()
    assert features.ndim == 4 and features.shape[0] == 2
    assert len(captured) == 2
    torch.testing.assert_close(captured[0], features, atol=0, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(features), logits, atol=1e-5, rtol=0)
    if model.spec.pooling == "avg":
        linear = model.classifier_module()
        with torch.no_grad():
            torch.testing.assert_close(linear(features.mean((2, 3))), logits, atol=1e-5, rtol=0)


def test_flatten_heads_are_not_linear_on_average_pooled_features() -> None:
    model = built("mobilenetv3_large_100")
    x = grey_batch()
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape[1] != model.classifier_module().in_features


def test_input_is_validated_at_the_boundary() -> None:
    model = built("tiny")
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 1, H, W\).*got \(2, 3, 64, 64\)"):
        model(torch.zeros(2, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match=r"got \(64, 64\)"):
        model(torch.zeros(SIZE, SIZE))
    with pytest.raises(ValueError, match="floating-point"):
        model(torch.zeros(1, 1, SIZE, SIZE, dtype=torch.uint8))


def test_spec_is_frozen_and_round_trips() -> None:
    spec = built("resnet18").spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.labels = ("x",)  # type: ignore[misc]
    assert spec.classifier == "net.fc" and spec.cam_layer == "net.layer4"
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["labels"] == list(LABELS)
    assert spec.with_norm(0.4, 0.2).mean == 0.4 and spec.with_norm(0.4, 0.2).std == 0.2
    assert spec.with_labels(["q"]).labels == ("q",)


def test_spec_rejects_bad_values_naming_valid_options() -> None:
    base = built("tiny").spec.to_dict()
    with pytest.raises(ValueError, match=r"unknown ModelSpec key\(s\) \['colour'\]; valid keys: arch"):
        ModelSpec.from_dict({**base, "colour": 1})
    with pytest.raises(ValueError, match="unknown pooling 'max'; valid options: avg, flatten"):
        ModelSpec.from_dict({**base, "pooling": "max"})
    with pytest.raises(ValueError, match="std positive"):
        ModelSpec.from_dict({**base, "std": 0.0})
    assert POOLINGS == ("avg", "flatten")


def test_create_from_spec_rebuilds_the_same_spec() -> None:
    model = create_model("custom_cnn", labels=LABELS, input_size=48, mean=0.3, std=0.2)
    rebuilt = create_from_spec(model.spec)
    assert rebuilt.spec == model.spec
    assert rebuilt.net.pre_logits.fc6.in_features == model.net.pre_logits.fc6.in_features


@pytest.mark.parametrize("name", ["tiny", "resnet18", "mobilenetv3_large_100", "custom_cnn"])
def test_reset_head_changes_labels_and_keeps_backbone(name: str) -> None:
    model = create_model(name, num_labels=14, input_size=SIZE if name == "custom_cnn" else None).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_head(["p", "q"])
    assert model.spec.labels == ("p", "q")
    assert model.classifier_module().out_features == 2
    prefix = model.spec.classifier + "."
    after = model.state_dict()
    assert set(after) == set(before)
    for key, value in before.items():
        if not key.startswith(prefix):
            assert torch.equal(after[key], value), key
    with torch.no_grad():
        assert model(grey_batch(1)).shape == (1, 2)
    head = {id(p) for p in model.head_parameters()}
    backbone = {id(p) for p in model.backbone_parameters()}
    assert head == {id(p) for p in model.classifier_module().parameters()}
    assert not head & backbone and head | backbone == {id(p) for p in model.parameters()}


class _NestedHead(nn.Module):
    """A network whose final linear layer sits inside a submodule (like timm's VGG ``head.fc``)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(1, 4, 3)
        self.head = nn.Sequential()
        self.head.add_module("fc", nn.Linear(4, 5))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head.fc(features.mean((2, 3)))


def test_reset_head_replaces_a_nested_classifier() -> None:
    spec = ModelSpec("nested", tuple("abcde"), 16, classifier="net.head.fc", cam_layer="net.body")
    model = CXRModel(_NestedHead(), spec)
    body = model.net.body.weight.detach().clone()
    model.reset_head(["only"])
    assert model.net.head.fc.out_features == 1 and model.classifier_module() is model.net.head.fc
    assert torch.equal(model.net.body.weight, body)
    assert model(torch.zeros(1, 1, 16, 16)).shape == (1, 1)
    with pytest.raises(ValueError, match=r"spec\.cam_layer 'net\.tail' is not a module of nested"):
        CXRModel(_NestedHead(), dataclasses.replace(spec, cam_layer="net.tail"))
    with pytest.raises(ValueError, match=r"is not an nn\.Linear"):
        CXRModel(_NestedHead(), dataclasses.replace(spec, classifier="net.body"))


@pytest.mark.slow  # builds VGG16-BN
def test_vgg_classifier_is_the_nested_head_linear() -> None:
    model = built("vgg16_bn")
    assert model.spec.classifier == "net.head.fc"
    assert model.classifier_module() is model.net.head.fc


def test_tiny_outputs_do_not_depend_on_the_rest_of_the_batch() -> None:
    model = create_model("tiny", num_labels=2).train()
    x = grey_batch(4)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:1], model(x[:1]), atol=1e-6, rtol=0)


def test_probabilities_are_the_sigmoid_of_logits() -> None:
    logits = torch.tensor([[-2.0, 0.0, 3.0]])
    torch.testing.assert_close(CXRModel.probabilities(logits), torch.sigmoid(logits))
    assert CXRModel.probabilities(logits)[0, 1].item() == 0.5


def test_custom_cnn_layout_matches_the_paper() -> None:
    net = built("custom_cnn").net
    f = net.features
    assert (f.conv1.out_channels, f.conv1.kernel_size, f.conv1.stride) == (96, (7, 7), (2, 2))
    assert [f.get_submodule(f"conv{i}").out_channels for i in range(2, 6)] == [128, 256, 256, 256]
    assert all(f.get_submodule(f"conv{i}").kernel_size == (3, 3) for i in range(2, 6))
    for lrn in (f.lrn1, f.lrn2):
        assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, 2)] * 3
    head = net.pre_logits
    assert (head.fc6.out_features, head.fc7.out_features) == (4096, 4096)
    assert head.drop6.p == 0.5 and head.drop7.p == 0.5
    assert net.classifier.in_features == 4096
    assert abs(head.fc7.weight.std().item() - 0.01) < 2e-4
    assert head.fc7.bias.abs().max().item() == 0.0 and f.conv1.bias.abs().max().item() == 0.0


def test_custom_cnn_flatten_size_follows_input_size() -> None:
    assert feature_map_side(227) == 13 and feature_map_side(MIN_INPUT_SIZE) == 1
    with torch.device("meta"):
        full = create_model("custom_cnn", num_labels=14)
    assert full.spec.input_size == 227
    assert full.net.pre_logits.fc6.in_features == 256 * 13 * 13
    with pytest.raises(ValueError, match="at least 35 px, got 34"):
        create_model("custom_cnn", num_labels=2, input_size=34)
    with pytest.raises(ValueError, match="built for 64x64 input, got 72x72"):
        built("custom_cnn")(grey_batch(1, size=72))


def test_custom_cnn_default_init_keeps_the_image_signal_and_paper_init_loses_it() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 1, 64, 64)
    spread = {}
    for init in ("kaiming", "paper"):
        model = create_model("custom_cnn", num_labels=2, input_size=64, conv_init=init).eval()
        with torch.no_grad():
            spread[init] = model.forward_features(x).std(dim=0).mean().item()
    assert spread["kaiming"] > 100 * spread["paper"]
    with pytest.raises(ValueError, match="valid options: kaiming, paper"):
        create_model("custom_cnn", num_labels=2, input_size=64, conv_init="xavier")


def test_localiser_keeps_a_fine_map_centred_where_upsampling_puts_it() -> None:
    model = built("localiser")
    assert model.spec.input_size == 128
    assert model.forward_features(grey_batch(1, 128)).shape[-2:] == (16, 16)
    # The receptive field of cell (row 30, col 12) of a large input: 62 px wide, centred on the
    # cell's own 8x8 pixels, i.e. at ((i + 0.5) * 8) in continuous coordinates, as bilinear
    # upsampling of the map assumes.
    x = torch.randn(1, 1, 512, 512, generator=torch.Generator().manual_seed(0)).requires_grad_()
    model.forward_features(x)[0, :, 30, 12].sum().backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1) > 0).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(0) > 0).flatten()
    assert int(rows[-1] - rows[0] + 1) == int(cols[-1] - cols[0] + 1) == 62
    assert (int(rows[0] + rows[-1] + 1) / 2, int(cols[0] + cols[-1] + 1) / 2) == (30.5 * 8, 12.5 * 8)
