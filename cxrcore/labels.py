"""Label vocabularies and the 1 / 0 / NaN label-matrix contract.

A label matrix is float: 1 means the finding is present, 0 absent, NaN unknown or uncertain.
Every source adapter writes exactly these values; everything downstream reads them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from cxrcore.hints import unknown_choice

# The fourteen findings of NIH ChestX-ray14, in the order of the official release.
NIH14_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)

# The fourteen CheXpert observations.
CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

# Findings drawn into the synthetic phantoms (see cxrcore.data.phantoms).
PHANTOM_LABELS: tuple[str, ...] = ("Nodule", "Opacity", "Effusion")

UncertaintyPolicy = Literal["nan", "zeros", "ones"]
# What uncertain (-1) labels become: unknown (NaN), absent (0) or present (1).
UNCERTAINTY_POLICIES: tuple[str, ...] = ("nan", "zeros", "ones")
DEFAULT_UNCERTAINTY: UncertaintyPolicy = "nan"


def _label_key(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip()).lower()


_KNOWN_LABELS = {_label_key(n): n for n in (*CHEXPERT_LABELS, *NIH14_LABELS, "Tuberculosis")}


def canonical_label(name: str) -> str:
    """A known finding's standard spelling ('PNEUMONIA' -> 'Pneumonia'); other names unchanged.

    Sources spell the same finding differently (folder names are often upper case); merging them
    through the label contract needs one name per finding. NIH spellings win over CheXpert ones.
    """
    return _KNOWN_LABELS.get(_label_key(name), name)


class LabelError(ValueError):
    """A label matrix breaks the 1 / 0 / NaN contract."""


def apply_uncertainty(values: pd.DataFrame, policy: UncertaintyPolicy = DEFAULT_UNCERTAINTY) -> pd.DataFrame:
    """Map uncertain labels (-1) to NaN, 0 or 1 according to a named policy.

    Blank cells stay NaN under every policy: "not mentioned" is unknown, not negative.
    """
    if policy not in UNCERTAINTY_POLICIES:
        raise LabelError(unknown_choice("uncertainty policy", policy, UNCERTAINTY_POLICIES))
    replacement = {"nan": np.nan, "zeros": 0.0, "ones": 1.0}[policy]
    out = values.astype("float64")
    return out.mask(out == -1.0, replacement)


def check_label_matrix(values: pd.DataFrame) -> None:
    """Raise LabelError naming the columns whose values are outside {1, 0, NaN}."""
    bad: list[str] = []
    for column in values.columns:
        col = pd.to_numeric(values[column], errors="coerce")
        not_numeric = col.isna() & values[column].notna()
        outside = col.notna() & ~col.isin((0.0, 1.0))
        if not_numeric.any() or outside.any():
            examples = values[column][not_numeric | outside].unique()[:3]
            shown = [v.item() if hasattr(v, "item") else v for v in examples]  # 7.0, not np.float64(7.0)
            bad.append(f"{column!r} (e.g. {', '.join(map(repr, shown))})")
    if bad:
        raise LabelError("label values must be 1, 0 or empty (NaN); found others in " + "; ".join(bad))


def check_same_labels(a: Sequence[str], b: Sequence[str]) -> None:
    """Raise LabelError unless two label sets are equal in names and order."""
    if list(a) != list(b):
        only_a = sorted(set(a) - set(b))
        only_b = sorted(set(b) - set(a))
        detail = (
            f"only in first: {only_a}; only in second: {only_b}"
            if (only_a or only_b)
            else "same names, other order"
        )
        raise LabelError(f"label sets differ ({detail})")


@dataclass(frozen=True)
class LabelFit:
    """How a model's labels meet a dataset's label columns.

    Attributes:
        shared: the model's labels the dataset has, in the model's order.
        missing: the model's labels the dataset lacks, in the model's order.
    """

    shared: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether the dataset has at least one of the model's labels (so there is something to score)."""
        return bool(self.shared)

    @property
    def complete(self) -> bool:
        """Whether the dataset has every one of the model's labels."""
        return not self.missing


def label_fit(model_labels: Iterable[str], dataset_labels: Iterable[str]) -> LabelFit:
    """Which of a model's labels a dataset has (``shared``) and which it lacks (``missing``).

    Names are compared exactly. A model whose one label is "any finding" is scored against the
    labels it was trained on instead; its callers handle that case before asking.
    """
    known = set(dataset_labels)
    labels = tuple(model_labels)
    return LabelFit(
        shared=tuple(n for n in labels if n in known), missing=tuple(n for n in labels if n not in known)
    )
