"""Box fusion of detector ensembles: weighted boxes fusion, NMS and soft-NMS against hand-worked cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrcore.data.detections import DETECTION_COLUMNS
from cxrcore.evaluate.box_fusion import FUSION_METHODS, fuse_detections, suppress
from cxrcore.evaluate.localisation import iou

# Model A's box and model B's box shifted 10 px right: IoU 90 * 100 / (110 * 100) = 9/11 > 0.55.
BOX_A = (0.0, 0.0, 100.0, 100.0)
BOX_B = (10.0, 0.0, 100.0, 100.0)


def _det(*rows: tuple) -> pd.DataFrame:
    """A detections frame from (image_id, label, (x, y, w, h), score) rows."""
    return pd.DataFrame(
        [(image, label, *box, score) for image, label, box, score in rows], columns=list(DETECTION_COLUMNS)
    )


def _boxes(frame: pd.DataFrame) -> np.ndarray:
    return frame[["x", "y", "w", "h"]].to_numpy(dtype=float)


def test_fusion_methods_vocabulary() -> None:
    assert FUSION_METHODS == ("wbf", "nms", "soft_nms")


def test_wbf_of_two_overlapping_boxes_is_their_score_weighted_mean() -> None:
    fused = fuse_detections([_det(("i", "x", BOX_A, 0.9)), _det(("i", "x", BOX_B, 0.6))], "wbf")
    assert tuple(fused.columns) == DETECTION_COLUMNS and len(fused) == 1
    # Corners: x1 = (0.9 * 0 + 0.6 * 10) / 1.5 = 4, x2 = (0.9 * 100 + 0.6 * 110) / 1.5 = 104.
    np.testing.assert_allclose(_boxes(fused)[0], [4.0, 0.0, 100.0, 100.0], atol=1e-4)
    # Mean score 0.75, times min(2 boxes, 2 models) / 2 models.
    assert fused.loc[0, "score"] == pytest.approx(0.75)
    assert fused.loc[0, "image_id"] == "i" and fused.loc[0, "label"] == "x"


def test_wbf_halves_a_box_only_one_of_two_models_found() -> None:
    fused = fuse_detections([_det(("i", "x", BOX_A, 0.8)), _det(("j", "x", BOX_A, 0.6))], "wbf")
    # Each image has one model's box: same place, half the score; images never fuse together.
    assert fused["image_id"].tolist() == ["i", "j"]
    assert fused["score"].tolist() == pytest.approx([0.4, 0.3])
    np.testing.assert_allclose(_boxes(fused), [BOX_A, BOX_A], atol=1e-4)


def test_wbf_keeps_separate_boxes_apart() -> None:
    far = (300.0, 300.0, 50.0, 50.0)
    fused = fuse_detections([_det(("i", "x", BOX_A, 0.9)), _det(("i", "x", far, 0.8))], "wbf")
    assert fused["score"].tolist() == pytest.approx([0.45, 0.4])
    np.testing.assert_allclose(_boxes(fused), [BOX_A, far], atol=1e-4)


def test_wbf_never_fuses_two_classes() -> None:
    fused = fuse_detections([_det(("i", "x", BOX_A, 0.9)), _det(("i", "y", BOX_A, 0.7))], "wbf")
    assert sorted(zip(fused["label"], fused["score"].round(6), strict=True)) == [("x", 0.45), ("y", 0.35)]


def test_wbf_model_weights_multiply_scores() -> None:
    fused = fuse_detections([_det(("i", "x", BOX_A, 0.9)), _det(("i", "x", BOX_B, 0.6))], weights=[2, 1])
    # Weighted scores 1.8 and 0.6: x1 = (1.8 * 0 + 0.6 * 10) / 2.4 = 2.5; score = 2.4 / 2 * 2 / 3 = 0.8.
    np.testing.assert_allclose(_boxes(fused)[0], [2.5, 0.0, 100.0, 100.0], atol=1e-4)
    assert fused.loc[0, "score"] == pytest.approx(0.8)


def test_wbf_does_not_depend_on_the_normalising_frame() -> None:
    frames = [_det(("i", "x", BOX_A, 0.9), ("i", "x", (5, 5, 40, 30), 0.5)), _det(("i", "x", BOX_B, 0.6))]
    free = fuse_detections(frames, "wbf")
    sized = fuse_detections(frames, "wbf", image_sizes={"i": (4000, 3000)})
    np.testing.assert_allclose(_boxes(free), _boxes(sized), atol=1e-3)
    np.testing.assert_allclose(free["score"], sized["score"])


def test_image_sizes_cut_boxes_to_the_image_and_are_required_for_every_image() -> None:
    frames = [_det(("i", "x", (90, -10, 20, 30), 0.9))]
    fused = fuse_detections(frames, "nms", image_sizes={"i": (100, 100)})
    np.testing.assert_allclose(_boxes(fused), [[90, 0, 10, 20]])
    with pytest.raises(ValueError, match=r"no \(width, height\) for 1 image\(s\), e.g. \['i'\]"):
        fuse_detections(frames, "nms", image_sizes={"other": (100, 100)})


def test_skip_score_leaves_low_boxes_out() -> None:
    frames = [_det(("i", "x", BOX_A, 0.9)), _det(("i", "x", BOX_B, 0.05))]
    fused = fuse_detections(frames, "wbf", skip_score=0.1)
    assert fused.loc[0, "score"] == pytest.approx(0.45)
    np.testing.assert_allclose(_boxes(fused)[0], BOX_A, atol=1e-4)


def test_nms_suppresses_the_weaker_overlapping_box() -> None:
    far = (300.0, 300.0, 50.0, 50.0)
    frames = [
        _det(("i", "x", BOX_A, 0.9), ("i", "y", BOX_B, 0.5)),
        _det(("i", "x", BOX_B, 0.6), ("i", "x", far, 0.3)),
    ]
    fused = fuse_detections(frames, "nms")
    assert list(zip(fused["label"], fused["score"], strict=True)) == [("x", 0.9), ("y", 0.5), ("x", 0.3)]
    np.testing.assert_allclose(_boxes(fused), [BOX_A, BOX_B, far])
    # Above the pair's IoU of 9/11 nothing overlaps enough to be suppressed.
    assert len(fuse_detections(frames, "nms", iou_threshold=0.9)) == 4


def test_nms_suppresses_only_above_the_threshold() -> None:
    half = _det(("i", "x", (0, 0, 10, 10), 0.9), ("i", "x", (0, 0, 5, 10), 0.8))  # IoU exactly 0.5
    assert len(fuse_detections([half], "nms", iou_threshold=0.5)) == 2
    assert len(fuse_detections([half], "nms", iou_threshold=0.49)) == 1


def test_nms_weights_scale_by_the_largest_weight() -> None:
    frames = [_det(("i", "x", BOX_A, 0.9)), _det(("i", "x", BOX_B, 0.8))]
    fused = fuse_detections(frames, "nms", weights=[1, 4])
    assert fused.loc[0, "score"] == pytest.approx(0.8) and fused.loc[0, "x"] == 10.0  # 0.9 / 4 < 0.8


def test_soft_nms_decays_the_overlapping_score() -> None:
    far = (300.0, 300.0, 50.0, 50.0)
    frames = [_det(("i", "x", BOX_A, 0.9), ("i", "x", far, 0.3)), _det(("i", "x", BOX_B, 0.6))]
    fused = fuse_detections(frames, "soft_nms")
    decayed = 0.6 * np.exp(-((9 / 11) ** 2) / 0.5)  # about 0.157
    assert fused["score"].tolist() == pytest.approx([0.9, 0.3, decayed])
    np.testing.assert_allclose(_boxes(fused), [BOX_A, far, BOX_B])


def test_soft_nms_drops_boxes_decayed_below_the_floor() -> None:
    boxes = np.array([BOX_A, BOX_B])
    keep, scores = suppress(boxes, np.array([0.9, 0.003]), 0.55, soft=True)
    assert keep.tolist() == [0] and scores.tolist() == [0.9]  # 0.003 * 0.26 < 0.001
    frames = [_det(("i", "x", BOX_A, 0.9)), _det(("i", "x", BOX_B, 0.6))]
    wide = fuse_detections(frames, "soft_nms", sigma=2.0, min_score=0.4)  # 0.6 * 0.716 = 0.43 stays
    assert wide["score"].tolist() == pytest.approx([0.9, 0.6 * np.exp(-((9 / 11) ** 2) / 2.0)])
    assert len(fuse_detections(frames, "soft_nms", min_score=0.2)) == 1  # 0.157 < 0.2


def test_soft_nms_matches_the_reference_implementation() -> None:
    reference = pytest.importorskip("ensemble_boxes.ensemble_boxes_nms")
    rng = np.random.default_rng(5)
    corners = rng.uniform(0, 0.6, (40, 2))
    xyxy = np.column_stack([corners, corners + rng.uniform(0.1, 0.4, (40, 2))])
    scores = rng.uniform(0.05, 1, 40)
    boxes = np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]])
    for method, soft in ((2, True), (3, False)):
        live = scores.copy()  # the reference decays this array in place, best first
        kept = reference.cpu_soft_nms_float(xyxy.copy(), live, Nt=0.3, sigma=0.5, thresh=0.001, method=method)
        keep, mine = suppress(boxes, scores, 0.3, soft=soft)
        assert sorted(keep.tolist()) == sorted(kept.tolist())
        np.testing.assert_allclose(mine, live[live > 0.001], rtol=1e-12)
    assert len(keep) < 40  # hard NMS removed something
    assert iou(boxes[keep[0]], boxes[keep[1]]) <= 0.3


def test_fuse_detections_checks_its_arguments() -> None:
    frames = [_det(("i", "x", BOX_A, 0.9))]
    hint = r"unknown fusion method 'wbff'; did you mean 'wbf'\? valid options: wbf, nms, soft_nms"
    with pytest.raises(ValueError, match=hint):
        fuse_detections(frames, "wbff")
    with pytest.raises(ValueError, match="weights must be 1 positive numbers"):
        fuse_detections(frames, weights=[1, 2])
    with pytest.raises(ValueError, match="at least one"):
        fuse_detections([])


@pytest.mark.parametrize("method", FUSION_METHODS)
def test_fusing_nothing_gives_an_empty_detections_frame(method: str) -> None:
    fused = fuse_detections([_det(), _det(("i", "x", BOX_A, 0.01))], method, skip_score=0.5)
    assert tuple(fused.columns) == DETECTION_COLUMNS and len(fused) == 0
