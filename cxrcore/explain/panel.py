"""The side-by-side explanation panel: per label, the image and one overlay per method, with boxes.

Pure functions from an ``Explanation`` to RGB pictures, so the dashboard, the CLI and the tests draw
the same thing; ``panel_png`` joins the tiles into one PNG for download.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pandas as pd

from cxrcore.explain.boxes import BOX_THRESHOLD, boxes_from_heatmap
from cxrcore.explain.heatmap import heatmap_overlay, to_png_bytes
from cxrcore.explain.methods import METHOD_NAMES
from cxrcore.explain.overlay import draw_boxes, label_colours, to_rgb

if TYPE_CHECKING:  # annotations only: drawing a panel needs no PyTorch
    from cxrcore.explain.engine import Explanation

GT_COLOUR = (0, 255, 0)


@dataclass(frozen=True)
class PanelOptions:
    """How the maps are drawn."""

    colormap: str = "jet"
    alpha: float = 0.5
    threshold: float = 0.2  # map values below it are fully transparent
    box_threshold: float = BOX_THRESHOLD  # fraction of the map's peak that outlines a predicted box
    show_boxes: bool = True
    tile: int = 320  # side of each tile in pixels


@dataclass(frozen=True)
class Tile:
    """One picture of the panel and what it shows."""

    label: str
    method: str  # "image" for the plain picture
    rgb: np.ndarray
    caption: str
    boxes: pd.DataFrame


def predicted_boxes(explanation: Explanation, method: str, label: str, box_threshold: float) -> pd.DataFrame:
    """Boxes around the hot regions of one map, scored by peak heat x the label's probability."""
    saliency = explanation.get(method, label)
    found = boxes_from_heatmap(
        saliency.display, thresholds=(box_threshold,), class_score=explanation.probabilities[label]
    )
    return pd.DataFrame(
        [{"label": label, "x": b.x, "y": b.y, "w": b.w, "h": b.h, "score": b.score} for b in found],
        columns=["label", "x", "y", "w", "h", "score"],
    )


def _resize(rgb: np.ndarray, tile: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    interpolation = cv2.INTER_AREA if max(h, w) > tile else cv2.INTER_LINEAR
    return cv2.resize(rgb, (tile, round(h * tile / w)), interpolation=interpolation)


def panel_tiles(
    explanation: Explanation,
    labels: Sequence[str],
    methods: Sequence[str],
    options: PanelOptions = PanelOptions(),
    truth_boxes: pd.DataFrame | None = None,
) -> list[list[Tile]]:
    """Rows of tiles, one row per label: the image (with true boxes if known), then each method's overlay.

    ``truth_boxes`` (label, x, y, w, h) are in the pixel space of ``explanation.image01``.
    """
    image = explanation.image01
    scale = options.tile / image.shape[1]
    colours = label_colours(list(explanation.labels))
    rows = []
    for label in labels:
        truth = truth_boxes[truth_boxes["label"] == label] if truth_boxes is not None else None
        plain = _resize(to_rgb(image), options.tile)
        if truth is not None and len(truth):
            plain = draw_boxes(plain, truth, {label: GT_COLOUR}, scale=scale)
        prob = explanation.probabilities[label]
        row = [
            Tile(
                label,
                "image",
                plain,
                f"{label}: probability {prob:.3f}",
                truth if truth is not None else _none(),
            )
        ]
        for method in methods:
            saliency = explanation.get(method, label)
            rgb = heatmap_overlay(image, saliency.display, options.colormap, options.alpha, options.threshold)
            rgb = _resize(rgb, options.tile)
            boxes = _none()
            if options.show_boxes and not saliency.no_positive_evidence:
                boxes = predicted_boxes(explanation, method, label, options.box_threshold)
                rgb = draw_boxes(rgb, boxes, colours, scale=scale)
            name = METHOD_NAMES.get(method, method)
            caption = name + (" · no positive evidence" if saliency.no_positive_evidence else "")
            row.append(Tile(label, method, rgb, caption, boxes))
        rows.append(row)
    return rows


def _none() -> pd.DataFrame:
    return pd.DataFrame(columns=["label", "x", "y", "w", "h", "score"])


def panel_picture(rows: Sequence[Sequence[Tile]], gap: int = 4) -> np.ndarray:
    """All tiles as one RGB picture, a row per label, with a white gap between tiles."""
    height = max(t.rgb.shape[0] for row in rows for t in row)
    width = max(sum(t.rgb.shape[1] + gap for t in row) for row in rows)
    canvas = np.full((len(rows) * (height + gap), width, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        x = 0
        for tile in row:
            h, w = tile.rgb.shape[:2]
            canvas[i * (height + gap) : i * (height + gap) + h, x : x + w] = tile.rgb
            x += w + gap
    return canvas


def panel_png(rows: Sequence[Sequence[Tile]], gap: int = 4) -> bytes:
    """All tiles in one PNG (``panel_picture``), for download."""
    return to_png_bytes(panel_picture(rows, gap))


def detection_tile(
    pixels: np.ndarray,
    detections: pd.DataFrame,
    classes: Sequence[str],
    tile: int = PanelOptions.tile,
    caption: str = "Lesion detector",
) -> Tile:
    """The image with a detector's boxes, each with its class and score, ``tile`` pixels wide.

    ``detections`` (label, x, y, w, h, score) are in the pixel space of ``pixels``, the grey [0, 1]
    image the detector ran on; colours follow the order of the detector's ``classes``.
    """
    boxes = detections.loc[:, ["label", "x", "y", "w", "h", "score"]].reset_index(drop=True)
    rgb = _resize(to_rgb(pixels), tile)
    rgb = draw_boxes(rgb, boxes, label_colours(list(classes)), scale=tile / pixels.shape[1])
    return Tile("Lesion detector", "detector", rgb, caption, boxes)


def beside_first_row(rows: Sequence[Sequence[Tile]], tile: Tile) -> list[list[Tile]]:
    """The panel's rows with one more tile at the end of the first (e.g. a detector's boxes)."""
    out = [list(row) for row in rows]
    if not out:
        return [[tile]]
    out[0].append(tile)
    return out
