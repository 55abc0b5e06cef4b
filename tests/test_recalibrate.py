"""Calibrating a checkpoint on the demo phantoms: the command, the card, every place probabilities appear."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cxrcore.cli import main
from cxrcore.evaluate.calibration import expected_calibration_error
from cxrcore.evaluate.predict import predict
from cxrcore.evaluate.report import evaluate_checkpoint
from cxrcore.explain.engine import explain
from cxrcore.models import load_checkpoint, read_card, save_checkpoint, write_card
from cxrcore.models.readout import calibrate_logits, expit, thresholds
from cxrcore.store import Workspace

BUNDLED = Path(__file__).resolve().parents[1] / "checkpoints"
DATASET = "demo-phantoms"


def _miscalibrated(tmp_path: Path, factor: float = 0.25) -> Path:
    """The bundled demo-localiser with its logits scaled by ``factor``: the same ranking, underconfident."""
    loaded = load_checkpoint(BUNDLED / "demo-localiser.safetensors")
    head = loaded.model.classifier_module()
    with torch.no_grad():
        head.weight.mul_(factor)
        head.bias.mul_(factor)
    return save_checkpoint(tmp_path / "miscalibrated", loaded.model, loaded.card.replace(calibration=None))


def _mean_ece(y: np.ndarray, p: np.ndarray) -> float:
    keep = [j for j in range(y.shape[1]) if np.nansum(y[:, j]) > 0]
    return float(np.mean([expected_calibration_error(y[:, j], p[:, j]) for j in keep]))


@pytest.mark.slow  # about 3 s: two demo-model passes over the validation and test splits
def test_calibration_lowers_ece_on_held_out_phantoms(
    demo_ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = _miscalibrated(tmp_path)
    raw_test = predict(path, demo_ws, DATASET, "test")
    assert not raw_test.from_cache
    code = main(
        ["checkpoint", "calibrate", str(path), "--dataset", DATASET, "--method", "temperature", "--json"]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "temperature"
    card = read_card(path)
    temperatures = [card.calibration["labels"][label]["temperature"] for label in card.labels]
    assert all(t < 0.5 for t in temperatures)  # the underconfidence is undone by sharpening every label
    assert card.calibration["fitted_on"]["split"] == "valid"
    # The test split was never used for fitting; its stored logits are reused, probabilities recalibrated.
    test = predict(path, demo_ws, DATASET, "test")
    assert test.from_cache
    np.testing.assert_allclose(test.logits, raw_test.logits)
    before, after = _mean_ece(test.y_true, raw_test.y_prob), _mean_ece(test.y_true, test.y_prob)
    assert after < 0.5 * before
    np.testing.assert_allclose(test.raw_prob, raw_test.y_prob)
    stored_test = card.calibration["scores"][1]
    assert stored_test["split"] == "test"
    assert stored_test["labels"]["mean"]["ece_after"] < stored_test["labels"]["mean"]["ece_before"]
    # Thresholds were chosen on calibrated validation probabilities, one per label.
    assert set(thresholds(card)) == set(card.labels) and card.operating_points["rule"] == "youden"


@pytest.mark.slow
def test_explain_and_evaluate_use_the_calibrated_probabilities(demo_ws: Workspace, tmp_path: Path) -> None:
    path = _miscalibrated(tmp_path)
    assert main(["checkpoint", "calibrate", str(path), "--dataset", DATASET]) == 0
    checkpoint = load_checkpoint(path)
    assert checkpoint.card.calibration["method"] == "platt"  # "auto" after its frequency-weighted BCE
    pixels = np.random.default_rng(0).random((96, 96), dtype=np.float32)
    result = explain(checkpoint, pixels, methods=("cam",))
    logits = np.array([result.logits[label] for label in checkpoint.labels])
    expected = calibrate_logits(checkpoint.card.calibration, checkpoint.labels, logits)
    assert [result.probabilities[label] for label in checkpoint.labels] == pytest.approx(expected)
    assert not np.allclose(expected, expit(logits))
    evaluation = evaluate_checkpoint(path, demo_ws, DATASET, "test", n_boot=50)
    np.testing.assert_allclose(evaluation.predictions.y_prob, predict(path, demo_ws, DATASET, "test").y_prob)
    assert "validation split of demo-phantoms" in evaluation.threshold_source


def _register_unsplit(ws: Workspace, name: str, tmp_path: Path, keep_split: str | None = None) -> None:
    """The demo's images registered again, without a split (or keeping only one split's rows as test)."""
    index = ws.load_dataset(DATASET).index
    if keep_split is not None:
        index = index[index["split"] == keep_split].assign(split="test")
    labels = ["Nodule", "Opacity", "Effusion"]
    table = index[["path", "patient_id", *labels, *(["split"] if keep_split else [])]]
    csv = tmp_path / f"{name}.csv"
    table.to_csv(csv, index=False)
    root = str(Path(index["path"].iloc[0]).parent)  # the images' folder: paths must lie inside the root
    assert main(["data", "register", name, "--source", "csv", "--csv-path", str(csv), "--root", root]) == 0


def test_an_unsplit_dataset_is_scored_at_the_cards_operating_points(
    demo_ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "demo-tiny.safetensors"
    shutil.copyfile(BUNDLED / "demo-tiny.safetensors", path)
    assert main(["checkpoint", "calibrate", str(path), "--dataset", DATASET]) == 0
    _register_unsplit(demo_ws, "someone-elses", tmp_path)
    _register_unsplit(demo_ws, "test-only", tmp_path, keep_split="test")
    capsys.readouterr()
    stored = thresholds(read_card(path))
    for dataset, split in (("someone-elses", "all"), ("test-only", "test")):
        code = main(
            ["evaluate", str(path), "--dataset", dataset, "--split", split, "--json", "--bootstrap", "50"]
        )
        assert code == 0
        report = json.loads(capsys.readouterr().out)
        assert report["thresholds"] == pytest.approx(stored)
        assert "model card's operating points" in report["threshold_source"]
    metrics = pd.DataFrame(report["metrics"]).T
    assert metrics.loc["Nodule", "threshold"] == pytest.approx(stored["Nodule"])
    # Without stored operating points the fixed 0.5 is used, and said.
    plain = tmp_path / "plain.safetensors"
    shutil.copyfile(BUNDLED / "demo-tiny.safetensors", plain)
    write_card(plain, read_card(plain).replace(calibration=None, operating_points=None))
    args = ["evaluate", str(plain), "--dataset", "someone-elses", "--split", "all", "--json"]
    args += ["--bootstrap", "20"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["thresholds"].values()) == {0.5} and "no operating points" in report["threshold_source"]


def test_calibrate_refuses_a_dataset_without_validation_images(
    demo_ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _register_unsplit(demo_ws, "someone-elses", tmp_path)
    path = tmp_path / "demo-tiny.safetensors"
    shutil.copyfile(BUNDLED / "demo-tiny.safetensors", path)
    assert main(["checkpoint", "calibrate", str(path), "--dataset", "someone-elses"]) == 2
    assert "no validation images" in capsys.readouterr().err
    assert (
        main(["checkpoint", "calibrate", str(path), "--dataset", DATASET, "--threshold", "specificity"]) == 2
    )
    assert "needs a target" in capsys.readouterr().err
    assert read_card(path).to_dict() == read_card(BUNDLED / "demo-tiny.safetensors").to_dict()  # untouched


@pytest.mark.slow  # a page run with a model
def test_the_evaluate_page_scores_an_unsplit_dataset_at_the_cards_thresholds(
    demo_ws: Workspace, tmp_path: Path
) -> None:
    from page_harness import run, run_page, wait_for_background_predictions

    from cxrcore.ui import state

    _register_unsplit(demo_ws, "someone-elses", tmp_path)
    at = run_page("pages/3_Evaluate.py", timeout=180)
    at.session_state[state.DATASET] = "someone-elses"
    at.session_state[state.CHECKPOINT] = str(BUNDLED / "demo-tiny.safetensors")
    run(at)
    assert at.selectbox(key="eval_split").value == "all"
    assert at.get("progress")  # all 240 images: predicted in the background
    wait_for_background_predictions(demo_ws.home)
    run(at)
    assert not [w.value for w in at.warning]
    assert any("model card's operating points" in c.value for c in at.caption)
