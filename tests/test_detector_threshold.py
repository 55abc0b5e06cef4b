"""A detector's box score threshold: chosen on validation by best F1, stored in its card, read back."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import DETECTOR_CLASSES, save_detector

from cxrcore.cli import main
from cxrcore.data.detections import DEFAULT_SCORE_THRESHOLD, DETECTION_COLUMNS
from cxrcore.data.split import split_rows
from cxrcore.evaluate import detect_predict
from cxrcore.evaluate.detect_predict import detections_key
from cxrcore.evaluate.detection_report import OVERALL, detection_report, overall_by_cut
from cxrcore.evaluate.detector_eval import truth_boxes
from cxrcore.evaluate.detector_threshold import (
    SCORE_CUTS,
    choose_score_threshold,
    detector_operating_points,
)
from cxrcore.evaluate.operating_points import DETECTOR_RULE
from cxrcore.models.card import read_card, weights_fingerprint
from cxrcore.models.catalog import BUNDLED_DIR
from cxrcore.models.checkpoint import write_card
from cxrcore.models.model_card import CardError
from cxrcore.models.readout import (
    check_operating_points,
    default_score_threshold,
    score_threshold_source,
    shared_score_threshold,
)
from cxrcore.store import Workspace
from cxrcore.workflows.demo import DEMO_DATASET

IDS = ["a", "b", "c"]
TRUTH = pd.DataFrame(
    {
        "image_id": ["a", "b", "c"],
        "label": ["Nodule", "Nodule", "Effusion"],
        "x": [10.0, 50.0, 0.0],
        "y": [10.0, 50.0, 0.0],
        "w": [20.0, 20.0, 30.0],
        "h": [20.0, 20.0, 30.0],
    }
)
# Three hits (0.9, 0.35, 0.25) and three misses (0.6 elsewhere on a, an Effusion on b, a Nodule on c at 0.1).
DETECTIONS = pd.DataFrame(
    {
        "image_id": ["a", "b", "c", "a", "b", "c"],
        "label": ["Nodule", "Nodule", "Effusion", "Nodule", "Effusion", "Nodule"],
        "x": [10.0, 50.0, 0.0, 60.0, 0.0, 70.0],
        "y": [10.0, 50.0, 0.0, 60.0, 0.0, 70.0],
        "w": [20.0, 20.0, 30.0, 20.0, 20.0, 10.0],
        "h": [20.0, 20.0, 30.0, 20.0, 20.0, 10.0],
        "score": [0.9, 0.35, 0.25, 0.6, 0.3, 0.1],
    }
)
CLASSES = ["Effusion", "Nodule"]


def test_the_cut_with_the_best_overall_f1_is_chosen_on_a_hand_made_case() -> None:
    choice = choose_score_threshold(DETECTIONS, TRUTH, IDS, CLASSES)
    # <= 0.10: 3 hits of 6 boxes, F1 2/3; 0.15-0.25: 3 of 5, F1 0.75 (ties go to the highest cut);
    # 0.30: 2 of 4; 0.35: 2 of 3; 0.40-0.60: 1 of 2; 0.65-0.90: 1 of 1; 0.95: none.
    assert choice.threshold == 0.25
    f1 = choice.sweep["f1"]
    assert f1[0.1] == pytest.approx(2 / 3) and f1[0.15] == f1[0.25] == pytest.approx(0.75)
    assert f1[0.3] == pytest.approx(4 / 7) and f1[0.35] == pytest.approx(2 / 3)
    assert f1[0.5] == pytest.approx(0.4) and f1[0.9] == pytest.approx(0.5) and f1[0.95] == 0.0
    assert (
        choice.sweep.loc[0.25, "precision"] == pytest.approx(0.6) and choice.sweep.loc[0.25, "recall"] == 1.0
    )
    # The sweep is the detection report's overall row at each cut.
    for cut in (0.25, 0.5):
        row = detection_report(DETECTIONS, TRUTH, IDS, CLASSES, score_threshold=cut).loc[OVERALL]
        assert row["F1@0.5"] == pytest.approx(f1[cut]) and row["mAR@0.5"] == choice.sweep.loc[cut, "recall"]


def test_the_sweep_agrees_with_the_report_at_every_grid_cut() -> None:
    sweep = overall_by_cut(DETECTIONS, TRUTH, IDS, CLASSES, SCORE_CUTS)
    assert list(sweep.index) == list(SCORE_CUTS) and SCORE_CUTS[0] == 0.05 and SCORE_CUTS[-1] == 0.95
    for cut in SCORE_CUTS[::3]:
        row = detection_report(DETECTIONS, TRUTH, IDS, CLASSES, score_threshold=cut).loc[OVERALL]
        assert (sweep.loc[cut, "f1"], sweep.loc[cut, "recall"]) == pytest.approx(
            (row["F1@0.5"], row["mAR@0.5"])
        )


def test_no_cut_is_chosen_when_none_finds_a_box_or_a_cut_is_out_of_range() -> None:
    misses = DETECTIONS.iloc[3:]
    with pytest.raises(ValueError, match="F1 is 0 at every cut"):
        choose_score_threshold(misses, TRUTH, IDS, CLASSES)
    with pytest.raises(ValueError, match=r"score cuts must be numbers in \(0, 1\]"):
        choose_score_threshold(DETECTIONS, TRUTH, IDS, CLASSES, cuts=[0.5, 1.5])
    with pytest.raises(ValueError, match="no truth box"), pytest.warns(UserWarning, match="no ground-truth"):
        choose_score_threshold(DETECTIONS, TRUTH.iloc[:0], IDS, CLASSES)


FITTED = {"dataset": "demo-phantoms", "split": "valid", "n_images": 24, "n_boxes": 30}


def test_the_cut_round_trips_through_the_card_as_an_operating_point(tmp_path: Path) -> None:
    path = save_detector(tmp_path)
    card = read_card(path)
    assert card.operating_points is None and default_score_threshold(card) == DEFAULT_SCORE_THRESHOLD
    assert score_threshold_source(card).startswith("default 0.5")
    sweep = overall_by_cut(DETECTIONS, TRUTH, IDS, CLASSES, SCORE_CUTS)
    points = detector_operating_points(0.3, DETECTOR_CLASSES, FITTED, sweep)
    tensors = weights_fingerprint(path)
    write_card(path, card.replace(operating_points=points))
    back = read_card(path)
    assert weights_fingerprint(path) == tensors  # the tensors are copied as stored
    assert back.operating_points["rule"] == DETECTOR_RULE and back.operating_points["thresholds"] == {
        c: 0.3 for c in DETECTOR_CLASSES
    }
    check_operating_points(back.operating_points, back.labels)  # raises when the form does not fit
    assert default_score_threshold(back) == 0.3
    assert score_threshold_source(back) == (
        "chosen on validation (demo-phantoms/valid, highest overall F1 at IoU 0.5, one cut pooled over "
        "every class)"
    )
    assert json.loads(path.with_suffix(".json").read_text())["operating_points"]["score_threshold"] == 0.3
    with pytest.raises(CardError, match="must lie in"):
        back.replace(operating_points={**points, "thresholds": {"Nodule": 1.5}})
    # A classifier's thresholds are probabilities, not box score cuts; detectors fused start at the lowest.
    classifier = read_card(BUNDLED_DIR / "demo-tiny.safetensors")
    assert classifier.operating_points and default_score_threshold(classifier) == DEFAULT_SCORE_THRESHOLD
    assert shared_score_threshold([back, back])[0] == 0.3
    value, source = shared_score_threshold([back, card])
    assert value == 0.3 and source == (
        "the lowest of the members' defaults: 0.30 (chosen on validation), 0.50 (default)"
    )


def _crafted_boxes(ws: Workspace, rows: pd.DataFrame) -> pd.DataFrame:
    """A box on every truth box at 0.42, and two misses per image (a 2 px box at 0.6, one at 0.3)."""
    ids = [str(i) for i in rows["image_id"]]
    hits = truth_boxes(ws, DEMO_DATASET, ids, DETECTOR_CLASSES).assign(score=0.42)
    misses = [(i, "Nodule", 0.0, 0.0, 2.0, 2.0, score) for i in ids for score in (0.6, 0.3)]
    frame = pd.DataFrame(misses, columns=list(DETECTION_COLUMNS))
    return pd.concat([hits[list(DETECTION_COLUMNS)], frame], ignore_index=True)


def test_checkpoint_calibrate_stores_a_detectors_cut_and_evaluate_starts_from_it(
    demo_ws: Workspace, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = []

    def run_detector(loaded, rows, cache, progress=None):  # the network's boxes, made to order
        runs.append(len(rows))
        return _crafted_boxes(demo_ws, rows)

    monkeypatch.setattr(detect_predict, "run_detector", run_detector)
    path = save_detector(demo_ws.home)
    args = ["checkpoint", "calibrate", str(path), "--dataset", DEMO_DATASET]
    for option in (["--method", "platt"], ["--threshold", "f1"], ["--target", "0.9"]):
        assert main([*args, *option]) != 0
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {option[0]}: only for classifiers;") and "\n" not in err
    assert runs == [] and read_card(path).operating_points is None
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # The hits score 0.42 and the misses 0.6 and 0.3: 0.35 and 0.40 keep every hit and the fewest misses.
    assert out["score_threshold"] == 0.4 and out["task"] == "detect"
    before, after = out["valid"]["at_default"], out["valid"]["at_threshold"]
    assert before["score_threshold"] == 0.5 and before["mAR@0.5"] == 0.0 and before["F1@0.5"] == 0.0
    n_boxes = out["operating_points"]["fitted_on"]["n_boxes"]
    assert after["mAR@0.5"] == 1.0 and after["F1@0.5"] == pytest.approx(2 * n_boxes / (2 * n_boxes + 24))
    assert after["boxes_per_image"] == pytest.approx((n_boxes + 24) / 24, abs=1e-4)
    points = read_card(path).operating_points
    assert points["thresholds"] == dict.fromkeys(DETECTOR_CLASSES, 0.4) and points["rule"] == "max_f1_iou50"
    assert (points["fitted_on"]["dataset"], points["fitted_on"]["split"]) == (DEMO_DATASET, "valid")
    assert runs == [24]  # the validation split, once
    # evaluate without --score-threshold counts boxes from the card's cut; the card's rewrite kept the boxes.
    evaluate = ["evaluate", str(path), "--dataset", DEMO_DATASET, "--split", "valid", "--bootstrap", "20"]
    assert main([*evaluate, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["score_threshold"] == 0.4 and report["score_threshold_source"].startswith(
        "chosen on validation (demo-phantoms/valid"
    )
    overall = next(row for row in report["boxes"] if row["class"] == OVERALL)
    assert overall["F1@0.5"] == pytest.approx(after["F1@0.5"]) and runs == [24]
    assert main([*evaluate, "--score-threshold", "0.5", "--json"]) == 0
    given = json.loads(capsys.readouterr().out)
    assert (given["score_threshold"], given["score_threshold_source"]) == (
        0.5,
        "given with --score-threshold",
    )


def _seed_hits(ws: Workspace, path: Path, score: float) -> int:
    """Add a box on every validation truth box, at ``score``, to the detector's stored validation boxes."""
    card = read_card(path)
    key = detections_key(path, ws, DEMO_DATASET, "valid", card.preprocess.key())
    stored = ws.predictions_dir / f"{key}.detections.parquet"
    table = pd.read_parquet(stored)
    ids = split_rows(ws.load_dataset(DEMO_DATASET).index, "valid")["image_id"].astype(str).tolist()
    hits = truth_boxes(ws, DEMO_DATASET, ids, DETECTOR_CLASSES).assign(score=score)
    pd.concat([table, hits[table.columns]], ignore_index=True).to_parquet(stored, index=False)
    return len(hits)


@pytest.mark.slow  # runs a small Faster R-CNN over the 24 validation phantoms
def test_a_detector_that_finds_nothing_gets_no_cut_and_its_stored_boxes_are_reused(
    demo_ws: Workspace, capsys: pytest.CaptureFixture
) -> None:
    path = save_detector(demo_ws.home)  # random weights: none of its boxes lies on a truth box
    args = ["checkpoint", "calibrate", str(path), "--dataset", DEMO_DATASET]
    assert main(args) != 0  # runs the detector over the validation split, then finds nothing to choose
    assert "F1 is 0 at every cut" in capsys.readouterr().err
    assert read_card(path).operating_points is None
    _seed_hits(demo_ws, path, score=0.42)  # the stored boxes are reused: the network is not run again
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["score_threshold"] == 0.4 and out["valid"]["at_threshold"]["mAR@0.5"] == 1.0
    assert default_score_threshold(read_card(path)) == 0.4
