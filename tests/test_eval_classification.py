"""Classification metrics against scikit-learn, hand-worked cases and slow reference implementations."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from cxrcore.evaluate.calibration import brier_score, expected_calibration_error, reliability_curve
from cxrcore.evaluate.classification import (
    OPERATING_POINTS,
    SUMMARY_COLUMNS,
    auroc_ci,
    average_precision,
    bootstrap_auroc,
    operating_point,
    pr_points,
    roc_points,
    summarise,
    threshold_metrics,
)
from cxrcore.evaluate.delong import DeLongResult, delong_ci, delong_covariance, delong_test

TOL = 1e-9


def make_data(n: int, n_labels: int = 3, tied: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Informative probabilities for a label matrix with ~10 % unknown (NaN) labels."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < np.linspace(0.15, 0.5, n_labels)).astype(float)
    prob = 1.0 / (1.0 + np.exp(-(rng.normal(size=y.shape) + 1.2 * y - 0.6)))
    if tied:
        prob = np.round(prob, 1)  # a handful of distinct values: ties within and across classes
    y[rng.random(y.shape) < 0.1] = np.nan
    return y, prob


def known(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs whose label is known, as scikit-learn wants them."""
    keep = ~np.isnan(y)
    return y[keep].astype(int), p[keep]


DATASETS = pytest.mark.parametrize("tied", [False, True], ids=["random", "tied"])


# --- curves, AP, threshold metrics vs scikit-learn -----------------------------------------------------


@DATASETS
def test_curves_and_average_precision_match_sklearn(tied: bool) -> None:
    y, p = make_data(300, tied=tied)
    for j in range(y.shape[1]):
        t, s = known(y[:, j], p[:, j])
        for ours, ref in zip(roc_points(y[:, j], p[:, j]), roc_curve(t, s), strict=True):
            np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)
        for ours, ref in zip(pr_points(y[:, j], p[:, j]), precision_recall_curve(t, s), strict=True):
            np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)
        assert average_precision(y[:, j], p[:, j]) == pytest.approx(average_precision_score(t, s), abs=TOL)


@DATASETS
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_threshold_metrics_match_sklearn(tied: bool, threshold: float) -> None:
    y, p = make_data(400, tied=tied, seed=1)
    t, s = known(y[:, 1], p[:, 1])
    pred = (s >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(t, pred, labels=[0, 1]).ravel()
    got = threshold_metrics(y[:, 1], p[:, 1], threshold)
    assert (got["tp"], got["fp"], got["tn"], got["fn"]) == (tp, fp, tn, fn)
    expected = {
        "accuracy": accuracy_score(t, pred),
        "sensitivity": recall_score(t, pred),
        "specificity": recall_score(t, pred, pos_label=0),
        "ppv": precision_score(t, pred),
        "npv": precision_score(t, pred, pos_label=0),
        "f1": f1_score(t, pred),
        "mcc": matthews_corrcoef(t, pred),
    }
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=TOL), name


def test_threshold_metrics_undefined_ratios_are_nan_without_warnings() -> None:
    y = np.array([0.0, 0.0, 1.0, np.nan])
    p = np.array([0.1, 0.2, 0.3, 0.9])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = threshold_metrics(y, p, 0.95)  # nothing predicted positive; the NaN label is ignored
    assert (got["tp"], got["fp"], got["tn"], got["fn"]) == (0, 0, 2, 1)
    assert got["accuracy"] == pytest.approx(2 / 3)
    assert got["sensitivity"] == 0.0 and got["specificity"] == 1.0
    assert got["npv"] == pytest.approx(2 / 3) and got["f1"] == 0.0
    assert np.isnan(got["ppv"]) and np.isnan(got["mcc"])


# --- bootstrap AUROC ----------------------------------------------------------------------------------


@DATASETS
def test_auroc_ci_point_matches_sklearn_and_interval_contains_it(tied: bool) -> None:
    y, p = make_data(500, n_labels=4, tied=tied, seed=2)
    auc, lo, hi = auroc_ci(y, p, n_boot=1000, seed=3)
    assert auc.shape == lo.shape == hi.shape == (4,)
    for j in range(4):
        assert auc[j] == pytest.approx(roc_auc_score(*known(y[:, j], p[:, j])), abs=TOL)
    assert np.all(lo < auc) and np.all(auc < hi)


def test_auroc_ci_narrows_with_more_data() -> None:
    widths = []
    for n in (200, 5000):
        y, p = make_data(n, n_labels=2, seed=4)
        _, lo, hi = auroc_ci(y, p, n_boot=1000)
        widths.append(hi - lo)
    # The width scales as 1/sqrt(n): 25 times the images, about a fifth of the width.
    assert np.all(widths[1] < widths[0] / 3)


def test_auroc_ci_is_reproducible_per_seed_and_per_label() -> None:
    y, p = make_data(300, seed=5)
    first, again, other = auroc_ci(y, p, seed=7), auroc_ci(y, p, seed=7), auroc_ci(y, p, seed=8)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1], other[1])
    # Each label has its own generator: dropping a column leaves the other intervals unchanged.
    head = auroc_ci(y[:, :2], p[:, :2], seed=7)
    np.testing.assert_array_equal(head[1], first[1][:2])


def test_auroc_ci_ignores_unknown_labels() -> None:
    y, p = make_data(200, n_labels=1, seed=6)
    clean_y, clean_p = known(y[:, 0], p[:, 0])
    on_clean = auroc_ci(clean_y.astype(float), clean_p, seed=1)
    on_all = auroc_ci(y, p, seed=1)
    for a, b in zip(on_clean, on_all, strict=True):
        np.testing.assert_array_equal(a, b)


def resample_pmf(pos: list[float], neg: list[float]) -> dict[float, float]:
    """Exact distribution of AUROC over every stratified resample, from the pairwise definition."""
    pmf: dict[float, float] = {}
    pos_draws = itertools.product(pos, repeat=len(pos))
    combos = list(itertools.product(pos_draws, itertools.product(neg, repeat=len(neg))))
    for xs, ys in combos:
        auc = np.mean([1.0 if x > v else 0.5 if x == v else 0.0 for x in xs for v in ys])
        pmf[round(auc, 9)] = pmf.get(round(auc, 9), 0.0) + 1.0 / len(combos)
    return pmf


@pytest.mark.parametrize(
    ("pos", "neg"),
    [([0.5], [0.1, 0.2, 0.9]), ([0.3, 0.7], [0.3, 0.5, 0.8]), ([0.3, 0.5, 0.8], [0.3, 0.7])],
    ids=["one-positive", "more-negatives-tied", "more-positives-tied"],
)
def test_bootstrap_is_stratified_with_the_exact_resampling_distribution(
    pos: list[float], neg: list[float]
) -> None:
    y = np.array([1.0] * len(pos) + [0.0] * len(neg) + [np.nan])
    s = np.array(pos + neg + [0.6])
    samples = bootstrap_auroc(y, s, n_boot=40_000, seed=0)
    expected = resample_pmf(pos, neg)
    # Resampling each class keeps its count, so only the AUROCs of m x n pairs can occur...
    values, counts = np.unique(np.round(samples, 9), return_counts=True)
    assert set(values) <= set(expected)
    # ... with the probabilities of uniform draws with replacement within each class.
    for value, count in zip(values, counts, strict=True):
        assert count / samples.size == pytest.approx(expected[value], abs=0.015)


def test_single_class_label_gives_nan_and_warns() -> None:
    y = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, np.nan], [0.0, 1.0]])
    p = np.array([[0.9, 0.8], [0.2, 0.3], [0.7, 0.1], [0.4, 0.6]])
    with pytest.warns(UserWarning, match="AUROC of 'b' is undefined"):
        auc, lo, hi = auroc_ci(y, p, n_boot=50, labels=["a", "b"])
    assert auc[0] == 1.0 and np.isnan([auc[1], lo[1], hi[1]]).all()
    with pytest.warns(UserWarning, match="average precision"):
        assert np.isnan(average_precision(y[:, 1], p[:, 1]))
    with pytest.warns(UserWarning, match="operating point"):
        assert np.isnan(operating_point(y[:, 1], p[:, 1], "youden"))


# --- operating points ---------------------------------------------------------------------------------

# Scores from high to low: labels 1, 1, 0, 0, 0, 1, then 20 negatives. 3 positives, 23 negatives.
OP_Y = np.array([1, 1, 0, 0, 0, 1] + [0] * 20 + [np.nan], dtype=float)
OP_P = np.concatenate([[0.95, 0.9, 0.85, 0.8, 0.75, 0.7], np.linspace(0.6, 0.01, 20), [0.99]])


@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [
        # J = tp/3 - fp/23 peaks at 0.7 (1 - 3/23 = 0.870) over 0.9 (2/3).
        ("youden", None, 0.7),
        # F1 = 2tp / (tp + 3 + fp) peaks at 0.9 (4/5) over 0.7 (6/9).
        ("f1", None, 0.9),
        # Sensitivity 2/3 is first reached at 0.9, 1 at 0.7.
        ("sensitivity", 0.6, 0.9),
        ("sensitivity", 2 / 3, 0.9),
        ("sensitivity", 1.0, 0.7),
        # Specificity >= 0.9 allows 2 false positives (at 0.8), 1.0 allows none (lowest is 0.9).
        ("specificity", 0.9, 0.8),
        ("specificity", 1.0, 0.9),
    ],
)
def test_operating_points_hand_worked(method: str, target: float | None, expected: float) -> None:
    assert operating_point(OP_Y, OP_P, method, target) == expected
    if method == "sensitivity":
        assert threshold_metrics(OP_Y, OP_P, expected)["sensitivity"] >= target - TOL
    if method == "specificity":
        assert threshold_metrics(OP_Y, OP_P, expected)["specificity"] >= target - TOL


def test_operating_point_ties_and_unreachable_specificity() -> None:
    # Youden's J is 1/3 at 0.9, 0.7 and 0.35: ties go to the highest threshold.
    y = np.array([0, 0, 1, 0, 1, 1], dtype=float)
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.9])
    assert operating_point(y, p, "youden") == 0.9
    # The top score is a negative: only predicting nothing positive has specificity 1.
    assert operating_point(np.array([0.0, 1.0]), np.array([0.9, 0.1]), "specificity", 1.0) == np.inf


@pytest.mark.parametrize(
    ("method", "target", "message"),
    [
        ("youdn", None, "unknown operating point method 'youdn'; valid options"),
        ("sensitivity", None, "needs a target"),
        ("specificity", 1.5, "needs a target"),
        ("f1", 0.9, "takes no target"),
    ],
)
def test_operating_point_rejects_bad_arguments(method: str, target: float | None, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        operating_point(OP_Y, OP_P, method, target)
    if method == "youdn":
        assert all(name in str(err.value) for name in OPERATING_POINTS)


# --- calibration --------------------------------------------------------------------------------------


def test_reliability_curve_and_ece_hand_worked() -> None:
    y = np.array([0, 1, 0, 1, 1, 0, np.nan])
    p = np.array([0.05, 0.15, 0.15, 0.85, 0.95, 1.0, 0.5])
    curve = reliability_curve(y, p, n_bins=10)
    assert list(curve.columns) == ["bin_lower", "bin_upper", "mean_predicted", "fraction_positive", "count"]
    assert curve["count"].tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 1, 2]
    filled = curve[curve["count"] > 0]
    np.testing.assert_allclose(filled["mean_predicted"], [0.05, 0.15, 0.85, 0.975], atol=TOL)
    np.testing.assert_allclose(filled["fraction_positive"], [0.0, 0.5, 1.0, 0.5], atol=TOL)
    assert curve.loc[2, ["mean_predicted", "fraction_positive"]].isna().all()
    np.testing.assert_allclose(curve["bin_lower"], np.arange(10) / 10, atol=TOL)
    # Gaps 0.05, 0.35, 0.15, 0.475 weighted by counts 1, 2, 1, 2 over 6 known images.
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(1.85 / 6, abs=TOL)
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 0.0


@DATASETS
def test_brier_matches_sklearn(tied: bool) -> None:
    y, p = make_data(300, tied=tied, seed=7)
    for j in range(y.shape[1]):
        expected = brier_score_loss(*known(y[:, j], p[:, j]))
        assert brier_score(y[:, j], p[:, j]) == pytest.approx(expected, abs=TOL)


def test_calibration_rejects_values_outside_the_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score(np.array([0.0, 1.0]), np.array([0.2, 1.2]))
    with pytest.raises(ValueError, match="1, 0 or NaN"):
        expected_calibration_error(np.array([0.0, 2.0]), np.array([0.2, 0.3]))


# --- DeLong -------------------------------------------------------------------------------------------


def slow_delong(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs and their covariance from placement values over every positive-negative pair."""
    keep = ~np.isnan(y)
    y, scores = y[keep], scores[:, keep]
    x, v = scores[:, y == 1], scores[:, y == 0]
    m, n = x.shape[1], v.shape[1]
    psi = np.zeros((scores.shape[0], m, n))
    for k in range(scores.shape[0]):
        for i in range(m):
            for j in range(n):
                psi[k, i, j] = 1.0 if x[k, i] > v[k, j] else 0.5 if x[k, i] == v[k, j] else 0.0
    auc = psi.mean(axis=(1, 2))
    v10 = psi.mean(axis=2) - auc[:, None]
    v01 = psi.mean(axis=1) - auc[:, None]
    s10 = v10 @ v10.T / (m - 1)
    s01 = v01 @ v01.T / (n - 1)
    return auc, s10 / m + s01 / n


def tied_models(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (some NaN) and two correlated models whose rounded scores tie often."""
    rng = np.random.default_rng(seed)
    y = (rng.random(90) < 0.4).astype(float)
    common = rng.normal(size=90) + y
    a = np.round(common + 0.5 * rng.normal(size=90), 1)
    b = np.round(common + 0.8 * rng.normal(size=90) + 0.3 * y, 1)
    y[rng.random(90) < 0.1] = np.nan
    return y, a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_matches_slow_placement_reference(seed: int) -> None:
    y, a, b = tied_models(seed)
    ref_auc, ref_cov = slow_delong(y, np.stack([a, b]))
    auc, cov = delong_covariance(y, np.stack([a, b]))
    np.testing.assert_allclose(auc, ref_auc, rtol=0, atol=TOL)
    np.testing.assert_allclose(cov, ref_cov, rtol=0, atol=TOL)
    result = delong_test(y, a, b)
    assert isinstance(result, DeLongResult)
    sd = np.sqrt(ref_cov[0, 0] + ref_cov[1, 1] - 2 * ref_cov[0, 1])
    diff = ref_auc[0] - ref_auc[1]
    assert (result.auc_a, result.auc_b, result.diff) == pytest.approx((*ref_auc, diff), abs=TOL)
    assert result.z == pytest.approx(diff / sd, abs=TOL)
    assert result.p_value == pytest.approx(2 * norm.sf(abs(diff / sd)), abs=TOL)
    z95 = 1.959963984540054  # the 97.5 % quantile of the standard normal
    assert (result.diff_lo, result.diff_hi) == pytest.approx((diff - z95 * sd, diff + z95 * sd), abs=TOL)
    auc_a, lo, hi = delong_ci(y, a)
    half = z95 * np.sqrt(ref_cov[0, 0])
    assert (auc_a, lo, hi) == pytest.approx((ref_auc[0], ref_auc[0] - half, ref_auc[0] + half), abs=TOL)
    assert auc_a == pytest.approx(roc_auc_score(*known(y, a)), abs=TOL)


def test_delong_degenerate_cases_do_not_crash() -> None:
    y, a, _ = tied_models(3)
    same = delong_test(y, a, a)
    assert (same.diff, same.z, same.p_value, same.diff_lo, same.diff_hi) == (0.0, 0.0, 1.0, 0.0, 0.0)
    # A perfect model against a constant one: the difference (0.5) has zero variance.
    labels = np.array([0.0, 0.0, 1.0, 1.0])
    result = delong_test(labels, np.array([0.1, 0.2, 0.8, 0.9]), np.full(4, 0.5))
    assert (result.auc_a, result.auc_b, result.diff) == (1.0, 0.5, 0.5)
    assert result.z == np.inf and result.p_value == 0.0
    with pytest.warns(UserWarning, match="AUROC is undefined"):
        single = delong_test(np.ones(4), np.arange(4.0), np.arange(4.0))
    assert np.isnan([single.auc_a, single.diff, single.z, single.p_value]).all()
    with pytest.raises(ValueError, match="alpha"):
        delong_ci(y, a, alpha=1.5)


# --- summary table ------------------------------------------------------------------------------------


def test_summarise_rows_match_the_metrics_and_pool_micro_pairs() -> None:
    y, p = make_data(400, n_labels=3, seed=8)
    labels = ["Atelectasis", "Effusion", "Mass"]
    cuts = {"Atelectasis": 0.4, "Effusion": 0.5, "Mass": 0.6}
    table = summarise(y, p, labels, thresholds=cuts, n_boot=200, seed=2)
    assert list(table.index) == [*labels, "macro", "micro"]
    assert list(table.columns) == list(SUMMARY_COLUMNS)
    auc, lo, hi = auroc_ci(y, p, n_boot=200, seed=2)
    for j, name in enumerate(labels):
        row = table.loc[name]
        t, s = known(y[:, j], p[:, j])
        assert (row["n"], row["positives"]) == (t.size, t.sum())
        assert (row["auroc"], row["auroc_lo"], row["auroc_hi"]) == (auc[j], lo[j], hi[j])
        assert row["ap"] == pytest.approx(average_precision_score(t, s), abs=TOL)
        assert row["threshold"] == cuts[name]
        assert row["mcc"] == pytest.approx(matthews_corrcoef(t, s >= cuts[name]), abs=TOL)
        assert row["ece"] == pytest.approx(expected_calibration_error(t, s), abs=TOL)
        assert row["brier"] == pytest.approx(brier_score_loss(t, s), abs=TOL)
    assert table.loc["macro", "auroc"] == pytest.approx(auc.mean(), abs=TOL)
    assert table.loc["macro", "n"] == (~np.isnan(y)).sum()
    assert np.isnan(table.loc["macro", "threshold"]) and np.isnan(table.loc["macro", "auroc_lo"])
    keep = ~np.isnan(y)
    pooled_t, pooled_p = y[keep].astype(int), p[keep]
    pooled_pred = (p >= np.array([0.4, 0.5, 0.6]))[keep]
    micro = table.loc["micro"]
    assert micro["auroc"] == pytest.approx(roc_auc_score(pooled_t, pooled_p), abs=TOL)
    assert micro["auroc_lo"] < micro["auroc"] < micro["auroc_hi"]
    assert micro["ap"] == pytest.approx(average_precision_score(pooled_t, pooled_p), abs=TOL)
    assert micro["f1"] == pytest.approx(f1_score(pooled_t, pooled_pred), abs=TOL)
    assert micro["specificity"] == pytest.approx(recall_score(pooled_t, pooled_pred, pos_label=0), abs=TOL)
    assert micro["brier"] == pytest.approx(brier_score_loss(pooled_t, pooled_p), abs=TOL)


def test_summarise_single_class_label_and_threshold_errors() -> None:
    y, p = make_data(100, n_labels=2, seed=9)
    y[:, 1] = np.where(np.isnan(y[:, 1]), np.nan, 0.0)
    with pytest.warns(UserWarning, match="AUROC of 'B' is undefined"):
        table = summarise(y, p, ["A", "B"], n_boot=100)
    assert np.isnan(table.loc["B", ["auroc", "auroc_lo", "auroc_hi", "ap"]].astype(float)).all()
    assert np.isfinite(table.loc["B", ["specificity", "brier", "ece"]].astype(float)).all()
    assert table.loc["macro", "auroc"] == table.loc["A", "auroc"]
    assert table.loc["macro", "threshold"] == 0.5
    assert isinstance(table, pd.DataFrame)
    with pytest.raises(ValueError, match=r"missing \['B'\], unknown \['b'\]"):
        summarise(y, p, ["A", "B"], thresholds={"A": 0.5, "b": 0.5}, n_boot=10)
