"""Ensembles of classifiers: majority voting, simple and weighted averaging, and stacking.

The four strategies follow Rajaraman, Kim & Antani (PeerJ 2020, "Modality-specific deep learning model
ensembles toward improving TB detection in chest radiographs"). Every function works on member
PROBABILITIES shaped (n_members, n_images, n_labels) and on label matrices (n_images, n_labels) of
1 / 0 / NaN, where NaN-labelled images are ignored for that label. Whatever an ensemble learns
(thresholds, weights, a meta-learner) is fitted on validation predictions only and then applied
unchanged to test predictions, so test labels never influence an ensemble.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from cxrcore.evaluate.classification import operating_point
from cxrcore.hints import unknown_choice
from cxrcore.jsonsafe import to_jsonable
from cxrcore.models.ensemble import EnsembleError

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegressionCV

log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("vote", "mean", "weighted", "stack")
METHOD_NAMES: dict[str, str] = {
    "vote": "majority vote",
    "mean": "simple average",
    "weighted": "weighted average",
    "stack": "stacking",
}
WEIGHT_METHODS: tuple[str, ...] = ("optimise", "auroc")
WeightMethod = Literal["optimise", "auroc"]

_PROB_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] before logits and log-losses
_AUROC_FLOOR = 0.01  # smallest (AUROC - 0.5) a member keeps, so a weak member is down-weighted, never dropped


def check_method(method: str) -> str:
    """Return the method if it is one of METHODS, else raise EnsembleError with a close match."""
    return _check_choice("ensemble method", method, METHODS)


def _check_choice(what: str, value: str, options: Sequence[str]) -> str:
    if value in options:
        return value
    raise EnsembleError(unknown_choice(what, value, options, n=1))


def _check_probs(probs: np.ndarray) -> np.ndarray:
    """Return member probabilities as float64 (n_members, n_images, n_labels), checking shape and range."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 3:
        raise EnsembleError(f"member probabilities must be (n_members, n_images, n_labels), not {p.shape}")
    if not np.all(np.isfinite(p)) or p.min(initial=0.0) < 0.0 or p.max(initial=0.0) > 1.0:
        raise EnsembleError("member probabilities must be finite and in [0, 1]")
    return p


def _check_truth(probs: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """Return the label matrix as float64, checking its shape and its 1 / 0 / NaN values."""
    y = np.asarray(y_true, dtype=np.float64)
    if y.shape != probs.shape[1:]:
        raise EnsembleError(f"labels have shape {y.shape}; the member probabilities need {probs.shape[1:]}")
    known = y[~np.isnan(y)]
    if not np.all((known == 0.0) | (known == 1.0)):
        raise EnsembleError(f"labels must be 1, 0 or NaN, found {sorted(set(known.tolist()) - {0.0, 1.0})}")
    return y


def _known_classes(y: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The known-image mask of label j, its known values and the count of its rarer class."""
    known = ~np.isnan(y[:, j])
    t = y[known, j]
    n_pos = int(t.sum())
    return known, t, min(n_pos, t.size - n_pos)


def majority_vote(probs: np.ndarray, thresholds: float | np.ndarray = 0.5) -> np.ndarray:
    """Fraction of members whose probability reaches their threshold, per image and label.

    A member votes positive when its probability is >= its threshold. ``thresholds`` is a scalar,
    one per label (n_labels,) or one per member and label (n_members, n_labels), typically each
    member's validation operating point. The fraction is a usable ROC score; the majority decision
    is ``score > 0.5``, so with an even number of members a tie scores exactly 0.5 and is negative.
    """
    p = _check_probs(probs)
    n_members, _, n_labels = p.shape
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim == 0:
        t = t.reshape(1, 1, 1)
    elif t.shape == (n_labels,):
        t = t.reshape(1, 1, n_labels)
    elif t.shape == (n_members, n_labels):
        t = t[:, None, :]
    else:
        raise EnsembleError(
            f"thresholds of shape {t.shape} do not fit {n_members} members and {n_labels} labels; "
            f"valid shapes: (), ({n_labels},), ({n_members}, {n_labels})"
        )
    return (p >= t).mean(axis=0)


def simple_average(probs: np.ndarray) -> np.ndarray:
    """Unweighted mean of the member probabilities, per image and label."""
    return _check_probs(probs).mean(axis=0)


def weighted_average(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of member probabilities; weights (n_members,) or (n_members, n_labels), normalised."""
    p = _check_probs(probs)
    n_members, _, n_labels = p.shape
    w = np.asarray(weights, dtype=np.float64)
    if w.shape == (n_members,):
        w = np.repeat(w[:, None], n_labels, axis=1)
    if w.shape != (n_members, n_labels):
        raise EnsembleError(
            f"weights of shape {w.shape} do not fit {n_members} members and {n_labels} labels; "
            f"valid shapes: ({n_members},), ({n_members}, {n_labels})"
        )
    total = w.sum(axis=0)
    if not np.all(np.isfinite(w)) or w.min() < 0.0 or np.any(total <= 0.0):
        raise EnsembleError("weights must be finite, non-negative and not all zero for any label")
    return np.einsum("mil,ml->il", p, w / total)


def fit_weights(val_probs: np.ndarray, val_true: np.ndarray, method: WeightMethod = "optimise") -> np.ndarray:
    """Fit per-label member weights (n_members, n_labels) on validation predictions; each column sums to 1.

    "optimise" minimises the validation log-loss of the weighted average over the simplex (SLSQP;
    the loss is convex in the weights); "auroc" makes weights proportional to each member's
    validation AUROC - 0.5, floored at a small positive value. A label without both classes among
    its known validation images gets uniform weights and a warning.
    """
    _check_choice("weight method", method, WEIGHT_METHODS)
    p = _check_probs(val_probs)
    y = _check_truth(p, val_true)
    n_members, _, n_labels = p.shape
    weights = np.full((n_members, n_labels), 1.0 / n_members)
    for j in range(n_labels):
        known, t, n_minor = _known_classes(y, j)
        if n_minor == 0:
            warnings.warn(
                f"label {j}: only one class among {t.size} known validation labels; uniform weights used",
                stacklevel=2,
            )
            continue
        members = p[:, known, j]
        weights[:, j] = _auroc_weights(members, t) if method == "auroc" else _log_loss_weights(members, t)
    return weights


def _auroc_weights(members: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Weights proportional to (AUROC - 0.5) of each member, floored at _AUROC_FLOOR."""
    from sklearn.metrics import roc_auc_score

    gain = np.array([roc_auc_score(t, m) - 0.5 for m in members])
    gain = np.maximum(gain, _AUROC_FLOOR)
    return gain / gain.sum()


def _log_loss_weights(members: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Simplex weights minimising the log-loss of the weighted average of members (n_members, n_known)."""
    from scipy.optimize import minimize

    n_members, n = members.shape

    def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        q = np.clip(w @ members, _PROB_EPS, 1.0 - _PROB_EPS)
        loss = -np.mean(t * np.log(q) + (1.0 - t) * np.log1p(-q))
        dq = -(t / q - (1.0 - t) / (1.0 - q)) / n
        return float(loss), members @ dq

    start = np.full(n_members, 1.0 / n_members)
    result = minimize(
        loss_and_grad,
        start,
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n_members,
        constraints=({"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)},),
        options={"maxiter": 200, "ftol": 1e-10},
    )
    if not result.success:
        log.warning("weight optimisation did not converge (%s); keeping its last iterate", result.message)
    w = np.clip(result.x, 0.0, None)
    return w / w.sum() if w.sum() > 0 else start


def _member_logits(probs: np.ndarray, j: int) -> np.ndarray:
    """Member logits of label j as a feature matrix (n_images, n_members)."""
    from scipy.special import logit

    return logit(np.clip(probs[:, :, j], _PROB_EPS, 1.0 - _PROB_EPS)).T


@dataclass(frozen=True)
class Stacker:
    """Per-label logistic-regression meta-learners on member logits, fitted on validation predictions.

    ``models[j]`` is None where label j fell back to simple averaging; ``fallback`` maps that label
    index to the reason.
    """

    n_members: int
    models: tuple[LogisticRegressionCV | None, ...]
    fallback: Mapping[int, str] = field(default_factory=dict)

    def predict(self, test_probs: np.ndarray) -> np.ndarray:
        """Stacked probabilities (n_images, n_labels) for test member probabilities."""
        p = _check_probs(test_probs)
        _check_shape(p, self.n_members, len(self.models))
        out = p.mean(axis=0)
        for j, model in enumerate(self.models):
            if model is not None:
                out[:, j] = model.predict_proba(_member_logits(p, j))[:, 1]
        return out

    @property
    def coefficients(self) -> np.ndarray:
        """Meta-learner coefficients per label and member (n_labels, n_members); NaN for fallback labels."""
        out = np.full((len(self.models), self.n_members), np.nan)
        for j, model in enumerate(self.models):
            if model is not None:
                out[j] = model.coef_[0]
        return out

    @property
    def intercepts(self) -> np.ndarray:
        """Meta-learner intercept per label (n_labels,); NaN for fallback labels."""
        return np.array([np.nan if m is None else float(m.intercept_[0]) for m in self.models])

    @property
    def regularisation(self) -> np.ndarray:
        """Cross-validated inverse regularisation strength C per label; NaN for fallback labels."""
        return np.array([np.nan if m is None else float(np.ravel(m.C_)[0]) for m in self.models])


def fit_stacker(val_probs: np.ndarray, val_true: np.ndarray, seed: int = 0) -> Stacker:
    """Fit one cross-validated logistic regression per label on validation member logits.

    C is chosen by LogisticRegressionCV with stratified, shuffled folds (seeded), using
    min(5, rarer-class count) folds and at least 2. A label with fewer than 2 images of either
    class among its known validation labels falls back to simple averaging, with the reason recorded.
    """
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    p = _check_probs(val_probs)
    y = _check_truth(p, val_true)
    models: list[LogisticRegressionCV | None] = []
    fallback: dict[int, str] = {}
    for j in range(p.shape[2]):
        known, t, n_minor = _known_classes(y, j)
        if n_minor < 2:
            n_pos = int(t.sum())
            reason = (
                f"{n_pos} positive and {t.size - n_pos} negative known validation labels; "
                "stacking needs at least 2 of each, so simple averaging is used"
            )
            warnings.warn(f"label {j}: {reason}", stacklevel=2)
            fallback[j] = reason
            models.append(None)
            continue
        folds = StratifiedKFold(n_splits=max(2, min(5, n_minor)), shuffle=True, random_state=seed)
        model = LogisticRegressionCV(
            Cs=10,
            l1_ratios=(0.0,),
            cv=folds,
            scoring="neg_log_loss",
            max_iter=1000,
            use_legacy_attributes=False,
        )
        models.append(model.fit(_member_logits(p[:, known], j), t.astype(int)))
    return Stacker(n_members=p.shape[0], models=tuple(models), fallback=fallback)


def _check_shape(p: np.ndarray, n_members: int, n_labels: int) -> None:
    if (p.shape[0], p.shape[2]) != (n_members, n_labels):
        raise EnsembleError(
            f"test probabilities have {p.shape[0]} members and {p.shape[2]} labels; "
            f"the ensemble was fitted on {n_members} members and {n_labels} labels"
        )


def operating_thresholds(val_probs: np.ndarray, val_true: np.ndarray) -> np.ndarray:
    """Each member's Youden-J threshold per label on validation (n_members, n_labels); 0.5 if one class."""
    p = _check_probs(val_probs)
    y = _check_truth(p, val_true)
    n_members, _, n_labels = p.shape
    out = np.full((n_members, n_labels), 0.5)
    for j in range(n_labels):
        known, t, n_minor = _known_classes(y, j)
        if n_minor == 0:
            warnings.warn(f"label {j}: only one class in validation; voting threshold 0.5 used", stacklevel=2)
            continue
        for m in range(n_members):
            out[m, j] = operating_point(t, p[m, known, j], "youden")
    return out


@dataclass(frozen=True)
class FittedEnsemble:
    """An ensemble fitted on validation predictions, applied to test predictions with ``predict``.

    ``thresholds`` is set for "vote", ``weights`` for "mean" and "weighted", ``stacker`` for "stack".
    """

    method: str
    n_members: int
    n_labels: int
    labels: tuple[str, ...] | None = None
    thresholds: np.ndarray | None = None
    weights: np.ndarray | None = None
    stacker: Stacker | None = None
    weight_method: str | None = None

    def predict(self, test_probs: np.ndarray) -> np.ndarray:
        """Ensemble scores (n_images, n_labels) for test member probabilities."""
        p = _check_probs(test_probs)
        _check_shape(p, self.n_members, self.n_labels)
        if self.method == "vote":
            return majority_vote(p, self.thresholds)
        if self.method == "stack":
            return self.stacker.predict(p)
        return weighted_average(p, self.weights)

    def describe(self) -> dict[str, Any]:
        """Plain-Python summary of what was fitted, for display and JSON (NaN written as None).

        Arrays per member and label are nested lists (n_members, n_labels) in the order of ``labels``:
        "thresholds" (vote), "weights" (mean, weighted), "coefficients" (stack, with per-label
        "intercepts" and "C", and "fallback" mapping a label name to why it was averaged instead).
        """
        names = list(self.labels) if self.labels else [str(j) for j in range(self.n_labels)]
        out: dict[str, Any] = {"method": self.method, "n_members": self.n_members, "labels": names}
        if self.thresholds is not None:
            out["thresholds"] = to_jsonable(self.thresholds)
        if self.weights is not None:
            out["weights"] = to_jsonable(self.weights)
            out["weight_method"] = self.weight_method
        if self.stacker is not None:
            s = self.stacker
            out["coefficients"] = to_jsonable(s.coefficients.T)
            out["intercepts"] = to_jsonable(s.intercepts)
            out["C"] = to_jsonable(s.regularisation)
            out["fallback"] = {names[j]: reason for j, reason in s.fallback.items()}
        return out


def fit_ensemble(
    method: str,
    val_probs: np.ndarray,
    val_true: np.ndarray,
    thresholds: float | np.ndarray | None = None,
    *,
    labels: Sequence[str] | None = None,
    weight_method: WeightMethod = "optimise",
    seed: int = 0,
) -> FittedEnsemble:
    """Fit an ensemble of the named method on validation predictions, ready to apply to test predictions.

    "vote" uses the given thresholds, or else each member's validation Youden-J threshold per label;
    "mean" needs nothing fitted; "weighted" fits weights with ``weight_method``; "stack" fits a
    logistic-regression meta-learner per label.
    """
    check_method(method)
    p = _check_probs(val_probs)
    y = _check_truth(p, val_true)
    n_members, _, n_labels = p.shape
    if n_members < 2:
        raise EnsembleError(f"an ensemble needs at least 2 members, got {n_members}")
    if labels is not None and len(labels) != n_labels:
        raise EnsembleError(f"{len(labels)} label names given for {n_labels} labels")
    common: dict[str, Any] = {
        "method": method,
        "n_members": n_members,
        "n_labels": n_labels,
        "labels": tuple(labels) if labels is not None else None,
    }
    if method == "vote":
        if thresholds is None:
            return FittedEnsemble(**common, thresholds=operating_thresholds(p, y))
        t = np.asarray(thresholds, dtype=np.float64)
        majority_vote(p[:, :1], t)  # raises EnsembleError for a shape that fits neither members nor labels
        return FittedEnsemble(**common, thresholds=np.broadcast_to(t, (n_members, n_labels)).copy())
    if method == "mean":
        return FittedEnsemble(**common, weights=np.full((n_members, n_labels), 1.0 / n_members))
    if method == "weighted":
        weights = fit_weights(p, y, method=weight_method)
        log.info("weighted ensemble (%s) weights per label: %s", weight_method, weights.T.round(3).tolist())
        return FittedEnsemble(**common, weights=weights, weight_method=weight_method)
    return FittedEnsemble(**common, stacker=fit_stacker(p, y, seed=seed))
