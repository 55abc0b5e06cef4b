"""The upload guard: fitted at the end of training, stored beside the checkpoint, and flagging images
that are not chest X-rays (colour photographs, textures, CT-like slices, other shapes) while passing
the model's own validation images."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from cxrcore.data.split import split_rows
from cxrcore.io import read_image
from cxrcore.models import Checkpoint, load_checkpoint, read_card
from cxrcore.models.guard import assess, guard_path, load_guard
from cxrcore.store import Workspace

# Every test here uses trained_home: two models trained once per session (~11 s).
pytestmark = pytest.mark.slow


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _colour_photo(rng: np.random.Generator) -> bytes:
    """A sky-over-grass scene with a red object: strongly coloured."""
    img = np.zeros((192, 256, 3), np.uint8)
    img[:96] = (90, 150, 235)
    img[96:] = (60, 170, 70)
    cv2.circle(img, (170, 90), 30, (220, 40, 40), -1)
    noise = rng.integers(-12, 12, img.shape)
    return _png(np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8))


def _texture(rng: np.random.Generator) -> bytes:
    """A fine checkerboard with noise."""
    yy, xx = np.mgrid[:256, :256]
    board = (((yy // 8) + (xx // 8)) % 2) * 200 + 25
    return _png(np.clip(board + rng.normal(0, 10, board.shape), 0, 255).astype(np.uint8))


def _ct_slice(rng: np.random.Generator) -> bytes:
    """An axial CT-like slice: a bright oval body ring, dark lungs, a spine, on black."""
    img = np.zeros((256, 256), np.uint8)
    cv2.ellipse(img, (128, 128), (110, 80), 0, 0, 360, 120, -1)
    cv2.ellipse(img, (128, 128), (110, 80), 0, 0, 360, 230, 6)
    for cx in (85, 171):
        cv2.ellipse(img, (cx, 120), (35, 50), 0, 0, 360, 20, -1)
    cv2.circle(img, (128, 185), 14, 250, -1)
    return _png(np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8))


def _hand(rng: np.random.Generator) -> bytes:
    """A hand-radiograph-like shape: bright finger bones on dark ground."""
    img = np.zeros((256, 200), np.uint8)
    cv2.ellipse(img, (100, 200), (60, 50), 0, 0, 360, 160, -1)
    for i, x in enumerate((40, 70, 100, 130, 165)):
        cv2.line(img, (100, 190), (x, 40 + 10 * abs(i - 2)), 200, 16)
    return _png(np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8))


NON_CXR = {"colour photograph": _colour_photo, "texture": _texture, "CT slice": _ct_slice, "hand": _hand}


@pytest.fixture(scope="module")
def loaded(trained_home) -> tuple[Checkpoint, Path]:
    return load_checkpoint(trained_home / "runs" / "resnet18" / "best.safetensors"), trained_home


def _verdict(checkpoint: Checkpoint, data: bytes):
    pixels, _ = read_image(data)
    return assess(checkpoint, pixels, data)


def test_training_stores_a_guard_beside_each_checkpoint(trained_home) -> None:
    for name in ("best", "last"):
        checkpoint = trained_home / "runs" / "tiny" / f"{name}.safetensors"
        guard = load_guard(checkpoint)
        assert guard_path(checkpoint).is_file() and guard is not None
        assert guard.mean.shape == guard.precision.shape[:1] and guard.threshold > 0
        assert read_card(checkpoint).spec.architecture == "tiny"


def test_validation_phantoms_pass_and_non_radiographs_are_flagged(loaded) -> None:
    checkpoint, home = loaded
    index = Workspace(home).load_dataset("demo-phantoms").index
    paths = split_rows(index, "test")["path"].tolist()
    passed = [not _verdict(checkpoint, Path(p).read_bytes()).suspicious for p in paths]
    assert np.mean(passed) >= 0.9
    rng = np.random.default_rng(0)
    for name, make in NON_CXR.items():
        verdict = _verdict(checkpoint, make(rng))
        assert verdict.suspicious, (
            f"{name} was not flagged (distance {verdict.score}, threshold {verdict.threshold})"
        )


def test_cheap_checks_name_their_reason(loaded) -> None:
    in_memory = Checkpoint(loaded[0].model, loaded[0].card)  # no file, so no stored guard: cheap checks only
    rng = np.random.default_rng(1)
    verdict = _verdict(in_memory, _colour_photo(rng))
    assert "colour picture" in " ".join(verdict.reasons) and verdict.score is None
    wide = _png(rng.integers(0, 255, (60, 400), dtype=np.uint8))
    assert "aspect ratio" in " ".join(_verdict(in_memory, wide).reasons)
    flat = _png(np.full((128, 128), 90, np.uint8))
    assert "nearly uniform" in " ".join(_verdict(in_memory, flat).reasons)


def test_the_guard_reads_the_explanations_features_instead_of_running_the_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cxrcore.explain.engine import explain
    from cxrcore.models import guard as guard_module
    from cxrcore.models.catalog import BUNDLED_DIR

    checkpoint = load_checkpoint(BUNDLED_DIR / "demo-localiser.safetensors")
    pixels = np.random.default_rng(3).random((96, 96)).astype(np.float32)
    own = guard_module.assess(checkpoint, pixels)
    explanation = explain(checkpoint, pixels)
    passes: list[int] = []
    monkeypatch.setattr(guard_module, "pooled_features", lambda *a: passes.append(1))
    shared = guard_module.assess(checkpoint, pixels, features=explanation.pooled_features)
    assert passes == []  # no forward pass of its own
    assert own.score is not None and shared.score == pytest.approx(own.score, rel=1e-5)
    assert shared.suspicious == own.suspicious and shared.threshold == own.threshold
