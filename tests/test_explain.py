"""Tests for the explanation engine: CAM, the Grad-CAM family, CRM, ensembles, overlays and internals."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from cxrcore.explain.cam import METHODS, ExplainError, resolve_layer
from cxrcore.explain.engine import (
    DEFAULT_SMOOTH,
    explain,
    explain_ensemble,
    model_input,
    normalise_map,
    smooth_maps,
)
from cxrcore.explain.heatmap import heatmap_overlay, to_jpeg_bytes, to_png_bytes
from cxrcore.explain.internals import channel_activations, first_layer_filters
from cxrcore.models import CXRModel, create_model
from cxrcore.preprocess import NormStats, PreprocessConfig, normalise, prepare, to_unit

LABELS = ("Effusion", "Nodule", "Mass")
TINY_SIZE = 32


def _model(name: str = "tiny", size: int = TINY_SIZE, seed: int = 0) -> CXRModel:
    torch.manual_seed(seed)
    return create_model(name, labels=LABELS, input_size=size)


def _image(size: int = TINY_SIZE, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(seed))


def _all_hooks(model: nn.Module) -> list[object]:
    """Every module-level hook registered anywhere in the model."""
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return [hook for module in model.modules() for name in names for hook in getattr(module, name).values()]


def _brute_force_crm(model: CXRModel, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-label and all-node CRM by zeroing each location in turn and re-running the head."""
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        base = model.forward_head(features)[0]
        _, _, h, w = features.shape
        per_label = torch.zeros(len(base), h, w)
        for row in range(h):
            for col in range(w):
                zeroed = features.clone()
                zeroed[:, :, row, col] = 0
                per_label[:, row, col] = (base - model.forward_head(zeroed)[0]) ** 2
    return per_label.numpy(), per_label.sum(0).numpy()


def _package_map(model: CXRModel, method: str, x: torch.Tensor, index: int) -> np.ndarray:
    """The normalised map pytorch_grad_cam itself returns for one explicit logit target."""
    cam = METHODS[method].package_class(model, target_layers=[model.cam_module()])
    try:
        return cam(x, targets=[ClassifierOutputTarget(index)])[0]
    finally:
        cam.activations_and_grads.release()


def test_cam_is_closed_form_from_the_prediction_pass() -> None:
    model = _model()
    x = _image()
    forwards: list[int] = []
    handle = model.net.features.register_forward_hook(lambda *_: forwards.append(1))
    try:
        result = explain(model, x, methods=("cam", "crm", "crm_label"))
    finally:
        handle.remove()
    assert len(forwards) == 1  # probabilities, CAM and CRM for every label from one forward pass
    with torch.no_grad():
        features = model.forward_features(x)[0]
        logits = model(x)[0]
    weight, bias = model.net.classifier.weight, model.net.classifier.bias
    for c, label in enumerate(LABELS):
        cam = result.get("cam", label)
        expected = sum(weight[c, k].item() * features[k].numpy() for k in range(features.shape[0]))
        np.testing.assert_allclose(cam.lowres, expected, atol=1e-5)
        # the spatial mean of the CAM plus the bias is the logit
        assert cam.lowres.mean() + bias[c].item() == pytest.approx(logits[c].item(), abs=1e-5)
        assert result.probabilities[label] == pytest.approx(torch.sigmoid(logits[c]).item(), abs=1e-6)
        assert cam.algorithm == "cam" and cam.raw.shape == (TINY_SIZE, TINY_SIZE)
        assert cam.no_positive_evidence == (cam.lowres.max() <= 0)
        assert cam.display.max() == (0.0 if cam.no_positive_evidence else pytest.approx(1.0))
    assert not all(result.get("cam", label).no_positive_evidence for label in LABELS)


@pytest.mark.parametrize(("name", "size"), [("tiny", TINY_SIZE), ("resnet18", 96)])
def test_gradcam_at_last_layer_is_relu_cam_and_matches_package(name: str, size: int) -> None:
    model = _model(name, size)
    x = _image(size, seed=1)
    unsmoothed = explain(model, x, methods=("cam", "gradcam"), smooth=0)
    smoothed = explain(model, x, methods=("cam", "gradcam"))  # the default smoothing
    h, w = unsmoothed.get("cam", LABELS[0]).lowres.shape
    for index, label in enumerate(LABELS):
        for result in (unsmoothed, smoothed):  # smoothing is linear: the equality holds either way
            cam, grad = result.get("cam", label), result.get("gradcam", label)
            # d logit / d f[k, l, m] = w[c, k] / (h w), so Grad-CAM = ReLU(CAM) / (h w)
            np.testing.assert_allclose(grad.raw * (h * w), cam.raw, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(grad.display, cam.display, atol=1e-4)
        package = _package_map(model, "gradcam", x, index)
        np.testing.assert_allclose(unsmoothed.get("gradcam", label).display, package, atol=1e-4)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_matches_pytorch_grad_cam_with_explicit_targets(method: str) -> None:
    model = _model()
    x = _image(seed=2)
    layer_before = model.cam_module()
    result = explain(model, x, methods=(method,), smooth=0)  # the package does not smooth
    for index, label in enumerate(LABELS):
        ours = result.get(method, label)
        assert ours.algorithm == method and ours.layer == "net.features"
        np.testing.assert_allclose(ours.display, _package_map(model, method, x, index), atol=1e-4)
    assert model.cam_module() is layer_before  # Ablation-CAM put the layer it swaps back
    assert _all_hooks(model) == []


def test_gradcam_follows_the_explicit_target_not_the_argmax() -> None:
    result = explain(_model(), _image(seed=3), methods=("gradcam",))
    maps = [result.get("gradcam", label).lowres for label in LABELS]
    assert not np.allclose(maps[0], maps[1]) and not np.allclose(maps[1], maps[2])


def test_custom_cnn_non_gap_head_uses_gradients() -> None:
    model = _model("custom_cnn", 64)
    x = _image(64, seed=4)
    result = explain(model, x, methods=("cam", "gradcam"), smooth=0)
    for index, label in enumerate(LABELS):
        cam = result.get("cam", label)
        assert cam.algorithm == "gradcam" and cam.lowres.shape == (6, 6)
        np.testing.assert_allclose(cam.display, result.get("gradcam", label).display)
        np.testing.assert_allclose(cam.display, _package_map(model, "gradcam", x, index), atol=1e-4)
    assert any(not result.get("cam", label).no_positive_evidence for label in LABELS)
    with pytest.raises(ExplainError, match="average-pooled"):
        from cxrcore.explain.cam import class_activation_maps

        class_activation_maps(model, torch.zeros(1, 256, 6, 6))


@pytest.mark.parametrize(("name", "size"), [("tiny", TINY_SIZE), ("resnet18", 96), ("custom_cnn", 64)])
def test_crm_matches_brute_force_zeroing(name: str, size: int) -> None:
    model = _model(name, size)
    x = _image(size, seed=5)
    result = explain(model, x, methods=("crm", "crm_label"))
    per_label, total = _brute_force_crm(model, x)
    assert total.max() > 0
    for index, label in enumerate(LABELS):
        np.testing.assert_allclose(result.get("crm_label", label).lowres, per_label[index], atol=1e-5)
        np.testing.assert_allclose(result.get("crm", label).lowres, total, atol=1e-5)
        assert result.get("crm", label).layer == model.spec.cam_layer


def test_no_positive_evidence_is_flagged_not_nan() -> None:
    model = _model()
    with torch.no_grad():
        model.net.classifier.weight[0] = -model.net.classifier.weight[0].abs() - 0.01  # features are >= 0
        model.net.classifier.weight[1] = 0.0
    result = explain(model, _image(seed=6), methods=("cam", "gradcam", "crm", "crm_label"))
    for method in ("cam", "gradcam"):
        for label in LABELS[:2]:
            saliency = result.get(method, label)
            assert saliency.no_positive_evidence
            assert not saliency.display.any() and not saliency.raw.any()
    assert result.get("crm_label", "Nodule").no_positive_evidence
    assert not result.get("crm", "Nodule").no_positive_evidence  # other nodes still respond
    assert not result.get("cam", "Mass").no_positive_evidence
    for saliency in result.maps.values():
        assert np.isfinite(saliency.display).all() and np.isfinite(saliency.raw).all()


def test_normalise_map_by_hand() -> None:
    display, empty = normalise_map(np.array([[0.0, 1.0], [2.0, 4.0]], dtype=np.float32))
    np.testing.assert_array_equal(display, [[0.0, 0.25], [0.5, 1.0]])
    assert not empty
    display, empty = normalise_map(np.full((3, 3), 2.0, dtype=np.float32))
    assert empty and not display.any()
    display, empty = normalise_map(np.zeros((3, 3), dtype=np.float32))
    assert empty and not display.any()


def test_smoothing_puts_the_peak_of_a_plateau_at_its_centre() -> None:
    plateau = np.zeros((1, 16, 16), np.float32)
    plateau[0, 3:9, 3:9] = 1.0
    plateau[0, 3, 3] = 1.05  # cell noise: the unsmoothed peak sits in the plateau's corner
    assert np.unravel_index(int(plateau[0].argmax()), (16, 16)) == (3, 3)
    smoothed = smooth_maps(plateau, 1 / 16)  # one cell
    assert smoothed.shape == plateau.shape and smoothed.dtype == np.float32
    assert np.unravel_index(int(smoothed[0].argmax()), (16, 16)) in {(5, 5), (5, 6), (6, 5), (6, 6)}
    np.testing.assert_array_equal(smooth_maps(plateau, 0.0), plateau)
    flat = smooth_maps(np.full((2, 7, 7), 3.0, np.float32), 0.2)  # edges replicated: a constant stays
    np.testing.assert_allclose(flat, 3.0, rtol=1e-6)
    assert smooth_maps(np.ones((1, 2, 2), np.float32), 1.0).shape == (1, 2, 2)  # kernel > map
    wide = np.zeros((1, 4, 16), np.float32)
    wide[0, 2, 8] = 1.0  # sigma follows each side: 1/4 cell down, one cell across
    spread = smooth_maps(wide, 1 / 16)[0]
    assert spread[2, 9] / spread[2, 8] == pytest.approx(np.exp(-0.5), rel=0.05)
    assert spread[1, 8] / spread[2, 8] < 0.01


def test_explain_smooths_after_relu_and_before_upsampling() -> None:
    import torch.nn.functional as F

    model = _model()
    x = _image(seed=9)
    plain = explain(model, x, methods=("cam", "crm"), smooth=0)
    smoothed = explain(model, x, methods=("cam", "crm"))
    assert DEFAULT_SMOOTH > 0
    for key, saliency in smoothed.maps.items():
        np.testing.assert_array_equal(saliency.lowres, plain.maps[key].lowres)  # lowres is never smoothed
        positive = np.maximum(saliency.lowres, 0)[None]
        for sigma, result in ((0.0, plain), (DEFAULT_SMOOTH, smoothed)):
            low = torch.from_numpy(smooth_maps(positive, sigma))[:, None]
            expected = F.interpolate(low, size=(TINY_SIZE, TINY_SIZE), mode="bilinear")[0, 0].numpy()
            np.testing.assert_allclose(result.maps[key].raw, expected, atol=1e-6)
    assert not np.allclose(smoothed.get("cam", "Mass").raw, plain.get("cam", "Mass").raw)
    for bad in (-0.1, 1.5, float("nan"), float("inf"), "1", True):
        with pytest.raises(ExplainError, match=r"smooth must be a fraction of the map's side in \[0, 1\]"):
            explain(model, x, smooth=bad)


def test_inner_layer_by_dotted_name_and_close_matches() -> None:
    model = _model()
    result = explain(model, _image(), methods=("cam", "layercam"), layer="features.act2")
    saliency = result.get("cam", "Mass")
    assert saliency.algorithm == "gradcam" and saliency.layer == "net.features.act2"
    assert saliency.lowres.shape == (8, 8) and saliency.raw.shape == (TINY_SIZE, TINY_SIZE)
    with pytest.raises(ValueError, match=r"net\.features\.act2"):
        resolve_layer(model, "net.features.act9")
    with pytest.raises(ExplainError, match="did you mean 'gradcam'"):
        explain(model, _image(), methods=("gradcm",))
    with pytest.raises(ExplainError, match="did you mean 'Nodule'"):
        explain(model, _image(), labels=["Nodul"])


def test_hooks_released_when_a_method_fails() -> None:
    model = _model()
    with pytest.raises(ExplainError, match="not a \\(B, C, h, w\\) feature map"):
        explain(model, _image(), methods=("gradcam",), layer="net.classifier")
    assert _all_hooks(model) == []


def test_numpy_image_goes_through_project_preprocessing() -> None:
    model = _model()
    pixels = np.random.default_rng(7).random((50, 40), dtype=np.float32)
    u8 = prepare(pixels, PreprocessConfig(input_size=TINY_SIZE))
    x = torch.from_numpy(normalise(u8, NormStats(model.spec.mean, model.spec.std, 1)))[None, None]
    from_numpy = explain(model, pixels, labels="Nodule")
    from_tensor = explain(model, x, labels="Nodule")
    np.testing.assert_array_equal(from_numpy.image01, to_unit(u8))
    for key, saliency in from_tensor.maps.items():
        np.testing.assert_allclose(from_numpy.maps[key].raw, saliency.raw, atol=1e-6)
    np.testing.assert_allclose(
        explain(model, pixels[:, :, None], labels=1).get("cam", "Nodule").raw,
        from_numpy.get("cam", "Nodule").raw,
    )
    assert from_numpy.labels == ("Nodule",) and set(from_numpy.probabilities) == set(LABELS)
    with pytest.raises(ExplainError, match="\\[0, 1\\]"):
        explain(model, pixels * 2)
    with pytest.raises(ExplainError, match="one preprocessed image"):
        explain(model, torch.zeros(2, 1, TINY_SIZE, TINY_SIZE))
    _, image01 = model_input(model, x)
    np.testing.assert_allclose(image01, np.clip(x[0, 0].numpy() * model.spec.std + model.spec.mean, 0, 1))


def test_mode_grads_and_requires_grad_are_restored() -> None:
    model = _model()
    model.train()
    model.net.features.norm1.eval()  # a mixed-mode model keeps each module's own mode
    model.net.features.conv1.weight.requires_grad_(False)
    explain(model, _image(), methods=("cam", "gradcam", "crm", "scorecam"))
    assert model.training and model.net.features.conv2.training
    assert not model.net.features.norm1.training
    assert not model.net.features.conv1.weight.requires_grad and model.net.features.conv2.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    explain(model, _image(), methods=("gradcam",))
    assert not any(module.training for module in model.modules())


def test_ensemble_averages_member_display_maps() -> None:
    members = [_model(seed=0), _model(seed=1), _model(size=48, seed=2)]
    pixels = np.random.default_rng(8).random((40, 40), dtype=np.float32)
    result = explain_ensemble(members, pixels, labels=["Effusion", "Mass"], method="gradcam")
    assert len(result.members) == 3 and result.labels == ("Effusion", "Mass")
    first, second, third = (m.get("gradcam", "Mass").display for m in result.members)
    assert third.shape == (48, 48) and result.maps["Mass"].shape == (TINY_SIZE, TINY_SIZE)
    import cv2

    expected = (
        first + second + cv2.resize(third, (TINY_SIZE, TINY_SIZE), interpolation=cv2.INTER_LINEAR)
    ) / 3
    np.testing.assert_allclose(result.maps["Mass"], expected, atol=1e-6)
    mean_prob = np.mean([m.probabilities["Nodule"] for m in result.members])
    assert result.probabilities["Nodule"] == pytest.approx(mean_prob)
    other = create_model("tiny", labels=("Effusion", "Mass", "Nodule"), input_size=TINY_SIZE)
    with pytest.raises(ValueError, match="different labels"):
        explain_ensemble([members[0], other], pixels)


def test_heatmap_overlay_by_hand() -> None:
    grey = np.full((1, 4), 0.5, dtype=np.float32)  # 128 in uint8
    heat = np.array([[0.0, 0.1, 0.2, 1.0]], dtype=np.float32)
    out = heatmap_overlay(grey, heat, colormap="jet", alpha=0.5, threshold=0.2)
    assert out.dtype == np.uint8 and out.shape == (1, 4, 3)
    np.testing.assert_array_equal(out[0, :2], [[128, 128, 128], [128, 128, 128]])  # transparent
    np.testing.assert_array_equal(out[0, 3], [128, 64, 64])  # jet(1.0) = RGB (128, 0, 0), half opacity
    opaque = heatmap_overlay(grey, heat, colormap="viridis", alpha=1.0, threshold=0.0)
    np.testing.assert_array_equal(opaque[0, 0], [68, 1, 84])  # viridis(0.0)
    np.testing.assert_array_equal(opaque[0, 3], [253, 231, 37])  # viridis(1.0)
    inferno = heatmap_overlay((grey * 255).astype(np.uint8), heat, colormap="inferno", alpha=1.0)
    np.testing.assert_array_equal(inferno[0, 3], [252, 255, 164])


@pytest.mark.parametrize(
    ("image", "heat", "kwargs", "message"),
    [
        (np.zeros((4, 4), np.float32), np.zeros((4, 4), np.int64), {}, "dtype"),
        (np.zeros((4, 4), np.float32), np.full((4, 4), 1.5, np.float32), {}, "\\[0, 1\\]"),
        (np.zeros((4, 4), np.float32), np.full((4, 4), np.nan, np.float32), {}, "\\[0, 1\\]"),
        (np.zeros((4, 4), np.float32), np.zeros((4, 5), np.float32), {}, "differs"),
        (np.full((4, 4), -0.1, np.float32), np.zeros((4, 4), np.float32), {}, "image01_gray"),
        (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.float32), {}, "2-D"),
        (np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32), {"colormap": "jett"}, "jet, viridis"),
        (np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32), {"alpha": 1.5}, "alpha"),
    ],
)
def test_heatmap_overlay_rejects_bad_input(
    image: np.ndarray, heat: np.ndarray, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        heatmap_overlay(image, heat, **kwargs)


def test_png_round_trip() -> None:
    rgb = np.random.default_rng(9).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(to_png_bytes(rgb))).convert("RGB"))
    np.testing.assert_array_equal(decoded, rgb)
    with pytest.raises(ValueError, match="uint8"):
        to_png_bytes(rgb.astype(np.float32))


def test_jpeg_for_the_screen_keeps_colours_in_fewer_bytes_than_streamlits_own() -> None:
    image = np.linspace(0, 1, 160 * 160, dtype=np.float32).reshape(160, 160)
    heat = np.zeros_like(image)
    heat[40:120, 60:140] = 1.0
    rgb = heatmap_overlay(image, heat, "jet", 0.5, 0.2)
    data = to_jpeg_bytes(rgb)
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    assert Image.open(io.BytesIO(data)).format == "JPEG" and decoded.shape == rgb.shape
    assert np.abs(decoded - rgb).mean() < 2.0  # the map's colours, as drawn
    streamlit_own = io.BytesIO()
    Image.fromarray(rgb).save(streamlit_own, format="JPEG", quality=100)  # what st.image makes of an array
    assert len(data) < 0.6 * len(streamlit_own.getvalue())
    with pytest.raises(ValueError, match="to_jpeg_bytes expects a uint8"):
        to_jpeg_bytes(rgb.astype(np.float32))


def test_first_layer_filters_grid() -> None:
    model = _model()
    grid = first_layer_filters(model, tile_size=24)
    assert grid.dtype == np.uint8 and grid.shape == (4 * 25 - 1, 4 * 25 - 1)  # 16 filters, 4 x 4 tiles
    weights = model.net.features.conv1.weight.detach().numpy()[:, 0]
    for index in (0, 5):
        row, col = divmod(index, 4)
        w = weights[index]
        expected = np.round((w - w.min()) / (w.max() - w.min()) * 255)
        tile = grid[row * 25 : row * 25 + 24, col * 25 : col * 25 + 24]
        np.testing.assert_array_equal(tile[::8, ::8], expected)
    assert (grid[24, :] == 255).all()


def test_channel_activations_strongest_first() -> None:
    model = _model()
    x = _image(seed=10)
    grid, channels = channel_activations(model, x, top=5, tile_size=48)
    with torch.no_grad():
        means = model.eval().forward_features(x)[0].mean((1, 2)).numpy()
    np.testing.assert_array_equal(channels, np.argsort(-means, kind="stable")[:5])
    assert grid.shape == (2 * 49 - 1, 3 * 49 - 1)
    assert _all_hooks(model) == []
    _, inner = channel_activations(model, x, layer="features.act1", top=100)
    assert len(inner) == 16
