"""Classification metrics of multi-label predictions: curves, bootstrap AUROC intervals, operating points.

Label matrices are float (n_images, n_labels) with 1 / 0 / NaN (NaN = unknown); every per-label metric
ignores the images whose label is unknown, and a label with a single known class gives NaN with a
warning. A prediction is positive when its probability is >= the threshold.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cxrcore.evaluate.calibration import (
    brier_score,
    expected_calibration_error,
    known_pairs,
    reliability_curve,
)
from cxrcore.evaluate.delong import DeLongResult, delong_ci, delong_covariance, delong_test
from cxrcore.evaluate.metrics import macro_mean

log = logging.getLogger(__name__)

# Calibration and DeLong live in their own modules and are re-exported: this is the one import for callers.
__all__ = [
    "DEFAULT_THRESHOLD_RULE",
    "FIXED_RULE",
    "N_BOOT",
    "OPERATING_POINTS",
    "SUMMARY_COLUMNS",
    "TARGET_RULES",
    "THRESHOLD_RULES",
    "THRESHOLD_RULE_NAMES",
    "DeLongResult",
    "auroc_ci",
    "average_precision",
    "bootstrap_auroc",
    "brier_score",
    "delong_ci",
    "delong_covariance",
    "delong_test",
    "expected_calibration_error",
    "operating_point",
    "pr_points",
    "reliability_curve",
    "roc_points",
    "summarise",
    "threshold_metrics",
]

# Thresholds chosen on (validation) data; TARGET_RULES take a target sensitivity or specificity.
OPERATING_POINTS = ("youden", "f1", "sensitivity", "specificity")
TARGET_RULES = ("sensitivity", "specificity")
# How a report picks each label's threshold: an operating point on validation, or a fixed 0.5.
FIXED_RULE = "fixed"
THRESHOLD_RULES: tuple[str, ...] = (*OPERATING_POINTS, FIXED_RULE)
DEFAULT_THRESHOLD_RULE = "youden"
THRESHOLD_RULE_NAMES: dict[str, str] = {
    "youden": "Youden's J (max sensitivity + specificity - 1)",
    "f1": "maximum F1",
    "sensitivity": "a target sensitivity",
    "specificity": "a target specificity",
    FIXED_RULE: "fixed 0.5",
}
N_BOOT = 1000  # bootstrap resamples for an AUROC confidence interval
SUMMARY_COLUMNS = (
    "n", "positives", "auroc", "auroc_lo", "auroc_hi", "ap", "threshold", "accuracy", "sensitivity",
    "specificity", "ppv", "npv", "f1", "mcc", "ece", "brier",
)  # fmt: skip
_COUNTS = ("tp", "fp", "tn", "fn")
# Elements per bootstrap batch (resamples x images): bounds memory at ~16 MB per int64 array.
_BATCH_ELEMENTS = 2_000_000
# Rates within this of each other count as equal when choosing operating points.
_TIE_TOLERANCE = 1e-12


def _both_classes(t: np.ndarray, what: str, name: str = "label") -> bool:
    """True when the known labels hold both classes; otherwise warn that `what` is undefined."""
    positives = int(t.sum())
    if 0 < positives < t.size:
        return True
    warnings.warn(
        f"{what} of {name} is undefined: {positives} positive and {t.size - positives} negative known labels",
        stacklevel=3,
    )
    return False


def roc_points(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve `(fpr, tpr, thresholds)` of one label over its known images (scikit-learn's `roc_curve`)."""
    from sklearn.metrics import roc_curve

    t, s = known_pairs(y_true, y_score)
    if not _both_classes(t, "ROC curve"):
        return np.array([np.nan]), np.array([np.nan]), np.array([np.nan])
    return roc_curve(t, s)


def pr_points(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve `(precision, recall, thresholds)` of one label over its known images."""
    from sklearn.metrics import precision_recall_curve

    t, s = known_pairs(y_true, y_score)
    if not _both_classes(t, "precision-recall curve"):
        return np.array([np.nan]), np.array([np.nan]), np.array([np.nan])
    return precision_recall_curve(t, s)


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Average precision (scikit-learn's) of one label over its known images; NaN with one class."""
    from sklearn.metrics import average_precision_score

    t, s = known_pairs(y_true, y_score)
    if not _both_classes(t, "average precision"):
        return float("nan")
    return float(average_precision_score(t, s))


def _ratio(num: float, den: float) -> float:
    """num / den, or NaN when the denominator is zero."""
    return num / den if den > 0 else float("nan")


def _metrics_from_counts(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    """Confusion counts and the ratios derived from them; an undefined ratio is NaN."""
    mcc_den = float(tp + fp) * float(tp + fn) * float(tn + fp) * float(tn + fn)
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "mcc": _ratio(float(tp) * tn - float(fp) * fn, np.sqrt(mcc_den)),
    }


def threshold_metrics(y_true: np.ndarray, y_prob: np.ndarray, threshold: float) -> dict[str, float]:
    """Confusion counts, accuracy, sensitivity, specificity, PPV, NPV, F1 and MCC at one threshold.

    Images with an unknown label are ignored; an undefined ratio (say, sensitivity without
    positives) is NaN.
    """
    t, p = known_pairs(y_true, y_prob)
    pred = p >= threshold
    truth = t == 1
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    return _metrics_from_counts(tp, fp, int(t.size) - tp - fp - fn, fn)


def _placements(gathered: np.ndarray, counted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each `gathered` score, how many `counted` scores lie below it and how many at or below it."""
    ordered = np.sort(counted)
    return np.searchsorted(ordered, gathered, side="left"), np.searchsorted(ordered, gathered, side="right")


def _point_auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUROC as the Mann-Whitney statistic: P(positive > negative) + P(tie) / 2."""
    below, at_or_below = _placements(pos, neg)
    return float((below.sum() + at_or_below.sum()) / (2.0 * pos.size * neg.size))


def _resampled_auroc(
    gathered: np.ndarray, counted: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """AUROC, P(gathered > counted) + P(tie) / 2, of `n_boot` resamples keeping both class counts.

    This is the Mann-Whitney statistic with midranks for ties, computed without sorting any
    resample: in each resample the number of resampled `counted` scores among the i smallest is a
    cumulative count, and every resampled `gathered` score adds (#counted below + #counted at or
    below) / 2, read at the two positions found once by `searchsorted`.
    """
    m, n = gathered.size, counted.size
    below, at_or_below = _placements(gathered, counted)
    has_ties = not np.array_equal(below, at_or_below)
    out = np.empty(n_boot)
    batch = max(1, _BATCH_ELEMENTS // (m + n))
    for start in range(0, n_boot, batch):
        k = min(batch, n_boot - start)
        # Row r of `cum` is [r(n+1), (r+1)(n+1)) of the flat array; cum[r, i] counts the resampled
        # `counted` scores among the i smallest, so column 0 stays 0.
        offsets = np.arange(k, dtype=np.int64)[:, None] * (n + 1)
        draws = rng.integers(1, n + 1, size=(k, n))
        draws += offsets
        cum = np.bincount(draws.ravel(), minlength=k * (n + 1)).reshape(k, n + 1)
        np.cumsum(cum, axis=1, out=cum)
        flat = cum.ravel()
        picks = rng.integers(0, m, size=(k, m))
        lower = flat[below[picks] + offsets].sum(axis=1)
        upper = flat[at_or_below[picks] + offsets].sum(axis=1) if has_ties else lower
        out[start : start + k] = (lower + upper) / (2.0 * m * n)
    return out


def _check_n_boot(n_boot: int) -> None:
    """Reject a resample count that is not a positive integer."""
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")


def bootstrap_auroc(
    y_true: np.ndarray, y_score: np.ndarray, n_boot: int = N_BOOT, seed: int | np.random.Generator = 0
) -> np.ndarray:
    """AUROCs of one label over `n_boot` stratified bootstrap resamples of its known images.

    Positives and negatives are resampled separately with replacement, each keeping its count, so
    every resample has both classes. `seed` is an int or a `np.random.Generator` (used as is).
    Returns shape (n_boot,); all NaN (with a warning) for a single-class label.
    """
    _check_n_boot(n_boot)
    t, s = known_pairs(y_true, y_score)
    if not _both_classes(t, "bootstrap AUROC"):
        return np.full(int(n_boot), np.nan)
    pos, neg = s[t == 1], s[t == 0]
    rng = np.random.default_rng(seed)
    # The larger class is the cheaper one to resample as counts; AUROC(pos, neg) = AUROC(-neg, -pos).
    if pos.size <= neg.size:
        return _resampled_auroc(pos, neg, int(n_boot), rng)
    return _resampled_auroc(-neg, -pos, int(n_boot), rng)


def _as_matrix(y: np.ndarray, name: str) -> np.ndarray:
    """A float (n_images, n_labels) matrix; a 1-D array is one label."""
    y = np.asarray(y, dtype=float)
    if y.ndim == 1:
        return y[:, None]
    if y.ndim != 2:
        raise ValueError(f"{name} must be 1-D or (n_images, n_labels), got shape {y.shape}")
    return y


def auroc_ci(
    y_true: np.ndarray,
    y_score: np.ndarray,
    n_boot: int = N_BOOT,
    alpha: float = 0.05,
    seed: int = 0,
    labels: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUROC of every label with a percentile interval from a stratified bootstrap.

    Label j is resampled with its own generator, spawned from `np.random.default_rng(seed)`, so its
    interval does not depend on the other columns. `labels` only names labels in warnings.

    Returns:
        `(auc, lo, hi)`, each of shape (n_labels,) (length 1 for 1-D input); NaN, with a warning,
        for a label with a single known class.
    """
    _check_n_boot(n_boot)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    t, s = _as_matrix(y_true, "y_true"), _as_matrix(y_score, "y_score")
    if t.shape != s.shape:
        raise ValueError(f"y_true and y_score must have one shape, got {t.shape} and {s.shape}")
    names = list(labels) if labels is not None else [f"label {j}" for j in range(t.shape[1])]
    auc, lo, hi = (np.full(t.shape[1], np.nan) for _ in range(3))
    for j, gen in enumerate(np.random.default_rng(seed).spawn(t.shape[1])):
        tj, sj = known_pairs(t[:, j], s[:, j])
        if not _both_classes(tj, "AUROC", repr(names[j])):
            continue
        auc[j] = _point_auroc(sj[tj == 1], sj[tj == 0])
        samples = bootstrap_auroc(tj, sj, n_boot, gen)
        lo[j], hi[j] = np.quantile(samples, [alpha / 2.0, 1.0 - alpha / 2.0])
    return auc, lo, hi


def _candidate_curve(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct threshold, from +inf down, with the true and false positive counts at it."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(t, p, drop_intermediate=False)
    positives = int(t.sum())
    return thresholds, np.rint(tpr * positives), np.rint(fpr * (t.size - positives))


def operating_point(
    y_true: np.ndarray, y_prob: np.ndarray, method: str, target: float | None = None
) -> float:
    """Threshold chosen on (validation) data by `method`, one of `OPERATING_POINTS`.

    - "youden": maximises sensitivity + specificity - 1;
    - "sensitivity": the highest threshold whose sensitivity is >= `target`;
    - "specificity": the lowest threshold whose specificity is >= `target` (+inf when only
      predicting no positive at all reaches it);
    - "f1": maximises F1.
    Ties between thresholds go to the highest one. NaN (with a warning) for a single-class label.
    """
    if method not in OPERATING_POINTS:
        raise ValueError(f"unknown operating point method {method!r}; valid options: {OPERATING_POINTS}")
    needs_target = method in TARGET_RULES
    if needs_target and (target is None or not 0 < target <= 1):
        raise ValueError(f"method {method!r} needs a target in (0, 1], got {target!r}")
    if not needs_target and target is not None:
        raise ValueError(f"method {method!r} takes no target, got {target!r}")
    t, p = known_pairs(y_true, y_prob)
    if not _both_classes(t, f"operating point {method!r}"):
        return float("nan")
    thresholds, tp, fp = _candidate_curve(t, p)
    positives, negatives = tp[-1], fp[-1]
    if method in ("youden", "f1"):
        score = tp / positives - fp / negatives if method == "youden" else 2 * tp / (tp + positives + fp)
        # thresholds[0] is +inf (nothing positive); candidates are the observed scores. Rounding must
        # not break ties (2/3 - 1/3 > 1/3 in floating point), so the first near-maximum wins.
        return float(thresholds[1:][np.argmax(score[1:] >= score[1:].max() - _TIE_TOLERANCE)])
    if method == "sensitivity":
        # Sensitivity grows as the threshold falls: the first hit is the highest threshold.
        return float(thresholds[np.argmax(tp / positives >= target - _TIE_TOLERANCE)])
    ok = np.flatnonzero(1.0 - fp / negatives >= target - _TIE_TOLERANCE)
    return float(thresholds[ok[-1]])


def _thresholds_by_label(thresholds: float | Mapping[str, float], labels: Sequence[str]) -> np.ndarray:
    """One threshold per label from a single value or a {label: threshold} mapping covering every label."""
    if not isinstance(thresholds, Mapping):
        return np.full(len(labels), float(thresholds))
    missing = [name for name in labels if name not in thresholds]
    extra = [name for name in thresholds if name not in labels]
    if missing or extra:
        raise ValueError(
            f"thresholds must name every label exactly: missing {missing}, unknown {extra}; "
            f"labels are {list(labels)}"
        )
    return np.array([float(thresholds[name]) for name in labels])


def _score_columns(t: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Size, positives, AP, ECE and Brier score of one label, or of pooled (image, label) pairs."""
    with warnings.catch_warnings():
        # The AUROC bootstrap has already warned about a single-class label.
        warnings.simplefilter("ignore")
        ap = average_precision(t, p)
    n = int(np.count_nonzero(~np.isnan(t)))
    return {
        "n": n,
        "positives": int(np.nansum(t)),
        "ap": ap,
        "ece": expected_calibration_error(t, p) if n else float("nan"),
        "brier": brier_score(t, p) if n else float("nan"),
    }


def summarise(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    labels: Sequence[str],
    thresholds: float | Mapping[str, float] = 0.5,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """One row of metrics per label plus "macro" and "micro" rows; columns are `SUMMARY_COLUMNS`.

    - "macro": the unweighted mean over labels where a metric is defined; `n` and `positives` are
      totals; the AUROC interval is NaN (per-label resamples are independent, so they give no
      interval for the mean); `threshold` is NaN unless every label has the same one.
    - "micro": every known (image, label) pair pooled into one binary problem, each pair predicted
      positive at its own label's threshold; its AUROC interval resamples the pairs.
    A label with a single known class has NaN AUROC and AP, with a warning.
    """
    t, p = _as_matrix(y_true, "y_true"), _as_matrix(y_prob, "y_prob")
    if t.shape != p.shape or t.shape[1] != len(labels):
        raise ValueError(
            f"y_true {t.shape} and y_prob {p.shape} must both be (n_images, {len(labels)}) "
            f"for labels {list(labels)}"
        )
    cut = _thresholds_by_label(thresholds, labels)
    common_cut = float(cut[0]) if np.all(cut == cut[0]) else float("nan")
    auc, lo, hi = auroc_ci(t, p, n_boot=n_boot, seed=seed, labels=labels)
    rows = {}
    for j, name in enumerate(labels):
        rows[name] = {"auroc": auc[j], "auroc_lo": lo[j], "auroc_hi": hi[j], "threshold": float(cut[j])}
        rows[name].update(_score_columns(t[:, j], p[:, j]), **threshold_metrics(t[:, j], p[:, j], cut[j]))
    per_label = pd.DataFrame.from_dict(rows, orient="index")
    macro = {col: macro_mean(per_label[col].to_dict()) for col in SUMMARY_COLUMNS}
    macro.update(n=int(per_label["n"].sum()), positives=int(per_label["positives"].sum()))
    rows["macro"] = {**macro, "auroc_lo": float("nan"), "auroc_hi": float("nan"), "threshold": common_cut}
    known = ~np.isnan(t)
    micro_auc, micro_lo, micro_hi = auroc_ci(t[known], p[known], n_boot=n_boot, seed=seed, labels=["micro"])
    # Summed per-label confusion counts apply each label's own threshold to its pairs.
    counts = [int(per_label[c].sum()) for c in _COUNTS]
    rows["micro"] = {"auroc": micro_auc[0], "auroc_lo": micro_lo[0], "auroc_hi": micro_hi[0]}
    rows["micro"].update(_score_columns(t[known], p[known]), threshold=common_cut)
    rows["micro"].update(_metrics_from_counts(*counts))
    return pd.DataFrame.from_dict(rows, orient="index").loc[:, list(SUMMARY_COLUMNS)]
