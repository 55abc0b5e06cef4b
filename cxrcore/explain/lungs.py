"""Heat inside the lungs: how much of a heat map falls on the lung fields found by the lung segmenter.

Definition (``heat_in_lungs``): the map is first normalised by its own range, m = (h - min h) /
(max h - min h) over all its pixels, the display normalisation of ``explain`` (the coolest pixel
counts 0, the hottest 1); the share is sum(m over lung pixels) / sum(m over all pixels). Pixels of
the letterbox padding count as outside the lungs. A map with no range (no positive evidence) has no
heat to share: NaN. A map spread evenly over the image would score the lungs' share of the image's
area, the chance level given beside every share (``lung_area``).

A low share says the model looks at borders, markers, text or devices rather than the lungs; a high
one says only where it looks, not that it looks at the right finding.

The maps live on the model's input square (``Explanation.image01``); the lung mask, found on the
image's own pixels, is placed on that square exactly as the image was (``mask_to_input``, lung crop
and letterbox included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pandas as pd

from cxrcore.explain.methods import METHOD_NAMES
from cxrcore.explain.overlay import to_rgb
from cxrcore.preprocess import mask_to_input

if TYPE_CHECKING:  # annotations only: drawing the shares needs no PyTorch
    from cxrcore.explain.engine import Explanation
    from cxrcore.models.checkpoint import Checkpoint
    from cxrcore.models.segmenter import LungMasks

LUNG_SHARE_METHODS: tuple[str, ...] = ("cam", "crm")  # the maps of every forward pass
MOSTLY = 0.5  # from this share on, most of a map's heat lies on the lungs
OUTLINE_RGB = (0, 158, 115)  # bluish green (Okabe-Ito), apart from the jet colours of the maps


def heat_in_lungs(heatmap: np.ndarray, lung_mask: np.ndarray) -> float:
    """The share of a map's heat inside the lung mask, the map min-max normalised first (module docstring).

    Raises:
        ValueError: the map and mask differ in shape, the map is not 2-D, or it has non-finite values.
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    mask = np.asarray(lung_mask, dtype=bool)
    if heat.ndim != 2 or heat.shape != mask.shape:
        raise ValueError(f"heat map {heat.shape} and lung mask {mask.shape} must be the same 2-D shape")
    if not np.isfinite(heat).all():
        raise ValueError("heat map has non-finite values")
    low, high = float(heat.min()), float(heat.max())
    if not high > low:
        return float("nan")
    m = (heat - low) / (high - low)
    return float(m[mask].sum() / m.sum())


def share_reading(share: float, lung_area: float) -> str:
    """A share in words against chance (``lung_area``, what an evenly spread map scores)."""
    if share != share:  # NaN
        return "no heat"
    if share >= MOSTLY:
        return "mostly on the lungs"
    return "above an even spread" if share >= lung_area else "below an even spread: looks elsewhere"


def lungs_on_input(checkpoint: Checkpoint, pixels: np.ndarray, masks: LungMasks) -> np.ndarray:
    """An image's lung fields on a model's input square (bool), placed as preprocessing places the image."""
    return mask_to_input(masks.lungs, checkpoint.preprocess, pixels)


def lung_shares(
    explanation: Explanation,
    lungs_input: np.ndarray,
    labels: Sequence[str] | None = None,
    methods: Sequence[str] = LUNG_SHARE_METHODS,
) -> pd.DataFrame:
    """Per label (rows), each method's heat-in-lungs share (columns named as on the page), NaN without heat.

    ``lungs_input`` is the lung mask on the model's input square (``lungs_on_input``).
    """
    rows = {}
    for label in labels if labels is not None else explanation.labels:
        rows[label] = {
            METHOD_NAMES.get(method, method): heat_in_lungs(
                explanation.get(method, label).display, lungs_input
            )
            for method in methods
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "label"
    return frame


def lung_outline(image01: np.ndarray, lungs_input: np.ndarray) -> np.ndarray:
    """The model's input image (grey [0, 1] or uint8) as RGB uint8 with the lung fields outlined."""
    canvas = np.ascontiguousarray(to_rgb(image01))
    contours, _ = cv2.findContours(lungs_input.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = max(1, round(min(canvas.shape[:2]) / 200))
    return cv2.drawContours(canvas, contours, -1, OUTLINE_RGB, thickness)
