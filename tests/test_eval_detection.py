"""Detection metrics: the detections contract, RSNA score, FROC, the per-class report, image-level scores."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pandas as pd
import pytest

from cxrcore.data.index import DatasetError
from cxrcore.evaluate.classification import auroc_ci, summarise
from cxrcore.evaluate.detection import (
    DETECTION_COLUMNS,
    RSNA_IOU_THRESHOLDS,
    box_labels,
    empty_detections,
    froc,
    image_scores,
    rsna_score,
    validate_detections,
)
from cxrcore.evaluate.detection_report import DETECTION_REPORT_COLUMNS, OVERALL, detection_report
from cxrcore.evaluate.localisation import coco_map, iou

NONE = (np.zeros((0, 4)), np.zeros(0))
NO_BOXES = np.zeros((0, 4))


def _pred(*rows: tuple[float, float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """One image's prediction from (x, y, w, h, score) rows."""
    arr = np.array(rows, dtype=float).reshape(-1, 5)
    return arr[:, :4], arr[:, 4]


def _gt(*rows: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(rows, dtype=float).reshape(-1, 4)


def _frame(rows: list[tuple], columns: tuple[str, ...] = DETECTION_COLUMNS) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns))


# ------------------------------------------------------------------------------------------ contract


def test_empty_detections_passes_its_own_validation() -> None:
    empty = validate_detections(empty_detections())
    assert tuple(empty.columns) == DETECTION_COLUMNS == ("image_id", "label", "x", "y", "w", "h", "score")
    assert len(empty) == 0 and empty["score"].dtype == np.float64


def test_validate_detections_orders_columns_and_casts() -> None:
    columns = {"score": ["0.5"], "h": [2], "w": [3], "y": [0], "x": [1], "label": ["x"], "image_id": [7]}
    frame = pd.DataFrame(columns)
    out = validate_detections(frame)
    assert tuple(out.columns) == DETECTION_COLUMNS
    assert out.loc[0, "image_id"] == "7" and out.loc[0, "score"] == 0.5 and out["x"].dtype == np.float64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"score": 1.5}, r"score outside \[0, 1\].*1\.5"),
        ({"score": -0.1}, r"score outside \[0, 1\]"),
        ({"w": 0.0}, "width or height <= 0"),
        ({"x": np.nan}, "non-finite"),
        ({"y": "top"}, "non-finite"),
        ({"label": ""}, "empty label"),
        ({"image_id": None}, "empty image_id"),
    ],
)
def test_validate_detections_names_bad_values(change: dict, message: str) -> None:
    row = {"image_id": "a", "label": "x", "x": 0.0, "y": 0.0, "w": 1.0, "h": 1.0, "score": 0.5}
    with pytest.raises(DatasetError, match=message):
        validate_detections(pd.DataFrame([row, {**row, **change}]))


def test_validate_detections_names_missing_columns() -> None:
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['score'\]"):
        validate_detections(_frame([("a", "x", 0, 0, 1, 1)], DETECTION_COLUMNS[:-1]))


# ---------------------------------------------------------------------------------------- RSNA score


def test_rsna_thresholds_are_the_challenge_grid() -> None:
    assert RSNA_IOU_THRESHOLDS == (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75)


def test_rsna_hit_needs_iou_strictly_above_the_threshold() -> None:
    # IoU exactly 0.6: hits at 0.40, 0.45, 0.50, 0.55, not at 0.60 (strict), 0.65, 0.70, 0.75 -> 4 / 8.
    pred, truth = _pred((0, 0, 6, 10, 0.9)), _gt((0, 0, 10, 10))
    assert iou(pred[0][0], truth[0]) == 0.6
    result = rsna_score([pred], [truth])
    assert result.score == 0.5 and result.n_images == 1


def test_rsna_false_positive_image_scores_zero_and_empty_image_is_skipped() -> None:
    preds = [_pred((0, 0, 10, 10, 0.9)), _pred((0, 0, 5, 5, 0.3)), NONE]
    gts = [_gt((0, 0, 10, 10)), NO_BOXES, NO_BOXES]
    result = rsna_score(preds, gts)
    np.testing.assert_array_equal(result.per_image[:2], [1.0, 0.0])
    assert np.isnan(result.per_image[2])
    assert result.n_images == 2 and result.score == 0.5


def test_rsna_missed_truth_counts_as_false_negative() -> None:
    # Two truth boxes, one found at IoU 1: TP 1, FN 1 at every threshold -> 1/2.
    result = rsna_score([_pred((0, 0, 10, 10, 0.9))], [_gt((0, 0, 10, 10), (50, 50, 10, 10))])
    assert result.score == 0.5


@pytest.mark.parametrize(("score_a", "score_b", "expected"), [(0.9, 0.1, 5 / 12), (0.1, 0.9, 7 / 12)])
def test_rsna_matches_greedily_in_score_order(score_a: float, score_b: float, expected: float) -> None:
    # Truths T1 = (0,0,10,10), T2 = (4,0,10,10). A = (3,0,10,10): IoU 7/13 with T1, 9/11 with T2.
    # B = (4,0,10,10): IoU 1 with T2, 3/7 with T1.
    # A first takes T2; B then hits T1 only at t = 0.40: (1 + 7 * 1/3) / 8 = 5/12.
    # B first takes T2; A hits T1 at t = 0.40, 0.45, 0.50: (3 + 5 * 1/3) / 8 = 7/12.
    preds = [_pred((3, 0, 10, 10, score_a), (4, 0, 10, 10, score_b))]
    assert rsna_score(preds, [_gt((0, 0, 10, 10), (4, 0, 10, 10))]).score == pytest.approx(expected)


def test_rsna_score_threshold_drops_low_boxes() -> None:
    preds = [_pred((0, 0, 10, 10, 0.9), (50, 50, 10, 10, 0.2)), _pred((0, 0, 5, 5, 0.3))]
    gts = [_gt((0, 0, 10, 10)), NO_BOXES]
    assert rsna_score(preds, gts).score == pytest.approx((0.5 + 0.0) / 2)
    kept = rsna_score(preds, gts, score_threshold=0.5)
    assert kept.score == 1.0 and kept.n_images == 1


def test_rsna_groups_pool_counts_within_an_image() -> None:
    # One image, class x: two truths both found (ratio 1); class y: one false positive (ratio 0).
    x = (_pred((0, 0, 10, 10, 0.9), (50, 0, 10, 10, 0.8)), _gt((0, 0, 10, 10), (50, 0, 10, 10)))
    y = (_pred((0, 50, 10, 10, 0.7)), NO_BOXES)
    preds, gts = [x[0], y[0]], [x[1], y[1]]
    assert rsna_score(preds, gts).score == 0.5  # two entries, two images
    pooled = rsna_score(preds, gts, groups=["img", "img"])
    assert pooled.score == pytest.approx(2 / 3) and pooled.n_images == 1  # TP 2 / (TP 2 + FP 1)
    later = rsna_score([*preds, NONE], [*gts, _gt((0, 0, 9, 9))], groups=["b", "b", "a"])
    np.testing.assert_allclose(later.per_image, [2 / 3, 0.0])  # groups in order of first appearance


def test_rsna_without_anything_to_count_is_nan_with_warning() -> None:
    with pytest.warns(UserWarning, match="RSNA score is undefined"):
        result = rsna_score([NONE], [NO_BOXES])
    assert np.isnan(result.score) and result.n_images == 0


# ---------------------------------------------------------------------------------------------- FROC


def _froc_case() -> tuple[list, list]:
    """Four images, four truth boxes, seven predictions (counted by hand in the tests below)."""
    preds = [
        _pred((0, 0, 10, 10, 0.9), (100, 100, 10, 10, 0.6)),  # hit A; false positive
        _pred((20, 20, 10, 10, 0.8), (21, 20, 10, 10, 0.7), (200, 200, 5, 5, 0.3)),  # hit B; B again; FP
        _pred((0, 0, 5, 5, 0.5)),  # false positive on an image without truth
        _pred((0, 0, 10, 10, 0.4)),  # hit D
    ]
    gts = [_gt((0, 0, 10, 10)), _gt((20, 20, 10, 10), (60, 60, 10, 10)), NO_BOXES, _gt((0, 0, 10, 10))]
    return preds, gts


def test_froc_counts_by_hand() -> None:
    # Descending: .9 TP, .8 TP, .7 FP (B again), .6 FP, .5 FP, .4 TP, .3 FP over 4 images and 4 boxes.
    # FP/image: 0, 0, .25, .5, .75, .75, 1; sensitivity: .25, .5, .5, .5, .5, .75, .75.
    result = froc(*_froc_case())
    expected = (0.5, 0.5, 0.5, 0.75, 0.75, 0.75, 0.75)  # at 1/8, 1/4, 1/2, 1, 2, 4, 8 FP per image
    assert result.sensitivities == expected
    assert result.cpm == pytest.approx(4.5 / 7)
    assert result.n_images == 4 and result.n_boxes == 4
    np.testing.assert_allclose(result.curve["fp_per_image"], [0, 0, 0, 0.25, 0.5, 0.75, 0.75, 1.0])
    np.testing.assert_allclose(result.curve["sensitivity"], [0, 0.25, 0.5, 0.5, 0.5, 0.5, 0.75, 0.75])
    assert result.curve["threshold"].iloc[0] == np.inf and result.curve["threshold"].iloc[-1] == 0.3


def test_froc_can_ignore_second_hits_on_a_found_box() -> None:
    # Without the .7 duplicate as FP, .4 (the hit on D) comes at 2 FP over 4 images = 0.5 FP/image.
    result = froc(*_froc_case(), duplicates="ignore")
    assert result.sensitivities[2] == 0.75  # at 0.5 FP/image
    assert result.sensitivities[1] == 0.5  # at 0.25 FP/image


def test_froc_centre_criterion_hits_a_small_box_inside_a_large_truth() -> None:
    preds, gts = [_pred((40, 40, 10, 10, 0.9))], [_gt((0, 0, 100, 100))]
    assert froc(preds, gts).sensitivities[0] == 0.0  # IoU 0.01
    assert froc(preds, gts, hit="centre").sensitivities[0] == 1.0


def test_froc_ties_share_one_curve_point() -> None:
    preds = [_pred((0, 0, 10, 10, 0.5), (50, 50, 10, 10, 0.5))]
    curve = froc(preds, [_gt((0, 0, 10, 10))]).curve
    assert len(curve) == 2 and curve.iloc[1].tolist() == [0.5, 1.0, 1.0]


def test_froc_options_are_checked() -> None:
    with pytest.raises(ValueError, match="did you mean 'centre'"):
        froc([NONE], [NO_BOXES], hit="center")
    with pytest.raises(ValueError, match="valid options: fp, ignore"):
        froc([NONE], [NO_BOXES], duplicates="skip")
    with pytest.raises(ValueError, match="fp_rates"):
        froc([NONE], [NO_BOXES], fp_rates=(0.0,))


def test_froc_without_truth_is_nan_with_warning() -> None:
    with pytest.warns(UserWarning, match="FROC sensitivity is undefined"):
        result = froc([_pred((0, 0, 5, 5, 0.5))], [NO_BOXES])
    assert np.isnan(result.cpm) and all(np.isnan(result.sensitivities))


# -------------------------------------------------------------------------------------------- report


def _report_case() -> tuple[pd.DataFrame, pd.DataFrame]:
    truth = _frame([("a", "x", 0, 0, 10, 10), ("b", "y", 20, 20, 10, 10)], DETECTION_COLUMNS[:-1])
    detections = _frame(
        [
            ("a", "x", 0, 0, 10, 10, 0.9),  # true positive
            ("a", "y", 0, 0, 10, 10, 0.8),  # on the x box, but class y: a false positive
            ("b", "y", 20, 20, 10, 10, 0.7),  # true positive
            ("c", "x", 5, 5, 5, 5, 0.6),  # false positive on the negative image c
            ("z", "x", 0, 0, 5, 5, 0.9),  # an image outside the evaluated set: left out
        ]
    )
    return detections, truth


def test_report_class_and_overall_rows_by_hand() -> None:
    table = detection_report(*_report_case(), image_ids=["a", "b", "c"])
    assert list(table.index) == ["x", "y", OVERALL] and tuple(table.columns) == DETECTION_REPORT_COLUMNS
    x, y, overall = (table.loc[k] for k in ("x", "y", OVERALL))
    assert table["n_images"].tolist() == [3, 3, 3]
    assert table["n_boxes"].tolist() == [1, 1, 2] and table["n_detections"].tolist() == [2, 2, 4]
    assert table["n_positive_images"].tolist() == [1, 1, 2]
    # x: .9 TP, .6 FP; y: .8 FP, .7 TP (precision 1/2 at full recall).
    assert x["mAP@0.5"] == 1.0 and y["mAP@0.5"] == 0.5 and x["coco_mAP"] == 1.0
    assert x["F1@0.5"] == pytest.approx(2 / 3) and x["mAR@0.75"] == 1.0
    # Pooled: .9 TP, .8 FP, .7 TP, .6 FP; envelope 1 up to recall .5, 2/3 beyond: 101-point AP.
    assert overall["mAP@0.25"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert overall["F1@0.5"] == pytest.approx(2 / 3)
    # RSNA: x: a 1, c 0 (b skipped); y: a 0, b 1; overall: a TP 1 FP 1 -> 1/2, b 1, c 0.
    assert (x["rsna"], y["rsna"], overall["rsna"]) == (0.5, 0.5, 0.5)
    # FROC over 3 images: y reaches sensitivity 1 only at 1/3 FP per image.
    assert x["cpm"] == 1.0 and y["froc@0.25"] == 0.0 and y["froc@0.5"] == 1.0
    assert y["cpm"] == pytest.approx(5 / 7) and overall["froc@0.25"] == 0.5
    assert overall["cpm"] == pytest.approx(6 / 7)


def test_report_score_threshold_changes_recall_not_ap() -> None:
    table = detection_report(*_report_case(), image_ids=["a", "b", "c"], score_threshold=0.75)
    assert table.loc["y", "mAR@0.5"] == 0.0 and table.loc["y", "mAP@0.5"] == 0.5
    assert table.loc["x", "rsna"] == 1.0  # the 0.6 false positive on c no longer counts


def test_report_class_without_truth_is_nan_with_one_warning() -> None:
    detections, truth = _report_case()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = detection_report(detections, truth, ["a", "b", "c"], classes=["x", "y", "w"])
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "'class w' has no truth boxes" in messages[0]
    assert table.loc["w"].drop(["n_images", "rsna"]).fillna(0).eq(0).all()
    assert np.isnan(table.loc["w", "mAP@0.5"]) and np.isnan(table.loc["w", "cpm"])
    assert table.loc[OVERALL, "n_boxes"] == 2


def test_report_single_class_overall_equals_the_class() -> None:
    detections, truth = _report_case()
    table = detection_report(detections, truth, ["a", "b", "c"], classes=["x"])
    pd.testing.assert_series_equal(table.loc["x"], table.loc[OVERALL], check_names=False)


def test_report_rejects_repeated_images_and_overall_class() -> None:
    with pytest.raises(ValueError, match="unique"):
        detection_report(*_report_case(), image_ids=["a", "a"])
    with pytest.raises(ValueError, match="other than 'overall'"):
        detection_report(*_report_case(), image_ids=["a"], classes=["overall"])


# -------------------------------------------------------------------------------------- image scores


def test_image_scores_take_the_highest_box_per_class() -> None:
    detections = _frame(
        [
            ("p1", "x", 0, 0, 5, 5, 0.3),
            ("p1", "x", 9, 9, 5, 5, 0.9),
            ("p1", "y", 0, 0, 5, 5, 0.2),
            ("n1", "x", 0, 0, 5, 5, 0.5),
            ("p2", "x", 0, 0, 5, 5, 0.4),
            ("other", "x", 0, 0, 5, 5, 1.0),  # not evaluated
            ("p1", "z", 0, 0, 5, 5, 1.0),  # class not asked for
        ]
    )
    ids = ["p1", "p2", "n1", "n2"]
    scores = image_scores(detections, ids, ["y", "x"])
    assert list(scores.index) == ids and list(scores.columns) == ["y", "x"]
    assert scores.index.name == "image_id"
    np.testing.assert_array_equal(scores.to_numpy(), [[0.2, 0.9], [0.0, 0.4], [0.0, 0.5], [0.0, 0.0]])


def test_image_scores_feed_the_classification_metrics() -> None:
    detections = _frame(
        [("p1", "x", 0, 0, 5, 5, 0.9), ("p2", "x", 0, 0, 5, 5, 0.4), ("n1", "x", 0, 0, 5, 5, 0.5)]
    )
    truth = _frame([("p1", "x", 1, 1, 5, 5), ("p2", "x", 1, 1, 5, 5)], DETECTION_COLUMNS[:-1])
    ids, classes = ["p1", "p2", "n1", "n2"], ["x"]
    y_true, y_score = box_labels(truth, ids, classes), image_scores(detections, ids, classes)
    np.testing.assert_array_equal(y_true["x"], [1.0, 1.0, 0.0, 0.0])
    # Pairs (positive, negative): .9>.5, .9>0, .4<.5, .4>0 -> AUROC 3/4.
    auc, lo, hi = auroc_ci(y_true.to_numpy(), y_score.to_numpy(), n_boot=50)
    assert auc[0] == 0.75 and lo[0] <= 0.75 <= hi[0]
    table = summarise(y_true.to_numpy(), y_score.to_numpy(), classes, thresholds=0.45, n_boot=20)
    assert table.loc["x", "auroc"] == 0.75 and table.loc["x", "sensitivity"] == 0.5


# --------------------------------------------------------------------------------- COCO cross-check


def test_coco_map_agrees_with_pycocotools() -> None:
    coco_mod = pytest.importorskip("pycocotools.coco")
    cocoeval_mod = pytest.importorskip("pycocotools.cocoeval")
    rng = np.random.default_rng(3)
    preds, gts, images, anns, dets = [], [], [], [], []
    for i in range(12):
        n_gt = int(rng.integers(0, 4))
        gt = np.column_stack([rng.uniform(0, 200, (n_gt, 2)), rng.uniform(20, 60, (n_gt, 2))])
        jitter = gt + rng.normal(0, 2.5, gt.shape) * [1, 1, 0.5, 0.5]
        extra = np.column_stack([rng.uniform(0, 200, (2, 2)), rng.uniform(10, 60, (2, 2))])
        boxes = np.vstack([jitter, extra])
        boxes[:, 2:] = np.abs(boxes[:, 2:]) + 1
        scores = rng.uniform(0, 1, len(boxes))
        preds.append((boxes, scores))
        gts.append(gt)
        images.append({"id": i + 1, "width": 300, "height": 300})
        anns += [
            {"id": len(anns) + k + 1, "image_id": i + 1, "category_id": 1, "bbox": b.tolist(),
             "area": float(b[2] * b[3]), "iscrowd": 0}
            for k, b in enumerate(gt)
        ]  # fmt: skip
        dets += [{"image_id": i + 1, "category_id": 1, "bbox": b.tolist(), "score": float(s)}
                 for b, s in zip(boxes, scores, strict=True)]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        truth = coco_mod.COCO()
        truth.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}
        truth.createIndex()
        evaluation = cocoeval_mod.COCOeval(truth, truth.loadRes(dets), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert len(anns) > 10
    assert 0.2 < evaluation.stats[0] < 0.8  # neither trivial nor perfect: matching decides it
    assert coco_map(preds, gts) == pytest.approx(evaluation.stats[0], abs=1e-9)
