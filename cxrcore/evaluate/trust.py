"""How far each label's probability can be trusted: the reading of one image, label by label.

For every label of a checkpoint, ``label_readings`` puts side by side what the model says about one
image (the calibrated probability, the label's operating point and which side of it the probability
falls) and what the model card says about the label (its test AUROC with the 95% bootstrap interval
and the number of test positives). A label is marked unreliable when its interval reaches below
``MIN_AUROC_LOWER`` (0.6), when fewer than ``MIN_TEST_POSITIVES`` (10) test images were positive for
it, or when the card has no test figures for it. Readings are sorted with the labels called positive
first. The Explain page, the batch command's reports and the CSV all use this one table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from cxrcore.models.model_card import ModelCard
from cxrcore.models.readout import ABOVE, BELOW, NO_THRESHOLD, calibration_method, side, thresholds

MIN_AUROC_LOWER = 0.6  # a label whose AUROC interval reaches below this is marked unreliable
MIN_TEST_POSITIVES = 10  # ... and so is one with fewer test positives than this
READING_COLUMNS = (
    "label", "probability", "threshold", "call", "auroc", "auroc_lo", "auroc_hi", "test_positives",
    "reliable", "why",
)  # fmt: skip
_ORDER = {ABOVE: 0, BELOW: 1, NO_THRESHOLD: 2}


def _number(value: Any) -> float:
    """A float, NaN for None or anything not a number."""
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def label_trust(card: ModelCard) -> pd.DataFrame:
    """Per label: test AUROC, its interval, test positives, and whether the label is reliable (and why not).

    The figures are the card's ``evaluation`` (computed on the test split by ``python -m cxrcore
    evaluate``); without them every label is unreliable ("no test figures in the model card").
    """
    metrics = (card.evaluation or {}).get("metrics") or {}
    rows = []
    for label in card.labels:
        m = metrics.get(label) or {}
        auroc, lo, hi = _number(m.get("auroc")), _number(m.get("auroc_lo")), _number(m.get("auroc_hi"))
        positives = m.get("positives")
        why = []
        if not m or math.isnan(auroc):
            why.append("no test figures in the model card")
        else:
            if math.isnan(lo) or lo < MIN_AUROC_LOWER:
                why.append(f"AUROC interval reaches below {MIN_AUROC_LOWER}")
            if positives is None or int(positives) < MIN_TEST_POSITIVES:
                why.append(f"fewer than {MIN_TEST_POSITIVES} test positives ({positives or 0})")
        rows.append(
            {
                "label": label,
                "auroc": auroc,
                "auroc_lo": lo,
                "auroc_hi": hi,
                "test_positives": None if positives is None else int(positives),
                "reliable": not why,
                "why": "; ".join(why),
            }
        )
    return pd.DataFrame(rows).set_index("label")


def label_readings(card: ModelCard, probabilities: Mapping[str, float]) -> pd.DataFrame:
    """One row per label (``READING_COLUMNS``): probability, threshold, call, trust; positives first.

    ``call`` is "above" (at or above the label's operating point: called positive), "below", or
    "no threshold" (the card has no operating point for the label). Within each group labels are
    sorted by probability, highest first.
    """
    cuts = thresholds(card)
    trust = label_trust(card)
    rows = []
    for label in card.labels:
        probability = float(probabilities[label])
        threshold = cuts.get(label)
        rows.append(
            {
                "label": label,
                "probability": probability,
                "threshold": float("nan") if threshold is None else threshold,
                "call": side(probability, threshold),
                **trust.loc[label].to_dict(),
            }
        )
    table = pd.DataFrame(rows, columns=list(READING_COLUMNS))
    table["_order"] = table["call"].map(_ORDER)
    table = table.sort_values(["_order", "probability"], ascending=[True, False], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)


def auroc_text(row: Mapping[str, Any]) -> str:
    """A label's test AUROC with its interval and positives, e.g. "0.824 [0.730, 0.906], 13 pos."."""
    if math.isnan(_number(row.get("auroc"))):
        return "no test figures"
    interval = (
        "" if math.isnan(_number(row.get("auroc_lo"))) else f" [{row['auroc_lo']:.3f}, {row['auroc_hi']:.3f}]"
    )
    return f"{row['auroc']:.3f}{interval}, {row.get('test_positives') or 0} pos."


def trust_text(reliable: bool, why: str) -> str:
    """'ok', or 'unreliable: ' and the reasons."""
    return "ok" if reliable else f"unreliable: {why}"


def labels_table(card: ModelCard) -> pd.DataFrame:
    """Before any image: the readings table without an image's probability and call (each label's
    threshold, test AUROC [CI] with positives, and trust), in the card's label order."""
    blank = label_readings(card, dict.fromkeys(card.labels, float("nan")))
    return readings_table(blank).drop(columns=["probability", "call"]).reindex(list(card.labels))


def readings_table(readings: pd.DataFrame) -> pd.DataFrame:
    """The readings as people read them: probability, threshold, call, test AUROC [CI], trust."""
    return pd.DataFrame(
        {
            "probability": readings["probability"].round(3).to_numpy(),
            "threshold": readings["threshold"].round(3).to_numpy(),
            "call": readings["call"].to_numpy(),
            "test AUROC [95% CI], positives": [auroc_text(r) for _, r in readings.iterrows()],
            "trust": [trust_text(r, w) for r, w in zip(readings["reliable"], readings["why"], strict=True)],
        },
        index=pd.Index(readings["label"], name="label"),
    )


def training_summary(card: ModelCard) -> dict[str, Any]:
    """What the model was trained on, from its card: dataset, sources, images, input size, calibration."""
    counts = dict(card.dataset.split.get("counts") or {})
    evaluation = card.evaluation or {}
    sources = list(((evaluation.get("by") or {}).get("groups") or {}).keys())
    made = card.how_made or {}
    points = card.operating_points or {}
    return {
        "dataset": card.dataset.name,
        "synthetic": card.synthetic,
        "sources": sources,
        "description": made.get("data"),
        "images": sum(int(v) for v in counts.values()) or None,
        "split_counts": counts,
        "input_size": card.input_size,
        "architecture": card.spec.architecture,
        "labels": len(card.labels),
        "calibration": calibration_method(card),
        "operating_points": points.get("description"),
        "test_split": None
        if not evaluation
        else f"{evaluation.get('n_images')} images of {evaluation.get('dataset')}/{evaluation.get('split')}",
    }
