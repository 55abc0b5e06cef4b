"""Evaluating checkpoints on a dataset split: one model's metrics, and members against their ensembles.

Thresholds are never chosen on the split they are scored on: operating points come from the
validation split's predictions and are applied to the evaluated split, and ensembles are fitted on
validation predictions and scored on test. A dataset without validation images (someone else's test
set, or a folder with no split at all, evaluated with ``split="all"``) is scored at the operating
points stored in the checkpoint's card, chosen on the validation split of the data it was trained on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrcore.data.index import TEST_SPLIT, VALID_SPLIT, DatasetError
from cxrcore.evaluate.classification import (
    DEFAULT_THRESHOLD_RULE,
    FIXED_RULE,
    N_BOOT,
    TARGET_RULES,
    THRESHOLD_RULE_NAMES,
    auroc_ci,
    delong_test,
    expected_calibration_error,
    operating_point,
    summarise,
    threshold_metrics,
)
from cxrcore.evaluate.ensemble import METHODS, fit_ensemble
from cxrcore.evaluate.predict import Predictions, Progress, predict, split_has_images
from cxrcore.models.card import read_card
from cxrcore.models.ensemble import check_members
from cxrcore.models.readout import thresholds as card_thresholds
from cxrcore.store import Workspace

# The vote's score is the fraction of members voting positive; a majority is strictly more than half, so
# a tie of an even number of members is negative (metrics count score >= threshold as positive).
VOTE_THRESHOLD = float(np.nextafter(0.5, 1.0))
TABLE_METRICS = ("auroc", "accuracy", "sensitivity", "specificity", "ppv", "f1", "mcc", "ece")
MEAN_ROW = "mean"  # the comparison table's row of each model's mean over labels


@dataclass(frozen=True)
class Evaluation:
    """One checkpoint's predictions on a split, its thresholds and its metrics table."""

    predictions: Predictions
    thresholds: dict[str, float]
    threshold_rule: str
    summary: pd.DataFrame
    # With ``by``: the same table for each value of that index column (e.g. each merged source).
    groups: dict[str, pd.DataFrame] = field(default_factory=dict)
    # Where the thresholds come from, in words ("the validation split of demo", "the model card ...").
    threshold_source: str = ""


def validation_thresholds(
    valid: Predictions | None, rule: str, target: float | None = None
) -> dict[str, float]:
    """Per-label thresholds from validation predictions by an operating-point rule (0.5 without them)."""
    if valid is None:
        return {}
    y, p = valid.y_true, valid.y_prob
    return {name: _valid_threshold(y[:, j], p[:, j], rule, target) for j, name in enumerate(valid.labels)}


def evaluate_checkpoint(
    checkpoint: str | Path,
    ws: Workspace,
    dataset: str,
    split: str = TEST_SPLIT,
    *,
    rule: str = DEFAULT_THRESHOLD_RULE,
    target: float | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    progress: Progress | None = None,
    by: str | None = None,
) -> Evaluation:
    """Predict (or reuse predictions), choose thresholds on validation, and summarise the split's metrics.

    ``by`` names a column of the dataset's index (``source`` for a merged dataset): the metrics are
    then also computed within each of its values, with the same thresholds.
    """
    preds = predict(checkpoint, ws, dataset, split, progress=progress)
    rule, thresholds, source = _thresholds_for(checkpoint, ws, dataset, preds, rule, target, progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # single-class labels are reported as NaN in the table
        summary = summarise(
            preds.y_true, preds.y_prob, list(preds.labels), thresholds=thresholds, n_boot=n_boot, seed=seed
        )
        groups = {}
        if by is not None:
            values = _group_values(ws, dataset, preds, by)
            for value in sorted(set(values)):
                rows = values == value
                groups[value] = summarise(
                    preds.y_true[rows],
                    preds.y_prob[rows],
                    list(preds.labels),
                    thresholds=thresholds,
                    n_boot=n_boot,
                    seed=seed,
                )
    return Evaluation(preds, thresholds, rule, summary, groups, source)


def _thresholds_for(
    checkpoint: str | Path,
    ws: Workspace,
    dataset: str,
    preds: Predictions,
    rule: str,
    target: float | None,
    progress: Progress | None,
) -> tuple[str, dict[str, float], str]:
    """The rule used, each label's threshold, and where they come from.

    Chosen on the dataset's validation split when it has images; otherwise the card's stored
    operating points (0.5 for a label without one); 0.5 everywhere for the fixed rule.
    """
    fixed = {name: 0.5 for name in preds.labels}
    if rule == FIXED_RULE:
        return rule, fixed, THRESHOLD_RULE_NAMES[FIXED_RULE]
    if preds.meta.get("split") == VALID_SPLIT or split_has_images(ws, dataset, VALID_SPLIT):
        valid = (
            preds
            if preds.meta.get("split") == VALID_SPLIT
            else predict(checkpoint, ws, dataset, VALID_SPLIT, progress=progress)
        )
        how = THRESHOLD_RULE_NAMES[rule] + (f" {target:g}" if rule in TARGET_RULES and target else "")
        return rule, validation_thresholds(valid, rule, target), f"{how} on the validation split of {dataset}"
    card = read_card(checkpoint)
    stored = card_thresholds(card)
    if not stored:
        why = f"{dataset} has no validation split and the model card no operating points"
        return FIXED_RULE, fixed, f"{THRESHOLD_RULE_NAMES[FIXED_RULE]} ({why})"
    points = card.operating_points or {}
    fitted = points.get("fitted_on") or {}
    where = f"{fitted.get('dataset', 'its training data')}/{fitted.get('split', 'valid')}"
    how = points.get("description", points.get("rule"))
    source = f"the model card's operating points ({how}, chosen on {where})"
    return str(points.get("rule", rule)), {**fixed, **stored}, source


def _group_values(ws: Workspace, dataset: str, preds: Predictions, by: str) -> np.ndarray:
    index = ws.load_dataset(dataset).index
    if by not in index.columns:
        raise DatasetError(
            f"dataset {dataset!r} has no column {by!r} to group by; it has: {', '.join(index.columns)}"
        )
    lookup = index.set_index("image_id")[by].astype(str)
    return preds.table["image_id"].map(lookup).fillna("unknown").to_numpy()


@dataclass
class EnsembleComparison:
    """Members and ensembles scored on the same test images."""

    labels: tuple[str, ...]
    names: list[str]  # members first, then ensembles
    kinds: dict[str, str]  # name -> "member" | "ensemble"
    test_true: np.ndarray
    test_scores: dict[str, np.ndarray]
    thresholds: dict[str, np.ndarray]
    table: pd.DataFrame  # rows (model, label incl. MEAN_ROW), columns TABLE_METRICS + CI + delta/p
    fitted: dict[str, dict[str, Any]] = field(default_factory=dict)


def member_name(path: str | Path, taken: Sequence[str]) -> str:
    """A short unique display name for a checkpoint: its run folder and file stem."""
    path = Path(path)
    name = f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem
    while name in taken:
        name += "'"
    return name


def _scores_row(y: np.ndarray, score: np.ndarray, threshold: float, n_boot: int, seed: int) -> dict:
    known = ~np.isnan(y)
    y, score = y[known], score[known]
    auc, lo, hi = (float(v[0]) for v in auroc_ci(y[:, None], score[:, None], n_boot=n_boot, seed=seed))
    row = {"auroc": auc, "auroc_lo": lo, "auroc_hi": hi}
    row.update({k: v for k, v in threshold_metrics(y, score, threshold).items() if k in TABLE_METRICS})
    row["ece"] = expected_calibration_error(y, score)
    return row


def _table(
    labels: Sequence[str],
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    thresholds: dict[str, np.ndarray],
    kinds: dict[str, str],
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, score in scores.items():
            per_label = []
            for j, label in enumerate(labels):
                row = _scores_row(y[:, j], score[:, j], float(thresholds[name][j]), n_boot, seed)
                per_label.append(row)
                rows.append({"model": name, "kind": kinds[name], "label": label, **row})
            mean = pd.DataFrame(per_label).mean(numeric_only=True).to_dict()
            rows.append({"model": name, "kind": kinds[name], "label": MEAN_ROW, **mean})
    table = pd.DataFrame(rows)
    _add_delong(table, labels, y, scores, kinds)
    return table


def _add_delong(
    table: pd.DataFrame,
    labels: Sequence[str],
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    kinds: dict[str, str],
) -> None:
    """Each ensemble's AUROC difference to the best member of each label, with DeLong's p-value."""
    table["vs_best_member"], table["delta_auroc"], table["p_value"] = "", np.nan, np.nan
    members = [n for n, k in kinds.items() if k == "member"]
    for j, label in enumerate([*labels, MEAN_ROW]):
        at = table["label"] == label
        member_auc = table[at & table["model"].isin(members)].set_index("model")["auroc"]
        if member_auc.isna().all():
            continue
        best = str(member_auc.idxmax())
        for name in (n for n, k in kinds.items() if k == "ensemble"):
            where = at & (table["model"] == name)
            table.loc[where, "vs_best_member"] = best
            if label == MEAN_ROW:
                table.loc[where, "delta_auroc"] = table.loc[where, "auroc"].to_numpy() - member_auc[best]
                continue
            known = ~np.isnan(y[:, j])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = delong_test(y[known, j], scores[name][known, j], scores[best][known, j])
            table.loc[where, "delta_auroc"] = result.diff
            table.loc[where, "p_value"] = result.p_value


def compare_ensembles(
    checkpoints: Sequence[str | Path],
    ws: Workspace,
    dataset: str,
    methods: Sequence[str] = METHODS,
    *,
    split: str = TEST_SPLIT,
    rule: str = DEFAULT_THRESHOLD_RULE,
    n_boot: int = N_BOOT,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> EnsembleComparison:
    """Score every member and every ensemble method on a split; ensembles are fitted on validation."""
    valid, test, names = [], [], []
    for path in checkpoints:
        name = member_name(path, names)
        names.append(name)
        step = None if progress is None else (lambda done, total, n=name: progress(n, done, total))
        valid.append(predict(path, ws, dataset, VALID_SPLIT, progress=step))
        test.append(predict(path, ws, dataset, split, progress=step))
    labels = check_members([p.labels for p in test])
    y_valid, y_test = valid[0].y_true, test[0].y_true
    val_probs = np.stack([p.y_prob for p in valid])
    test_probs = np.stack([p.y_prob for p in test])
    kinds = {n: "member" for n in names}
    scores = {n: test_probs[i] for i, n in enumerate(names)}
    member_thr = np.stack([list(validation_thresholds(v, rule).values()) for v in valid])
    thresholds = {n: member_thr[i] for i, n in enumerate(names)}
    fitted = {}
    for method in methods:
        ensemble = fit_ensemble(method, val_probs, y_valid, thresholds=member_thr, labels=labels)
        key = f"ensemble:{method}"
        kinds[key] = "ensemble"
        scores[key] = ensemble.predict(test_probs)
        val_scores = ensemble.predict(val_probs)
        thresholds[key] = np.array(
            [
                0.5 if method == "vote" else _valid_threshold(y_valid[:, j], val_scores[:, j], rule)
                for j in range(len(labels))
            ]
        )
        fitted[key] = ensemble.describe()
    table = _table(labels, y_test, scores, thresholds, kinds, n_boot, seed)
    return EnsembleComparison(labels, list(scores), kinds, y_test, scores, thresholds, table, fitted)


def _valid_threshold(y: np.ndarray, score: np.ndarray, rule: str, target: float | None = None) -> float:
    """One label's threshold on validation; 0.5 for the fixed rule or a single-class label."""
    known = ~np.isnan(y)
    t = y[known]
    if rule == FIXED_RULE or t.size == 0 or t.min() == t.max():
        return 0.5
    if rule not in TARGET_RULES:
        target = None  # only those rules take a target
    return float(operating_point(t, score[known], rule, target))


def best_marks(table: pd.DataFrame, label: str = MEAN_ROW) -> pd.DataFrame:
    """One label's rows with the best value of each metric marked by a trailing star."""
    rows = table[table["label"] == label].set_index("model")
    shown = rows[list(TABLE_METRICS)].copy().astype(object)
    for metric in TABLE_METRICS:
        values = rows[metric].astype(float)
        if values.isna().all():
            continue
        best = values.idxmin() if metric == "ece" else values.idxmax()
        shown[metric] = [f"{v:.3f}" + (" *" if m == best else "") for m, v in values.items()]
    return shown
