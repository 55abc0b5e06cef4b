"""DeLong's test for correlated AUROCs, with the fast midrank algorithm of Sun & Xu (2014).

DeLong, DeLong & Clarke-Pearson (1988) estimate the covariance of AUROCs measured on the same images
from the placement values of each positive and negative image; Sun & Xu (IEEE Signal Processing
Letters 21(11), 2014) obtain those placement values from three midrankings, in O(n log n) instead
of comparing every positive with every negative.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from cxrcore.evaluate.calibration import known_pairs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeLongResult:
    """Two AUROCs on the same images, their difference with its confidence interval, z and p-value."""

    auc_a: float
    auc_b: float
    diff: float
    diff_lo: float
    diff_hi: float
    z: float
    p_value: float


def _check_alpha(alpha: float) -> None:
    """Reject a significance level outside (0, 1)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")


def _known_scores(y_true: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Known labels of one label and the matching scores of each model, shaped (n_models, n_known)."""
    pairs = [known_pairs(y_true, s) for s in scores]
    return pairs[0][0], np.stack([s for _, s in pairs])


def delong_covariance(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC of each model (a row of `scores`) and the DeLong covariance matrix of those AUROCs.

    Args:
        y_true: labels of one label, 1 / 0 / NaN; images with NaN are ignored.
        scores: shape (n_models, n_images), or (n_images,) for one model.

    Returns:
        `(auc, cov)`: shapes (n_models,) and (n_models, n_models). All NaN (with a warning) when a
        class is missing; `cov` is NaN (with a warning) when a class has a single image.
    """
    from scipy.stats import rankdata

    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    t, s = _known_scores(y_true, list(scores))
    k = s.shape[0]
    pos, neg = s[:, t == 1], s[:, t == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m == 0 or n == 0:
        warnings.warn(f"AUROC is undefined: {m} positive and {n} negative known labels", stacklevel=2)
        return np.full(k, np.nan), np.full((k, k), np.nan)
    # Midranks (average ranks for ties) within positives, within negatives and over both.
    tx = rankdata(pos, axis=1)
    ty = rankdata(neg, axis=1)
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    auc = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    if m < 2 or n < 2:
        warnings.warn(
            f"DeLong variance is undefined with {m} positive and {n} negative known labels", stacklevel=2
        )
        return auc, np.full((k, k), np.nan)
    # Placement values: V10_i = share of negatives below positive i (ties count half), and
    # V01_j = share of positives above negative j.
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return auc, cov


def delong_ci(y_true: np.ndarray, score: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float]:
    """AUROC of one model with its normal-approximation confidence interval from the DeLong variance.

    The interval is auc +/- z_(1 - alpha/2) * sqrt(var), clipped to [0, 1].
    """
    from scipy.stats import norm

    _check_alpha(alpha)
    auc, cov = delong_covariance(y_true, np.asarray(score, dtype=float)[None, :])
    half = norm.ppf(1.0 - alpha / 2.0) * np.sqrt(max(cov[0, 0], 0.0))
    lo, hi = np.clip([auc[0] - half, auc[0] + half], 0.0, 1.0)
    return float(auc[0]), float(lo), float(hi)


def delong_test(
    y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, alpha: float = 0.05
) -> DeLongResult:
    """Two-sided DeLong test of AUROC(a) == AUROC(b) for two models scored on the same images.

    `diff` is auc_a - auc_b, with a (1 - alpha) normal-approximation interval. When the difference
    has zero variance the test is degenerate: equal AUROCs give z = 0 and p = 1 (identical models,
    for instance), unequal ones give an infinite z and p = 0.
    """
    from scipy.stats import norm

    _check_alpha(alpha)
    auc, cov = delong_covariance(y_true, np.stack([np.asarray(score_a, float), np.asarray(score_b, float)]))
    diff = float(auc[0] - auc[1])
    # Rounding can leave a tiny negative variance for (near-)identical models.
    var = max(float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1]), 0.0) if np.isfinite(cov).all() else np.nan
    sd = float(np.sqrt(var))
    if np.isnan(diff) or np.isnan(sd):
        z = p = float("nan")
    elif diff == 0.0:
        z, p = 0.0, 1.0
    else:
        z = diff / sd if sd > 0 else float(np.copysign(np.inf, diff))
        p = float(2.0 * norm.sf(abs(z)))
    half = float(norm.ppf(1.0 - alpha / 2.0)) * sd
    return DeLongResult(
        auc_a=float(auc[0]),
        auc_b=float(auc[1]),
        diff=diff,
        diff_lo=diff - half,
        diff_hi=diff + half,
        z=float(z),
        p_value=float(p),
    )
