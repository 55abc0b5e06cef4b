from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrcore.evaluate.localisation import (
    average_precision,
    best_match_iou,
    coco_map,
    detection_scores,
    image_iou,
    iobb,
    iobb_accuracy,
    iou,
    iou_matrix,
    mask_rcnn_table,
    peerj_map,
    pointing_accuracy,
    pointing_game,
    to_arrays,
)
from cxrcore.explain.boxes import ScoredBox, boxes_from_heatmap

NO_BOXES = np.zeros((0, 4))


def _slow_iou(a: list[float], b: list[float]) -> float:
    """Scalar IoU written from the corner coordinates, as a reference for the vectorised one."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - iw * ih
    return iw * ih / union if union > 0 else 0.0


# ----------------------------------------------------------------------------------------------- IoU


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 10, 10), (5, 0, 10, 10), 50 / 150),  # offset 5 px in x: 5x10 overlap
        ((0, 0, 10, 10), (5, 5, 10, 10), 25 / 175),  # offset diagonally: 5x5 overlap
        ((0, 0, 10, 10), (2, 2, 4, 4), 16 / 100),  # contained
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (10, 0, 10, 10), 0.0),  # touching edges share no area
        ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),  # empty union gives 0, not NaN
    ],
)
def test_iou_of_hand_made_pairs(a: tuple, b: tuple, expected: float) -> None:
    assert iou(a, b) == pytest.approx(expected)
    assert iou(b, a) == pytest.approx(expected)


def test_iou_matrix_matches_scalar_reference() -> None:
    rng = np.random.default_rng(0)
    a = np.column_stack([rng.uniform(0, 50, (7, 2)), rng.uniform(0, 30, (7, 2))])
    b = np.column_stack([rng.uniform(0, 50, (5, 2)), rng.uniform(0, 30, (5, 2))])
    expected = np.array([[_slow_iou(list(p), list(q)) for q in b] for p in a])
    np.testing.assert_allclose(iou_matrix(a, b), expected)
    assert iou_matrix(a, NO_BOXES).shape == (7, 0)
    assert iou_matrix(NO_BOXES, b).shape == (0, 5)


def test_invalid_boxes_are_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        iou_matrix(np.zeros((2, 3)), NO_BOXES)
    with pytest.raises(ValueError, match="w, h >= 0"):
        iou_matrix([[0, 0, -1, 5]], NO_BOXES)


def test_best_match_iou_per_ground_truth_box() -> None:
    gt = [[0, 0, 10, 10], [20, 20, 10, 10]]
    np.testing.assert_allclose(best_match_iou(gt, [[5, 0, 10, 10], [0, 0, 5, 10]]), [0.5, 0.0])  # 50/100 best
    np.testing.assert_allclose(best_match_iou(gt, NO_BOXES), [0.0, 0.0])


def test_image_iou_uses_the_union_of_boxes() -> None:
    gt = [[0, 0, 10, 10]]  # 100 pixels
    # Predictions overlap each other; their union covers columns 0-14 of rows 0-9: 150 pixels, 100 in the gt.
    assert image_iou(gt, [[5, 0, 10, 10], [0, 0, 5, 10]], (20, 20)) == pytest.approx(100 / 150)
    # A box past the border is clipped to 5x10 = 50 pixels, disjoint from the gt.
    assert image_iou(gt, [[15, 0, 10, 10]], (20, 20)) == 0.0
    assert image_iou(gt, NO_BOXES, (20, 20)) == 0.0
    with pytest.warns(UserWarning, match="undefined"):
        assert np.isnan(image_iou(NO_BOXES, NO_BOXES, (20, 20)))


# ------------------------------------------------------------------------------------ heat map -> boxes


def _two_blobs() -> np.ndarray:
    heat = np.zeros((20, 20))
    heat[2:5, 2:6] = 1.0  # 3 rows x 4 columns at (x=2, y=2)
    heat[10:15, 12:14] = 0.6  # 5 rows x 2 columns at (x=12, y=10)
    return heat


def test_two_blobs_give_two_boxes_best_first() -> None:
    boxes = boxes_from_heatmap(_two_blobs() * 7.0)  # scale does not matter: the map is normalised by its max
    assert boxes == [ScoredBox(2, 2, 4, 3, 1.0), ScoredBox(12, 10, 2, 5, pytest.approx(0.6))]
    scaled = boxes_from_heatmap(_two_blobs(), class_score=0.5)
    assert [b.score for b in scaled] == pytest.approx([0.5, 0.3])
    assert boxes_from_heatmap(_two_blobs(), thresholds=(0.7,)) == [ScoredBox(2, 2, 4, 3, 1.0)]


def test_boxes_found_at_several_thresholds_are_kept_once() -> None:
    assert len(boxes_from_heatmap(_two_blobs(), thresholds=(0.5, 0.9))) == 2  # the first blob again at 0.9
    heat = np.zeros((10, 10))
    heat[0:6, 0:6] = 0.6
    heat[1:3, 1:3] = 1.0  # a 2x2 core inside a 6x6 plateau
    boxes = boxes_from_heatmap(heat, thresholds=(0.5, 0.9))
    assert {(b.x, b.y, b.w, b.h) for b in boxes} == {(0, 0, 6, 6), (1, 1, 2, 2)}
    assert all(b.score == 1.0 for b in boxes)  # the core lies inside both boxes


def test_components_are_8_connected_and_small_ones_dropped() -> None:
    heat = np.zeros((8, 8))
    heat[0, 0] = heat[1, 1] = 1.0  # diagonal neighbours: one component
    heat[6, 6] = 1.0  # a lone pixel
    assert boxes_from_heatmap(heat, min_area=2) == [ScoredBox(0, 0, 2, 2, 1.0)]
    assert len(boxes_from_heatmap(heat, min_area=1)) == 2


@pytest.mark.parametrize("heat", [np.full((6, 6), 0.3), np.zeros((6, 6)), -np.ones((6, 6))])
def test_constant_or_non_positive_maps_give_no_boxes(heat: np.ndarray) -> None:
    assert boxes_from_heatmap(heat) == []


def test_heatmap_input_is_validated() -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        boxes_from_heatmap(_two_blobs(), thresholds=(0.0,))
    with pytest.raises(ValueError, match="2-D"):
        boxes_from_heatmap(np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        boxes_from_heatmap(np.full((3, 3), np.nan))


# --------------------------------------------------------------------------------------- AP and mAP


def _ranked_tp_fp_tp_fp() -> tuple[list, list]:
    """Four predictions ranked TP, FP, TP, FP against three ground-truth boxes on two images."""
    gts = [np.array([[0, 0, 10, 10], [50, 50, 10, 10]]), np.array([[0, 0, 10, 10]])]
    preds = [
        (np.array([[0, 0, 10, 10], [100, 100, 10, 10]]), np.array([0.9, 0.8])),  # TP, FP
        (np.array([[0, 0, 10, 10], [30, 30, 10, 10]]), np.array([0.7, 0.6])),  # TP, FP
    ]
    return preds, gts


def test_average_precision_worked_by_hand() -> None:
    preds, gts = _ranked_tp_fp_tp_fp()
    # Ranked TP, FP, TP, FP: precision 1, 1/2, 2/3, 2/4; recall 1/3, 1/3, 2/3, 2/3.
    # 11-point: r in {0, .1, .2, .3} -> 1; r in {.4, .5, .6} -> 2/3; r in {.7, ..., 1} -> 0,
    # so AP = (4 * 1 + 3 * 2/3) / 11 = 6/11.
    assert average_precision(preds, gts, 0.5, "11point") == pytest.approx(6 / 11)
    # Envelope area: recall rises 1/3 at precision 1 and 1/3 at precision 2/3.
    assert average_precision(preds, gts, 0.5, "all") == pytest.approx(1 / 3 + 2 / 9)
    # 101-point: r = 0 .. 0.33 (34 points) -> 1; 0.34 .. 0.66 (33 points) -> 2/3; 0.67 .. 1 (34 points) -> 0.
    assert average_precision(preds, gts, 0.5, "coco") == pytest.approx((34 + 33 * 2 / 3) / 101)
    scores = detection_scores(preds, gts, 0.5, interpolation="11point")
    assert scores == pytest.approx({"precision": 0.5, "recall": 2 / 3, "f1": 4 / 7, "ap": 6 / 11})
    # At score >= 0.75 the top two are kept: precision 1/2, recall 1/3, F1 = 2 * (1/6) / (5/6) = 2/5.
    assert detection_scores(preds, gts, 0.5, 0.75)["f1"] == pytest.approx(0.4)
    # At score >= 0.85 only the first is kept: precision 1, recall 1/3, F1 = 2 * (1/3) / (4/3) = 1/2.
    assert detection_scores(preds, gts, 0.5, 0.85)["f1"] == pytest.approx(0.5)


def test_recall_grid_points_are_reached_despite_rounding() -> None:
    gts = [np.array([[20.0 * i, 0, 10, 10] for i in range(10)])]
    preds = [(gts[0][:3], np.array([0.9, 0.8, 0.7]))]  # recall 3/10 at precision 1
    assert average_precision(preds, gts, 0.5, "11point") == pytest.approx(4 / 11)  # r = 0, .1, .2, .3


def test_a_ground_truth_box_is_matched_once() -> None:
    gts = [np.array([[0, 0, 10, 10]])]
    preds = [(np.array([[1, 0, 10, 10], [0, 0, 10, 10]]), np.array([0.8, 0.9]))]  # both overlap the one gt
    # The higher-scoring exact box is the TP; the second is a duplicate, hence FP.
    assert detection_scores(preds, gts, 0.5) == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "ap": 1.0}
    )


def test_greedy_matching_takes_the_free_gt_of_highest_iou() -> None:
    gts = [np.array([[0, 0, 10, 10], [5, 0, 10, 10]])]  # A and B
    # The first prediction has IoU 60/140 with A and 90/110 with B, so it takes B; the second is B exactly but
    # B is taken, leaving A at IoU 1/3: a TP at threshold 0.3, an FP at 0.5.
    preds = [(np.array([[4, 0, 10, 10], [5, 0, 10, 10]]), np.array([0.9, 0.8]))]
    assert detection_scores(preds, gts, 0.3)["precision"] == 1.0
    assert detection_scores(preds, gts, 0.5)["precision"] == 0.5
    assert detection_scores(preds, gts, 0.5)["recall"] == 0.5


def test_ties_in_score_keep_the_input_order() -> None:
    gts = [np.array([[0, 0, 10, 10]])]
    hit, miss = [0, 0, 10, 10], [40, 40, 10, 10]
    tied = np.array([0.5, 0.5])
    # TP then FP: precision 1 at full recall; FP then TP: precision 1/2 at full recall.
    assert average_precision([(np.array([hit, miss]), tied)], gts, 0.5, "11point") == 1.0
    assert average_precision([(np.array([miss, hit]), tied)], gts, 0.5, "11point") == pytest.approx(0.5)


def test_empty_predictions_and_empty_ground_truth() -> None:
    gts = [np.array([[0, 0, 10, 10]]), NO_BOXES]
    empty = [(NO_BOXES, np.zeros(0)), (NO_BOXES, np.zeros(0))]
    assert average_precision(empty, gts) == 0.0
    assert detection_scores(empty, gts) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "ap": 0.0}
    # A box on the image without ground truth is a false positive ranked first: 11-point AP = 1/2.
    preds = [([[0, 0, 10, 10]], [0.5]), ([[0, 0, 10, 10]], [0.9])]
    assert average_precision(preds, gts, 0.5, "11point") == pytest.approx(0.5)
    with pytest.warns(UserWarning, match="no ground-truth"):
        assert np.isnan(average_precision(preds, [NO_BOXES, NO_BOXES]))
    with pytest.warns(UserWarning, match="no ground-truth"):
        assert np.isnan(coco_map(preds, [NO_BOXES, NO_BOXES]))
    with pytest.warns(UserWarning, match="no ground-truth"):
        scores = detection_scores(preds, [NO_BOXES, NO_BOXES])
    assert scores["precision"] == 0.0 and np.isnan([scores["recall"], scores["f1"], scores["ap"]]).all()


def test_ap_arguments_are_validated() -> None:
    preds, gts = _ranked_tp_fp_tp_fp()
    with pytest.raises(ValueError, match="valid options: coco, 11point, all"):
        average_precision(preds, gts, 0.5, "voc")
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        average_precision(preds, gts, 0.0)
    with pytest.raises(ValueError, match="same images"):
        average_precision(preds, gts[:1])
    with pytest.raises(ValueError, match="one finite score per box"):
        average_precision([(preds[0][0], [0.9]), preds[1]], gts)


def _reference_ap(preds: list, gts: list, thr: float, use_07: bool) -> float:
    """Slow reference: per-image greedy matching with scalar IoU, then the PASCAL VOC devkit's AP formulas."""
    records = []  # (score, image, index in image order)
    for i, (_, scores) in enumerate(preds):
        records += [(float(s), i, k) for k, s in enumerate(scores)]
    records.sort(key=lambda r: -r[0])  # stable: ties keep image order
    used = [set() for _ in gts]
    tp = []
    for _, i, k in records:
        ious = [
            (_slow_iou(list(preds[i][0][k]), list(g)), j) for j, g in enumerate(gts[i]) if j not in used[i]
        ]
        best = max((v for v in ious if v[0] >= thr), default=None)
        if best is not None:
            used[i].add(best[1])
        tp.append(best is not None)
    n_gt = sum(len(g) for g in gts)
    hits = np.cumsum(tp)
    rec, prec = hits / n_gt, hits / np.arange(1, len(tp) + 1)
    if use_07:
        return sum(max(prec[rec >= t - 1e-9], default=0.0) for t in np.arange(0.0, 1.1, 0.1)) / 11
    mrec, mpre = [0.0, *rec, 1.0], [0.0, *prec, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1))


def test_average_precision_matches_slow_voc_reference() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        gts, preds = [], []
        for _ in range(4):
            n = int(rng.integers(0, 4))
            g = np.column_stack([rng.uniform(0, 40, (n, 2)), rng.uniform(5, 20, (n, 2))])
            jitter = np.repeat(g, 2, axis=0) + rng.normal(0, 3, (2 * n, 4)) * [1, 1, 0.5, 0.5]
            p = np.vstack([np.abs(jitter), rng.uniform(0, 40, (int(rng.integers(0, 3)), 4))])
            gts.append(g)
            preds.append((p, rng.choice([0.2, 0.4, 0.6, 0.8], len(p))))  # few values: many ties
        if sum(len(g) for g in gts) == 0:
            continue
        for thr in (0.3, 0.5):
            assert average_precision(preds, gts, thr, "11point") == pytest.approx(
                _reference_ap(preds, gts, thr, True)
            )
            assert average_precision(preds, gts, thr, "all") == pytest.approx(
                _reference_ap(preds, gts, thr, False)
            )


def test_map_over_iou_thresholds() -> None:
    gts = [np.array([[0, 0, 10, 10]])]
    preds = [(np.array([[0, 0, 10, 6.2]]), np.array([0.9]))]  # IoU 62/100
    # COCO thresholds 0.5, 0.55, 0.6 are met (AP 1), the other seven are not (AP 0).
    assert coco_map(preds, gts) == pytest.approx(3 / 10)
    # PeerJ thresholds 0.1, 0.167, ..., 0.567 (eight of them) are met; 0.633 and 0.7 are not.
    assert peerj_map(preds, gts) == pytest.approx(8 / 10)
    exact = [(gts[0], np.array([0.9]))]
    assert coco_map(exact, gts) == 1.0 and peerj_map(exact, gts) == 1.0


def test_mask_rcnn_table_rows_and_columns() -> None:
    gts = [np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10]])]
    # IoU 0.62 on the first image, 0.3 on the second (a 10x3 box inside the gt).
    preds = [([[0, 0, 10, 6.2]], [0.9]), ([[0, 0, 10, 3]], [0.8])]
    table = mask_rcnn_table(preds, gts)
    assert isinstance(table, pd.DataFrame)
    assert table.index.tolist() == [0.25, 0.5, 0.75] and table.columns.tolist() == ["mAP", "mAR", "F1"]
    # IoU 0.25: both TP. IoU 0.5: TP, FP (precision 1/2, recall 1/2, 101-point AP = 51/101). IoU 0.75: none.
    expected = [[1.0, 1.0, 1.0], [51 / 101, 0.5, 0.5], [0.0, 0.0, 0.0]]
    np.testing.assert_allclose(table.to_numpy(), expected)
    row = detection_scores(preds, gts, 0.5)
    assert table.loc[0.5].tolist() == pytest.approx([row["ap"], row["recall"], row["f1"]])


def test_scored_boxes_feed_the_ap_functions() -> None:
    boxes = boxes_from_heatmap(_two_blobs())
    gts = [np.array([[2, 2, 4, 3]])]
    xywh, scores = to_arrays(boxes)
    assert xywh.shape == (2, 4) and scores.tolist() == pytest.approx([1.0, 0.6])
    assert average_precision([(xywh, scores)], gts, 0.5, "11point") == 1.0  # the hit ranks first


# --------------------------------------------------------------------------------------- pointing game


def _peak_at(row: int, col: int) -> np.ndarray:
    heat = np.full((20, 20), 0.1)
    heat[row, col] = 1.0
    return heat


def test_pointing_game_hits_and_misses() -> None:
    box = [[10, 0, 5, 10]]  # columns 10-14, rows 0-9
    assert pointing_game(_peak_at(5, 12), box) is True
    assert pointing_game(_peak_at(5, 10), box) is True  # first column inside
    assert pointing_game(_peak_at(5, 9), box) is False  # just left of it
    assert pointing_game(_peak_at(5, 15), box) is False  # just right of it
    assert pointing_game(_peak_at(5, 12), [[0, 0, 10, 10], [30, 30, 5, 5]]) is False
    assert pointing_game(_peak_at(5, 12), [[0, 0, 10, 10]], tolerance=3) is True  # centre 12.5 <= 13
    assert pointing_game(_peak_at(5, 12), NO_BOXES) is False
    assert pointing_game(np.zeros((20, 20)), box) is None
    assert pointing_game(np.full((20, 20), 0.4), box) is None


def test_pointing_accuracy_over_a_list() -> None:
    box = [[10, 0, 5, 10]]
    heats = [_peak_at(5, 12), _peak_at(15, 2), np.zeros((20, 20)), _peak_at(5, 12)]
    gts = [box, box, box, NO_BOXES]  # the last image has nothing to point at and is left out
    assert pointing_accuracy(heats, gts) == pytest.approx(1 / 3)  # hit, miss, no evidence = miss
    assert pointing_accuracy(heats, gts, no_evidence="skip") == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="valid options: miss, skip"):
        pointing_accuracy(heats, gts, no_evidence="ignore")
    with pytest.warns(UserWarning, match="undefined"):
        assert np.isnan(pointing_accuracy(heats[3:], gts[3:]))


# ------------------------------------------------------------------------------------------------ IoBB


def test_iobb_divides_by_the_predicted_area() -> None:
    gt = [0, 0, 10, 10]
    assert iobb(gt, [5, 0, 10, 10]) == pytest.approx(0.5)  # 50 / 100
    assert iobb(gt, [2, 2, 4, 4]) == 1.0  # prediction inside the gt
    assert iobb(gt, [0, 0, 20, 20]) == pytest.approx(0.25)  # gt inside the prediction: 100 / 400
    assert iobb(gt, [0, 0, 0, 0]) == 0.0


def test_iobb_accuracy_and_false_positives() -> None:
    gt = np.array([[0, 0, 10, 10]])
    preds = [np.array([[5, 0, 10, 10], [50, 50, 5, 5]]), np.array([[0, 0, 20, 20]]), NO_BOXES]
    # Best IoBB per predicted box: image 1 -> 0.5 and 0; image 2 -> 0.25; image 3 has no prediction.
    result = iobb_accuracy(preds, [gt, gt, gt])
    assert list(result) == [0.1, 0.25, 0.5, 0.75, 0.9]
    accuracy = [result[t]["accuracy"] for t in result]
    afp = [result[t]["afp"] for t in result]
    assert accuracy == pytest.approx([2 / 3, 2 / 3, 1 / 3, 0.0, 0.0])
    assert afp == pytest.approx([1 / 3, 1 / 3, 2 / 3, 1.0, 1.0])
    # An image without ground truth adds its boxes as false positives but is not in the accuracy.
    extra = iobb_accuracy([*preds, np.array([[0, 0, 5, 5]])], [gt, gt, gt, NO_BOXES], thresholds=(0.5,))
    assert extra[0.5] == pytest.approx({"accuracy": 1 / 3, "afp": 3 / 4})
