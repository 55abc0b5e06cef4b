"""Fitting calibrations and operating points, applying them from a card, and their round trip via files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.isotonic import IsotonicRegression

from cxrcore.evaluate.calibration import (
    before_after,
    calibration_scores,
    default_method,
    expected_calibration_error,
    fit_calibration,
    fit_isotonic,
    fit_platt,
    fit_temperature,
)
from cxrcore.evaluate.classification import operating_point
from cxrcore.evaluate.operating_points import choose_operating_points, side
from cxrcore.models import create_model, load_checkpoint, read_card, save_checkpoint, write_card
from cxrcore.models.card import file_fingerprint, weights_fingerprint
from cxrcore.models.checkpoint import Checkpoint, CheckpointError
from cxrcore.models.model_card import CardError, ModelCard
from cxrcore.models.readout import calibrate_logits, check_calibration, expit, thresholds

LABELS = ("a", "b", "c")


def _sample(n: int, seed: int, scale: float = 1.0, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from calibrated logits, and those logits distorted by ``scale`` and ``shift``."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(-1.0, 1.5, size=(n, len(LABELS)))
    y = (rng.random(true_logits.shape) < expit(true_logits)).astype(float)
    return y, true_logits * scale + shift


def test_temperature_scaling_undoes_overconfident_logits_and_lowers_held_out_ece() -> None:
    y_fit, z_fit = _sample(4000, seed=0, scale=3.0)
    y_new, z_new = _sample(4000, seed=1, scale=3.0)
    calibration = fit_calibration(y_fit, z_fit, LABELS, "temperature")
    temperatures = [calibration["labels"][label]["temperature"] for label in LABELS]
    np.testing.assert_allclose(temperatures, 3.0, rtol=0.12)
    before = calibration_scores(y_new, expit(z_new), LABELS)
    after = calibration_scores(y_new, calibrate_logits(calibration, LABELS, z_new), LABELS)
    assert (after["ece"] < before["ece"] / 2).all()
    assert (after["brier"] < before["brier"]).all()
    table = before_after(y_new, z_new, calibration, LABELS)
    assert table.loc["mean", "ece_after"] == pytest.approx(after.loc["mean", "ece"])


class _LogitColumn(ClassifierMixin, BaseEstimator):
    """A fitted stand-in classifier whose decision function is its one input column (for scikit-learn)."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> _LogitColumn:
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)[:, 0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (self.decision_function(x) > 0).astype(int)


def test_temperature_matches_scikit_learns_temperature_scaling() -> None:
    y, z = _sample(3000, seed=2, scale=0.4)
    ours = expit(z[:, 0] / fit_temperature(y[:, 0], z[:, 0]))
    column = _LogitColumn().fit(z[:, :1], y[:, 0])
    theirs = CalibratedClassifierCV(FrozenEstimator(column), method="temperature")
    theirs.fit(z[:, :1], y[:, 0].astype(int))
    np.testing.assert_allclose(ours, theirs.predict_proba(z[:, :1])[:, 1], atol=1e-4)


def test_platt_scaling_corrects_a_shift_that_temperature_cannot() -> None:
    # A class-weighted loss centres the logits: the same data shifted up by 2 logits.
    y_fit, z_fit = _sample(4000, seed=3, shift=2.0)
    y_new, z_new = _sample(4000, seed=4, shift=2.0)
    platt = fit_calibration(y_fit, z_fit, LABELS, "platt")
    temperature = fit_calibration(y_fit, z_fit, LABELS, "temperature")
    for label in LABELS:
        assert platt["labels"][label]["slope"] == pytest.approx(1.0, abs=0.12)
        assert platt["labels"][label]["intercept"] == pytest.approx(-2.0, abs=0.2)
    ece = {
        name: calibration_scores(y_new, calibrate_logits(c, LABELS, z_new), LABELS).loc["mean", "ece"]
        for name, c in (("platt", platt), ("temperature", temperature))
    }
    assert ece["platt"] < 0.03 < ece["temperature"]
    assert default_method("weighted_bce") == "platt" and default_method("bce") == "temperature"


def test_platt_keeps_the_ranking_when_validation_ranks_backwards() -> None:
    y = np.array([1, 1, 0, 0, 0, 0, 0, 1.0])
    z = np.array([-2, -1.5, 1, 2, 0.5, 1.5, 3, 0.0])  # positives score lower
    params = fit_platt(y, z)
    assert params["slope"] == 1.0 and "note" in params
    probs = calibrate_logits({"method": "platt", "labels": {"a": params}}, ("a",), z[:, None])[:, 0]
    assert np.all(np.diff(probs[np.argsort(z)]) > 0)


def test_isotonic_points_predict_as_scikit_learn_does() -> None:
    y, z = _sample(500, seed=5, scale=2.0)
    params = fit_isotonic(y[:, 1], z[:, 1])
    model = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(z[:, 1], y[:, 1])
    grid = np.linspace(z.min() - 3, z.max() + 3, 301)
    ours = calibrate_logits({"method": "isotonic", "labels": {"b": params}}, ("b",), grid[:, None])[:, 0]
    np.testing.assert_allclose(ours, model.predict(grid), atol=1e-12)


def test_a_single_class_label_is_skipped_and_keeps_the_sigmoid() -> None:
    y, z = _sample(200, seed=6)
    y[:, 2] = 0.0
    y[:5, 1] = np.nan
    calibration = fit_calibration(y, z, LABELS, "temperature")
    assert set(calibration["labels"]) == {"a", "b"} and set(calibration["skipped"]) == {"c"}
    probs = calibrate_logits(calibration, LABELS, z)
    np.testing.assert_allclose(probs[:, 2], expit(z[:, 2]))
    assert calibrate_logits(None, LABELS, z) == pytest.approx(expit(z))


@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        ({"method": "platypus", "labels": {}}, "did you mean 'platt'"),
        ({"method": "temperature", "labels": {"z": {"temperature": 1.0}}}, "does not have"),
        ({"method": "temperature", "labels": {"a": {"temperature": -1.0}}}, "positive"),
        ({"method": "platt", "labels": {"a": {"slope": 1.0}}}, "lacks"),
        ({"method": "isotonic", "labels": {"a": {"logits": [1, 0], "probabilities": [0, 1]}}}, "increasing"),
    ],
)
def test_malformed_stored_calibrations_are_refused(calibration: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_calibration(calibration, LABELS)
    model = create_model("tiny", labels=LABELS, input_size=64)
    with pytest.raises(CardError, match=message):
        ModelCard.for_spec(model.spec, calibration=calibration)


def test_operating_points_follow_the_rules_and_mark_sides() -> None:
    y, z = _sample(600, seed=7)
    probs = expit(z)
    y[:, 2] = 1.0
    points = choose_operating_points(y, probs, LABELS, "sensitivity", 0.8)
    for j, label in enumerate(LABELS[:2]):
        assert points["thresholds"][label] == operating_point(y[:, j], probs[:, j], "sensitivity", 0.8)
        sensitivity = np.mean(probs[y[:, j] == 1, j] >= points["thresholds"][label])
        assert sensitivity >= 0.8
    assert "c" in points["skipped"] and "c" not in points["thresholds"]
    assert points["description"] == "a target sensitivity 0.8"
    with pytest.raises(ValueError, match="needs a target"):
        choose_operating_points(y, probs, LABELS, "specificity")
    assert side(0.3, 0.3) == "above" and side(0.29, 0.3) == "below" and side(0.5, None) == "no threshold"


def test_calibration_and_thresholds_round_trip_through_the_checkpoint(tmp_path: Path) -> None:
    model = create_model("tiny", labels=LABELS, input_size=64)
    path = save_checkpoint(tmp_path / "run", model, {"dataset": "phantoms"}, half=True)
    y, z = _sample(300, seed=8, scale=2.0)
    calibration = fit_calibration(y, z, LABELS, "temperature")
    points = choose_operating_points(y, calibrate_logits(calibration, LABELS, z), LABELS)
    weights_before, file_before = weights_fingerprint(path), file_fingerprint(path)
    card = read_card(path)
    write_card(path, card.replace(calibration=calibration, operating_points=points))
    assert weights_fingerprint(path) == weights_before and file_fingerprint(path) != file_before
    loaded = load_checkpoint(path)
    assert thresholds(loaded.card) == points["thresholds"] and loaded.card.calibration == calibration
    assert loaded.card.created_at == card.created_at and loaded.card.weights_dtype == "float16"
    for name, tensor in model.state_dict().items():  # tensors copied as stored (float16)
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor.half().float())
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        logits = loaded.model(x)
    np.testing.assert_allclose(
        loaded.probabilities(logits), calibrate_logits(calibration, LABELS, logits.double().numpy())
    )
    with pytest.raises(CheckpointError, match="another model"):
        other = create_model("tiny", labels=("x", "y", "z"), input_size=64)
        write_card(path, ModelCard.for_spec(other.spec))
    bare = Checkpoint(model.eval(), ModelCard.for_spec(model.spec))
    assert bare.probabilities(logits) == pytest.approx(expit(logits.double().numpy()))


def test_expected_calibration_error_of_the_fitted_scores_matches_the_metric() -> None:
    y, z = _sample(300, seed=9)
    table = calibration_scores(y, expit(z), LABELS)
    assert table.loc["b", "ece"] == pytest.approx(expected_calibration_error(y[:, 1], expit(z[:, 1])))
    assert table.loc["mean", "n"] == 900
