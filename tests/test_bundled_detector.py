"""The bundled real-data lesion detector: its card, and boxes in the original image's pixel space."""

from __future__ import annotations

import numpy as np

from cxrcore.data.detections import DETECTION_COLUMNS
from cxrcore.data.phantoms import render_phantom
from cxrcore.models import load_checkpoint
from cxrcore.models.catalog import BUNDLED_DIR
from cxrcore.models.detection import detect

DETECTOR = BUNDLED_DIR / "real-detector.safetensors"


def test_the_bundled_detector_has_a_card_with_its_test_figures() -> None:
    card = load_checkpoint(DETECTOR).card
    assert card.task == "detect" and card.synthetic is False
    assert card.detector["kind"] == "faster_rcnn" and card.detector["input_size"] == 256
    assert "ActiveTuberculosis" in card.detector["classes"] and len(card.detector["classes"]) == 10
    overall = card.evaluation["boxes"]["overall"]
    assert card.evaluation["split"] == "test" and card.evaluation["n_images"] == 341
    assert 0.0 < overall["mAP@0.5"] < 1.0


def test_the_bundled_detector_draws_boxes_on_a_wide_image_in_its_own_pixels() -> None:
    checkpoint = load_checkpoint(DETECTOR)
    square, _ = render_phantom(np.random.default_rng(3), 256, ["Nodule"])
    wide = np.concatenate([square, square[:, :128]], axis=1)  # 384 x 256: letterboxed on input
    found = detect(checkpoint, wide, score_threshold=0.0)
    assert list(found.columns) == list(DETECTION_COLUMNS) and len(found) > 0
    assert set(found["label"]) <= set(checkpoint.card.detector["classes"])
    assert (found["x"] >= 0).all() and (found["y"] >= 0).all()
    assert (found["x"] + found["w"] <= 384 + 1e-3).all() and (found["y"] + found["h"] <= 256 + 1e-3).all()
    assert found["score"].is_monotonic_decreasing
