"""Drawing on images: boxes with labels over a grey X-ray, as an RGB uint8 picture."""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np
import pandas as pd

# Distinct, colour-blind-friendly colours (Okabe-Ito), as RGB.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
)


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    """A grey image (H, W), float in [0, 1] or uint8, as RGB uint8 (H, W, 3); RGB uint8 is copied."""
    if pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8:
        return pixels.copy()
    if pixels.ndim != 2:
        raise ValueError(f"expected a grey (H, W) image or RGB uint8 (H, W, 3), got shape {pixels.shape}")
    if pixels.dtype == np.uint8:
        grey = pixels
    else:
        if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 1:
            raise ValueError("grey image values must be finite and within [0, 1]")
        grey = np.round(pixels * 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def label_colours(labels: list[str]) -> dict[str, tuple[int, int, int]]:
    """One palette colour per label, stable for a given label order."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(labels)}


def draw_boxes(
    pixels: np.ndarray,
    boxes: pd.DataFrame,
    colours: Mapping[str, tuple[int, int, int]] | None = None,
    scale: float = 1.0,
) -> np.ndarray:
    """Draw boxes (columns label, x, y, w, h; optional score) with their label on a grey image.

    Args:
        pixels: grey image, float in [0, 1] or uint8, or an RGB uint8 picture (e.g. a heat-map overlay).
        boxes: boxes in the pixel space of the image before ``scale``.
        colours: label -> RGB; labels without a colour get the first palette colour.
        scale: factor from box coordinates to the image's pixel space (e.g. display size / file size).
    """
    canvas = np.ascontiguousarray(to_rgb(pixels))
    h, w = canvas.shape[:2]
    thickness = max(1, round(min(h, w) / 256))
    font_scale = max(0.35, min(h, w) / 700)
    for row in boxes.itertuples(index=False):
        colour = (colours or {}).get(row.label, PALETTE[0])
        x0, y0 = round(row.x * scale), round(row.y * scale)
        x1, y1 = round((row.x + row.w) * scale), round((row.y + row.h) * scale)
        cv2.rectangle(canvas, (x0, y0), (min(x1, w - 1), min(y1, h - 1)), colour, thickness)
        text = str(row.label) + (f" {row.score:.2f}" if "score" in boxes.columns else "")
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        ty = y0 - 3 if y0 - th - base - 3 >= 0 else min(y1 + th + 3, h - 1)
        cv2.rectangle(canvas, (x0, ty - th - 2), (min(x0 + tw + 2, w - 1), ty + base - 1), colour, -1)
        cv2.putText(
            canvas, text, (x0 + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA
        )
    return canvas


def thumbnail(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink a grey image so its longer side is at most ``max_side``; returns it and the scale used."""
    h, w = pixels.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return pixels, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), scale
