"""The bundled real-data lesion detector: its card, and boxes in the original image's pixel space."""

from __future__ import annotations

import numpy as np

from cxrcore.data.detections import DETECTION_COLUMNS
from cxrcore.data.phantoms import render_phantom
from cxrcore.evaluate.operating_points import DETECTOR_RULE
from cxrcore.models import load_checkpoint
from cxrcore.models.card import read_card
from cxrcore.models.catalog import BUNDLED_DIR
from cxrcore.models.detection import detect
from cxrcore.models.readout import check_operating_points, default_score_threshold

DETECTOR = BUNDLED_DIR / "real-detector.safetensors"


def test_the_bundled_detector_has_a_card_with_its_test_figures() -> None:
    card = load_checkpoint(DETECTOR).card
    assert card.task == "detect" and card.synthetic is False
    assert card.detector["kind"] == "faster_rcnn" and card.detector["input_size"] == 256
    assert "ActiveTuberculosis" in card.detector["classes"] and len(card.detector["classes"]) == 10
    overall = card.evaluation["boxes"]["overall"]
    assert card.evaluation["split"] == "test" and card.evaluation["n_images"] == 341
    assert 0.0 < overall["mAP@0.5"] < 1.0


def test_the_bundled_detector_stores_the_score_threshold_chosen_on_its_validation_split() -> None:
    card = read_card(DETECTOR)
    points = card.operating_points
    check_operating_points(points, card.labels)
    assert points["rule"] == DETECTOR_RULE and set(points["thresholds"]) == set(card.labels)
    assert (points["fitted_on"]["dataset"], points["fitted_on"]["n_images"]) == ("cxr-detect", 165)
    assert points["fitted_on"]["index_fingerprint"] == card.dataset.fingerprint
    f1 = points["f1_by_cut"]
    assert len(f1) == 19 and f1[f"{points['score_threshold']:.2f}"] == max(f1.values())
    assert default_score_threshold(card) == points["score_threshold"] == card.evaluation["score_threshold"]


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
