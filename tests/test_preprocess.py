"""Tests for cxrcore.preprocess: fit modes, CLAHE, settings keys, normalisation statistics, lung crop."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cxrcore.preprocess import (
    NormStats,
    PreprocessConfig,
    compute_norm_stats,
    lung_crop_box,
    normalise,
    prepare,
    to_unit,
)


def test_pad_keeps_aspect_and_pads_with_zero() -> None:
    image = np.ones((100, 200), dtype=np.float32)  # 100 high, 200 wide, all white
    out = prepare(image, PreprocessConfig(input_size=64, fit="pad"))
    assert out.shape == (64, 64) and out.dtype == np.uint8
    # 200 -> 64 wide, 100 -> 32 high, centred vertically: rows 16..47 white, the rest padding.
    assert np.all(out[16:48, :] == 255)
    assert np.all(out[:16, :] == 0) and np.all(out[48:, :] == 0)
    assert int((out == 255).sum()) == 64 * 32


def test_pad_tall_image_pads_left_and_right() -> None:
    image = np.ones((200, 100), dtype=np.float32)
    out = prepare(image, PreprocessConfig(input_size=64, fit="pad"))
    assert np.all(out[:, 16:48] == 255) and np.all(out[:, :16] == 0) and np.all(out[:, 48:] == 0)


def test_crop_fills_and_takes_the_centre() -> None:
    image = np.zeros((100, 200), dtype=np.float32)
    image[:, 50:150] = 1.0  # white centre square, black sides that the crop must cut away
    out = prepare(image, PreprocessConfig(input_size=64, fit="crop"))
    assert out.shape == (64, 64)
    assert np.all(out == 255)


def test_enlarging_uses_linear_interpolation_and_keeps_range() -> None:
    image = np.linspace(0, 1, 40 * 40, dtype=np.float32).reshape(40, 40)
    out = prepare(image, PreprocessConfig(input_size=80))
    expected = cv2.resize(np.rint(image * 255).astype(np.uint8), (80, 80), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out, expected)


def test_shrinking_matches_area_interpolation() -> None:
    image = np.random.default_rng(0).random((256, 256), dtype=np.float32)
    out = prepare(image, PreprocessConfig(input_size=64))
    expected = cv2.resize(np.rint(image * 255).astype(np.uint8), (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(out, expected)


def test_clahe_raises_local_contrast_and_keeps_shape() -> None:
    rng = np.random.default_rng(1)
    image = (0.45 + 0.05 * rng.random((128, 128))).astype(np.float32)  # low contrast
    plain = prepare(image, PreprocessConfig(input_size=128))
    enhanced = prepare(image, PreprocessConfig(input_size=128, clahe=True))
    assert enhanced.shape == (128, 128) and enhanced.dtype == np.uint8
    assert enhanced.std() > 2 * plain.std()


@pytest.mark.parametrize(
    ("pixels", "match"),
    [
        (np.ones((4, 4, 3), np.float32), "2-D"),
        (np.ones((8, 8), np.uint8), "float"),
        (np.full((8, 8), 1.5, np.float32), r"\[0, 1\]"),
        (np.full((8, 8), np.nan, np.float32), r"\[0, 1\]"),
        (np.zeros((0, 8), np.float32), "non-empty"),
    ],
)
def test_prepare_rejects_bad_pixels(pixels: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        prepare(pixels, PreprocessConfig())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_size": 16}, "input_size must be an integer >= 32, got 16"),
        ({"fit": "stretch"}, "unknown fit 'stretch'; valid options: pad, crop"),
        ({"clahe_clip": 0}, "clahe_clip"),
        ({"clahe_tile": 0}, "clahe_tile"),
        ({"clahe": "yes"}, "clahe must be True or False"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PreprocessConfig(**kwargs)


def test_config_key_is_stable_and_distinguishes_settings() -> None:
    base = PreprocessConfig()
    assert base.key() == PreprocessConfig().key()
    assert base.key() == PreprocessConfig(clahe_clip=2).key()  # 2 and 2.0 are the same setting
    variants = [
        PreprocessConfig(input_size=256),
        PreprocessConfig(fit="crop"),
        PreprocessConfig(clahe=True),
        PreprocessConfig(clahe_clip=3.0),
        PreprocessConfig(clahe_tile=4),
        PreprocessConfig(lung_crop=True),
    ]
    keys = {base.key(), *(v.key() for v in variants)}
    assert len(keys) == 7
    assert all("/" not in k and len(k) < 40 for k in keys)


def test_config_round_trip_and_unknown_key() -> None:
    cfg = PreprocessConfig(
        input_size=320, fit="crop", clahe=True, clahe_clip=1.5, clahe_tile=4, lung_crop=True
    )
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(
        ValueError, match=r"unknown PreprocessConfig key\(s\) \['colour'\]; valid keys: input_size"
    ):
        PreprocessConfig.from_dict({**cfg.to_dict(), "colour": True})


def test_to_unit() -> None:
    out = to_unit(np.array([[0, 51, 255]], dtype=np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.2, 1.0]], rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="uint8"):
        to_unit(np.zeros((2, 2), np.float32))


def test_compute_norm_stats_equals_numpy_over_all_pixels() -> None:
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (32, 32), dtype=np.uint8) for _ in range(5)]
    images.append(rng.integers(0, 256, (16, 48), dtype=np.uint8))  # different size weighs by pixels
    stats = compute_norm_stats(iter(images))
    flat = np.concatenate([im.ravel() for im in images]).astype(np.float64) / 255.0
    assert stats.n_images == 6
    assert stats.mean == pytest.approx(flat.mean(), abs=1e-12)
    assert stats.std == pytest.approx(flat.std(), abs=1e-12)
    floats = compute_norm_stats(im.astype(np.float32) / 255.0 for im in images)
    assert floats.mean == pytest.approx(stats.mean, abs=1e-7)


def test_compute_norm_stats_errors_and_floor() -> None:
    with pytest.raises(ValueError, match="no images"):
        compute_norm_stats([])
    with pytest.raises(ValueError, match=r"image 0: float values must lie in \[0, 1\]"):
        compute_norm_stats([np.full((4, 4), 200.0)])
    constant = compute_norm_stats([np.full((4, 4), 128, np.uint8)])
    assert constant.std == pytest.approx(1e-6)


def test_norm_stats_round_trip_and_validation() -> None:
    stats = NormStats(mean=0.5, std=0.25, n_images=10)
    assert NormStats.from_dict(stats.to_dict()) == stats
    with pytest.raises(ValueError, match="unknown NormStats key"):
        NormStats.from_dict({"mean": 0.5, "std": 0.2, "n_images": 1, "median": 0.4})
    with pytest.raises(ValueError, match="positive std"):
        NormStats(mean=0.5, std=0.0, n_images=1)


def test_normalise_numpy_and_torch_agree() -> None:
    stats = NormStats(mean=0.5, std=0.25, n_images=3)
    u8 = np.array([[0, 128, 255]], dtype=np.uint8)
    expected = (u8 / 255.0 - 0.5) / 0.25
    from_numpy = normalise(u8, stats)
    from_torch = normalise(torch.from_numpy(u8), stats)
    assert isinstance(from_numpy, np.ndarray) and from_numpy.dtype == np.float32
    assert isinstance(from_torch, torch.Tensor) and from_torch.dtype == torch.float32
    np.testing.assert_allclose(from_numpy, expected, atol=1e-6)
    np.testing.assert_allclose(from_torch.numpy(), from_numpy, atol=1e-6)
    unit = to_unit(u8)
    np.testing.assert_allclose(normalise(unit, stats), from_numpy, atol=1e-6)
    np.testing.assert_allclose(normalise(torch.from_numpy(unit), stats).numpy(), from_numpy, atol=1e-6)


def _synthetic_chest(h: int = 400, w: int = 360) -> np.ndarray:
    """A bright body on a dark background with two dark lung-like ellipses inside it."""
    image = np.full((h, w), 0.05, np.float32)
    cv2.ellipse(image, (w // 2, h // 2), (int(w * 0.42), int(h * 0.46)), 0, 0, 360, 0.8, -1)
    cv2.ellipse(image, (int(w * 0.32), int(h * 0.45)), (int(w * 0.11), int(h * 0.25)), 0, 0, 360, 0.2, -1)
    cv2.ellipse(image, (int(w * 0.68), int(h * 0.45)), (int(w * 0.11), int(h * 0.25)), 0, 0, 360, 0.2, -1)
    noise = np.random.default_rng(3).normal(0, 0.01, (h, w)).astype(np.float32)
    return np.clip(image + noise, 0, 1)


def test_lung_crop_box_surrounds_both_dark_regions() -> None:
    h, w = 400, 360
    x0, y0, x1, y1 = lung_crop_box(_synthetic_chest(h, w))
    # Ellipses span x in [0.21w, 0.79w] = [75, 285], y in [0.20h, 0.70h] = [80, 280]; margin 5%.
    assert 50 <= x0 <= 75 and 285 <= x1 <= 310
    assert 55 <= y0 <= 80 and 280 <= y1 <= 305


def test_prepare_crops_to_the_lung_box_before_resizing() -> None:
    image = _synthetic_chest()
    x0, y0, x1, y1 = lung_crop_box(image)
    assert (x1 - x0, y1 - y0) != image.shape[::-1]
    out = prepare(image, PreprocessConfig(input_size=64, fit="crop", lung_crop=True))
    expected = prepare(np.ascontiguousarray(image[y0:y1, x0:x1]), PreprocessConfig(input_size=64, fit="crop"))
    np.testing.assert_array_equal(out, expected)


def test_lung_crop_falls_back_to_full_image(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cxrcore.lung_crop"):
        assert lung_crop_box(np.full((300, 200), 0.5, np.float32)) == (0, 0, 200, 300)
    assert "no plausible lung pair" in caplog.text


def test_lung_crop_single_dark_region_falls_back() -> None:
    image = np.full((300, 300), 0.8, np.float32)
    cv2.ellipse(image, (100, 150), (40, 80), 0, 0, 360, 0.2, -1)  # one lung only
    assert lung_crop_box(image) == (0, 0, 300, 300)


@pytest.mark.realdata
def test_lung_crop_on_real_nih_images(data_dir: Path) -> None:
    from PIL import Image

    files = sorted((data_dir / "nih14" / "images").glob("*.png"))[:20]
    assert len(files) == 20
    found = 0
    for path in files:
        pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
        x0, y0, x1, y1 = lung_crop_box(pixels)
        if (x0, y0, x1, y1) != (0, 0, 512, 512):
            found += 1
            # A chest box is large and roughly central.
            assert 0.2 < (x1 - x0) * (y1 - y0) / 512**2 < 0.95
            assert x0 < 256 < x1 and y0 < 256 < y1
    assert found >= 14
