"""Boxes drawn from a heat map: the regions above a fraction of its peak, each scored by its peak heat.

The explanation panel draws them over an image; ``cxrcore.evaluate`` scores them against ground-truth
boxes. Boxes are (x, y, w, h) in pixels with (x, y) the top-left corner, in the map's pixel grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import ArrayLike

BOX_THRESHOLD = 0.5  # fraction of a map's peak that outlines a box drawn from it


@dataclass(frozen=True)
class ScoredBox:
    """One predicted box (x, y, w, h) in pixels with its confidence score."""

    x: float
    y: float
    w: float
    h: float
    score: float


def normalised_heat(heat: ArrayLike) -> np.ndarray | None:
    """Heat map divided by its maximum, or None when it is constant or has no positive value."""
    arr = np.asarray(heat, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"heat map must be 2-D; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"heat map has {int((~np.isfinite(arr)).sum())} non-finite values")
    if arr.size == 0 or arr.max() <= 0 or arr.max() == arr.min():
        return None
    return arr / arr.max()


def boxes_from_heatmap(
    heat: ArrayLike,
    thresholds: Sequence[float] = (BOX_THRESHOLD,),
    class_score: float = 1.0,
    min_area: int = 4,
) -> list[ScoredBox]:
    """Boxes around the connected regions above each threshold (a fraction of the maximum), best score first.

    Each 8-connected component of ``heat >= t * max`` with at least ``min_area`` pixels gives one box scored
    by the highest normalised heat inside the box times ``class_score``; a box found at several thresholds
    is kept once, with its highest score. A constant or non-positive map gives no boxes.
    """
    bad = [t for t in thresholds if not 0.0 < t <= 1.0]
    if bad:
        raise ValueError(f"thresholds must lie in (0, 1] as fractions of the map's maximum; got {bad}")
    norm = normalised_heat(heat)
    if norm is None:
        return []
    found: dict[tuple[int, int, int, int], float] = {}
    for t in thresholds:
        mask = (norm >= t).astype(np.uint8)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for left, top, width, height, area in stats[1:count]:  # label 0 is the background
            if area < min_area:
                continue
            key = (int(left), int(top), int(width), int(height))
            score = float(norm[top : top + height, left : left + width].max()) * class_score
            found[key] = max(score, found.get(key, -np.inf))
    ranked = sorted(found.items(), key=lambda item: -item[1])
    return [ScoredBox(float(x), float(y), float(w), float(h), s) for (x, y, w, h), s in ranked]
