"""Ensemble strategies: voting, averaging, weighted averaging and stacking, fitted on validation only."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import log_loss, roc_auc_score

from cxrcore.evaluate.ensemble import (
    METHODS,
    check_method,
    fit_ensemble,
    fit_stacker,
    fit_weights,
    majority_vote,
    operating_thresholds,
    simple_average,
    weighted_average,
)
from cxrcore.models.ensemble import EnsembleError, check_members

# Three members, two images, two labels: PROBS[member, image, label].
PROBS = np.array(
    [
        [[0.9, 0.2], [0.4, 0.6]],
        [[0.6, 0.55], [0.1, 0.7]],
        [[0.3, 0.1], [0.5, 0.8]],
    ]
)


def _one_good_member(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Member 0 = truth + small noise, members 1-2 = pure noise; 10% of labels unknown."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (n, 3)).astype(float)
    good = np.clip(0.2 + 0.6 * y + rng.normal(0.0, 0.1, (n, 3)), 0.0, 1.0)
    probs = np.concatenate([good[None], rng.random((2, n, 3))])
    y[rng.random((n, 3)) < 0.1] = np.nan
    return probs, y


def _half_signal(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two members, each informative on its own random half of the images and noise on the other half."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (n, 2)).astype(float)
    half = rng.random((n, 2)) < 0.5
    signal = 3.0 * (2.0 * y - 1.0)
    a = np.where(half, signal + rng.normal(0.0, 1.0, (n, 2)), rng.normal(0.0, 1.0, (n, 2)))
    b = np.where(~half, signal + rng.normal(0.0, 1.0, (n, 2)), rng.normal(0.0, 1.0, (n, 2)))
    return expit(np.stack([a, b])), y


def _known_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    known = ~np.isnan(y)
    return float(log_loss(y[known], p[known]))


# --- members and methods ---------------------------------------------------------------------------


def test_check_members_returns_the_shared_labels() -> None:
    assert check_members([("A", "B"), ["A", "B"], ("A", "B")]) == ("A", "B")


def test_check_members_names_missing_labels_and_member() -> None:
    with pytest.raises(EnsembleError) as err:
        check_members([("Nodule", "Effusion", "Mass"), ("Nodule", "Effusion", "Mass"), ("Nodule", "Hernia")])
    message = str(err.value)
    assert "member 2" in message
    assert "Effusion" in message and "Mass" in message and "Hernia" in message
    assert "member 1" not in message


def test_check_members_rejects_a_different_order_and_a_single_member() -> None:
    with pytest.raises(EnsembleError, match="orders the labels"):
        check_members([("A", "B"), ("B", "A")])
    with pytest.raises(EnsembleError, match="at least 2 members"):
        check_members([("A", "B")])


def test_unknown_method_suggests_a_close_match_and_lists_options() -> None:
    assert check_method("stack") == "stack"
    with pytest.raises(EnsembleError) as err:
        check_method("stak")
    assert "did you mean 'stack'" in str(err.value)
    assert all(m in str(err.value) for m in METHODS)
    with pytest.raises(EnsembleError, match="did you mean 'weighted'"):
        fit_ensemble("wieghted", PROBS, np.array([[1.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(EnsembleError, match="did you mean 'optimise'"):
        fit_weights(PROBS, np.array([[1.0, 0.0], [0.0, 1.0]]), method="optimize")  # type: ignore[arg-type]


# --- voting and averaging, worked by hand ----------------------------------------------------------


def test_majority_vote_with_a_scalar_threshold() -> None:
    # A member votes positive when p >= 0.5 (0.5 itself counts: member 2, image 1, label 0).
    expected = np.array([[2 / 3, 1 / 3], [1 / 3, 1.0]])
    np.testing.assert_allclose(majority_vote(PROBS, 0.5), expected)


def test_majority_vote_with_per_label_thresholds() -> None:
    # label 0 at 0.35: image 0 -> Y Y N, image 1 -> Y N Y; label 1 at 0.65: image 0 -> N N N, image 1 -> N Y Y
    expected = np.array([[2 / 3, 0.0], [2 / 3, 2 / 3]])
    np.testing.assert_allclose(majority_vote(PROBS, np.array([0.35, 0.65])), expected)


def test_majority_vote_with_per_member_thresholds() -> None:
    thresholds = np.array([[0.95, 0.1], [0.5, 0.6], [0.6, 0.75]])
    # label 0: image 0 -> N Y N, image 1 -> N N N; label 1: image 0 -> Y N N, image 1 -> Y Y Y
    expected = np.array([[1 / 3, 1 / 3], [0.0, 1.0]])
    np.testing.assert_allclose(majority_vote(PROBS, thresholds), expected)
    fitted = fit_ensemble("vote", PROBS, np.array([[1.0, 0.0], [0.0, 1.0]]), thresholds=thresholds)
    np.testing.assert_allclose(fitted.predict(PROBS), expected)


def test_majority_vote_tie_scores_one_half_and_is_not_a_majority() -> None:
    score = majority_vote(np.array([[[0.7]], [[0.3]]]), 0.5)
    assert score[0, 0] == 0.5
    assert not score[0, 0] > 0.5


def test_majority_vote_rejects_a_threshold_shape_that_fits_nothing() -> None:
    with pytest.raises(EnsembleError, match=r"valid shapes"):
        majority_vote(PROBS, np.array([0.5, 0.5, 0.5]))


def test_simple_and_weighted_average_by_hand() -> None:
    np.testing.assert_allclose(simple_average(PROBS), [[0.6, 0.85 / 3], [1.0 / 3, 0.7]])
    # weights 2:1:1 (normalised to 0.5, 0.25, 0.25) for both labels
    np.testing.assert_allclose(
        weighted_average(PROBS, np.array([2.0, 1.0, 1.0])), [[0.675, 0.2625], [0.35, 0.675]]
    )
    per_label = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])  # label 0 <- member 0, label 1 <- member 2
    np.testing.assert_allclose(weighted_average(PROBS, per_label), [[0.9, 0.1], [0.4, 0.8]])
    with pytest.raises(EnsembleError, match="non-negative"):
        weighted_average(PROBS, np.array([1.0, -1.0, 1.0]))


def test_youden_thresholds_are_each_members_validation_operating_point() -> None:
    probs = np.array([[[0.1], [0.3], [0.6], [0.8]], [[0.2], [0.7], [0.4], [0.9]]])
    y = np.array([[0.0], [0.0], [1.0], [1.0]])
    # member 0 separates perfectly at 0.6; member 1: J = 0.5 first at 0.9 (tpr 0.5, fpr 0)
    np.testing.assert_allclose(operating_thresholds(probs, y), [[0.6], [0.9]])


# --- weighted averaging ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["optimise", "auroc"])
def test_fit_weights_favours_the_informative_member(method: str) -> None:
    val_probs, val_true = _one_good_member(200, seed=1)
    test_probs, test_true = _one_good_member(200, seed=2)
    weights = fit_weights(val_probs, val_true, method=method)  # type: ignore[arg-type]
    assert weights.shape == (3, 3)
    assert np.all(weights >= 0.0)
    np.testing.assert_allclose(weights.sum(axis=0), 1.0)
    assert np.all(weights.argmax(axis=0) == 0)
    assert np.all(weights[0] > 0.75)
    weighted = weighted_average(test_probs, weights)
    simple = simple_average(test_probs)
    for j in range(3):
        loss_weighted = _known_log_loss(test_true[:, j], weighted[:, j])
        assert loss_weighted <= _known_log_loss(test_true[:, j], simple[:, j])


def test_optimised_weights_match_a_grid_search_over_the_simplex() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300).astype(float)
    probs = expit(np.stack([(2 * y - 1) + rng.normal(0.0, 2.0, 300) for _ in range(3)]))
    weights = fit_weights(probs[:, :, None], y[:, None], method="optimise")[:, 0]
    steps = np.linspace(0.0, 1.0, 101)
    grid = np.array([(a, b, 1.0 - a - b) for a, b in itertools.product(steps, repeat=2) if a + b <= 1.0])
    mixed = np.clip(grid @ probs, 1e-6, 1 - 1e-6)  # (n_grid, n_images)
    grid_losses = -np.mean(y * np.log(mixed) + (1 - y) * np.log1p(-mixed), axis=1)
    assert log_loss(y, weights @ probs) <= grid_losses.min() + 1e-9
    np.testing.assert_allclose(weights, grid[grid_losses.argmin()], atol=0.02)
    assert np.all(weights > 0.1)  # independent errors: the optimum is inside the simplex


@pytest.mark.parametrize("method", ["optimise", "auroc"])
def test_fit_weights_ignores_nan_labelled_images(method: str) -> None:
    val_probs, val_true = _one_good_member(200, seed=4)
    before = fit_weights(val_probs, val_true, method=method)  # type: ignore[arg-type]
    scrambled = val_probs.copy()
    unknown = np.isnan(val_true)
    scrambled[:, unknown] = np.random.default_rng(5).random((3, int(unknown.sum())))
    np.testing.assert_allclose(fit_weights(scrambled, val_true, method=method), before)  # type: ignore[arg-type]


def test_fit_weights_uses_uniform_weights_for_a_single_class_label() -> None:
    val_probs, val_true = _one_good_member(100, seed=6)
    val_true[:, 1] = np.where(np.isnan(val_true[:, 1]), np.nan, 0.0)
    with pytest.warns(UserWarning, match="label 1: only one class"):
        weights = fit_weights(val_probs, val_true)
    np.testing.assert_allclose(weights[:, 1], 1 / 3)
    assert weights[0, 0] > 0.75


# --- stacking --------------------------------------------------------------------------------------


def test_stacking_beats_the_best_member_when_members_see_different_halves() -> None:
    val_probs, val_true = _half_signal(300, seed=7)
    test_probs, test_true = _half_signal(300, seed=8)
    stacked = fit_stacker(val_probs, val_true, seed=0).predict(test_probs)
    for j in range(2):
        member_auc = max(roc_auc_score(test_true[:, j], test_probs[m, :, j]) for m in range(2))
        member_loss = min(log_loss(test_true[:, j], test_probs[m, :, j]) for m in range(2))
        assert member_auc < 0.9
        assert roc_auc_score(test_true[:, j], stacked[:, j]) > member_auc + 0.08
        assert log_loss(test_true[:, j], stacked[:, j]) < 0.5 * member_loss


def test_stacking_depends_on_validation_only() -> None:
    val_probs, val_true = _half_signal(200, seed=9)
    test_probs, test_true = _half_signal(100, seed=10)
    first = fit_ensemble("stack", val_probs, val_true, seed=0).predict(test_probs)
    np.random.default_rng(11).shuffle(test_true)
    fitted = fit_ensemble("stack", val_probs, val_true, seed=0)
    np.testing.assert_array_equal(fitted.predict(test_probs), first)
    # Each test image is scored on its own: reordering or subsetting the test set changes nothing else.
    order = np.random.default_rng(12).permutation(100)
    np.testing.assert_allclose(fitted.predict(test_probs[:, order]), first[order])
    np.testing.assert_allclose(fitted.predict(test_probs[:, :7]), first[:7])
    # The validation labels do drive the fit.
    shuffled_val = val_true[np.random.default_rng(13).permutation(200)]
    other = fit_ensemble("stack", val_probs, shuffled_val, seed=0).predict(test_probs)
    assert not np.allclose(first, other)


def test_stacking_falls_back_with_a_reason_on_a_single_class_label() -> None:
    val_probs, val_true = _half_signal(120, seed=14)
    val_true[:, 1] = 0.0
    val_true[:5, 1] = np.nan
    val_true[5, 1] = 1.0  # one positive only: fewer than 2 of that class
    with pytest.warns(UserWarning, match="label 1: 1 positive and 114 negative"):
        fitted = fit_ensemble("stack", val_probs, val_true, labels=("Nodule", "Mass"))
    stacker = fitted.stacker
    assert stacker is not None
    assert set(stacker.fallback) == {1}
    assert "simple averaging" in stacker.fallback[1]
    assert np.isnan(stacker.coefficients[1]).all() and np.isfinite(stacker.coefficients[0]).all()
    test_probs, _ = _half_signal(50, seed=15)
    np.testing.assert_allclose(fitted.predict(test_probs)[:, 1], test_probs[:, :, 1].mean(axis=0))
    description = fitted.describe()
    assert "simple averaging" in description["fallback"]["Mass"]
    assert [row[1] for row in description["coefficients"]] == [None, None]
    assert description["intercepts"][1] is None and isinstance(description["intercepts"][0], float)
    json.dumps(description, allow_nan=False)


def test_stacking_uses_at_most_the_rarer_class_count_of_folds_and_ignores_nan() -> None:
    val_probs, val_true = _half_signal(150, seed=16)
    positives = np.flatnonzero(val_true[:, 0] == 1.0)
    val_true[positives[3:], 0] = 0.0  # three positives left -> 3 folds
    stacker = fit_stacker(val_probs, val_true)
    assert stacker.models[0].cv.get_n_splits() == 3
    assert stacker.models[1].cv.get_n_splits() == 5
    # Appending NaN-labelled images with arbitrary probabilities leaves the fit unchanged.
    rng = np.random.default_rng(17)
    more_probs = np.concatenate([val_probs, rng.random((2, 40, 2))], axis=1)
    more_true = np.concatenate([val_true, np.full((40, 2), np.nan)])
    np.testing.assert_allclose(fit_stacker(more_probs, more_true).coefficients, stacker.coefficients)


# --- the common interface --------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_every_method_fits_on_validation_and_predicts_test(method: str) -> None:
    val_probs, val_true = _one_good_member(150, seed=18)
    test_probs, test_true = _one_good_member(80, seed=19)
    fitted = fit_ensemble(method, val_probs, val_true, labels=("A", "B", "C"))
    scores = fitted.predict(test_probs)
    assert scores.shape == (80, 3)
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    known = ~np.isnan(test_true[:, 0])
    assert roc_auc_score(test_true[known, 0], scores[known, 0]) > 0.75
    description = fitted.describe()
    assert description["method"] == method and description["labels"] == ["A", "B", "C"]
    json.dumps(description, allow_nan=False)
    key = {"vote": "thresholds", "mean": "weights", "weighted": "weights", "stack": "coefficients"}[method]
    assert np.asarray(description[key], dtype=float).shape == (3, 3)  # (n_members, n_labels)
    if method in ("mean", "weighted"):
        np.testing.assert_allclose(np.sum(description["weights"], axis=0), 1.0)
    with pytest.raises(EnsembleError, match="fitted on 3 members"):
        fitted.predict(test_probs[:2])


def test_inputs_are_checked() -> None:
    with pytest.raises(EnsembleError, match="1, 0 or NaN"):
        fit_ensemble("mean", PROBS, np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(EnsembleError, match="labels have shape"):
        fit_ensemble("mean", PROBS, np.array([[1.0, 0.0]]))
    with pytest.raises(EnsembleError, match=r"in \[0, 1\]"):
        simple_average(PROBS * 2.0)
    with pytest.raises(EnsembleError, match="at least 2 members"):
        fit_ensemble("mean", PROBS[:1], np.array([[1.0, 0.0], [0.0, 1.0]]))
