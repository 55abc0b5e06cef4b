"""An ensemble's members: the one label set they must share, and the error of an inconsistent ensemble.

Members are models or their predictions; ``cxrcore.evaluate.ensemble`` combines their probabilities,
``cxrcore.explain.engine`` their heat maps, and both check the members here first.
"""

from __future__ import annotations

from collections.abc import Sequence


class EnsembleError(ValueError):
    """Ensemble members or arguments are inconsistent."""


def check_members(label_lists: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """Return the label set shared by all members, raising EnsembleError naming any difference."""
    if len(label_lists) < 2:
        raise EnsembleError(f"an ensemble needs at least 2 members, got {len(label_lists)}")
    reference = tuple(label_lists[0])
    problems: list[str] = []
    for i, labels in enumerate(label_lists[1:], start=1):
        labels = tuple(labels)
        if labels == reference:
            continue
        missing = [name for name in reference if name not in labels]
        extra = [name for name in labels if name not in reference]
        if missing:
            problems.append(f"member {i} lacks {missing} (present in member 0)")
        if extra:
            problems.append(f"member {i} has {extra} that member 0 lacks")
        if not missing and not extra:
            problems.append(f"member {i} orders the labels {list(labels)}, member 0 {list(reference)}")
    if problems:
        raise EnsembleError("ensemble members have different labels: " + "; ".join(problems))
    return reference
