"""Heat-map overlays on grey X-rays, and PNG export of RGB pictures.

``heatmap_overlay`` is one pure function: it validates its inputs, colours the map with an OpenCV
colour map and blends it over the grey image only where the map reaches the threshold; below the
threshold the X-ray shows through untouched.
"""

from __future__ import annotations

import cv2
import numpy as np

from cxrcore.explain.overlay import to_rgb
from cxrcore.preprocess import check_unit_image

COLORMAPS: dict[str, int] = {
    "jet": cv2.COLORMAP_JET,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "inferno": cv2.COLORMAP_INFERNO,
}


def _check_fraction(value: float, name: str) -> float:
    """``value`` as a float, ValueError unless it lies in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def colourise(map01: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """A [0, 1] float map (H, W) as RGB uint8 (H, W, 3) through a named colour map."""
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; valid options: {', '.join(COLORMAPS)}")
    check_unit_image(map01, "map01")
    levels = np.round(map01 * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(levels, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)


def heatmap_overlay(
    image01_gray: np.ndarray,
    map01: np.ndarray,
    colormap: str = "jet",
    alpha: float = 0.5,
    threshold: float = 0.2,
) -> np.ndarray:
    """Blend a coloured [0, 1] heat map over a grey image; map values under ``threshold`` stay transparent.

    Args:
        image01_gray: grey image (H, W), float in [0, 1] or uint8.
        map01: heat map (H, W), float in [0, 1] (e.g. ``SaliencyMap.display``).
        colormap: one of ``COLORMAPS``.
        alpha: opacity of the colour where the map reaches the threshold.
        threshold: map values below it leave the image untouched.

    Returns:
        RGB uint8 (H, W, 3).

    Raises:
        ValueError: wrong dtype, range or shape, unknown colour map, alpha or threshold outside [0, 1].
    """
    if not isinstance(image01_gray, np.ndarray) or image01_gray.dtype != np.uint8:
        check_unit_image(image01_gray, "image01_gray")
    elif image01_gray.ndim != 2:
        raise ValueError(f"image01_gray must be a 2-D (H, W) array, got shape {image01_gray.shape}")
    colour = colourise(map01, colormap)
    if map01.shape != image01_gray.shape:
        raise ValueError(f"map01 shape {map01.shape} differs from image01_gray shape {image01_gray.shape}")
    alpha = _check_fraction(alpha, "alpha")
    threshold = _check_fraction(threshold, "threshold")
    weight = np.where(map01 >= threshold, np.float32(alpha), np.float32(0))[:, :, None]
    grey = to_rgb(image01_gray).astype(np.float32)
    blended = grey * (1 - weight) + colour.astype(np.float32) * weight
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


SCREEN_JPEG_QUALITY = 90  # pictures on screen; downloads are PNG, lossless


def _encode(rgb: np.ndarray, extension: str, params: list[int], caller: str) -> bytes:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
        got = getattr(rgb, "dtype", type(rgb).__name__)
        raise ValueError(f"{caller} expects a uint8 numpy array, got {got}")
    if not (rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] == 3)) or rgb.size == 0:
        raise ValueError(f"{caller} expects (H, W, 3) RGB or (H, W) grey, got shape {rgb.shape}")
    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    ok, encoded = cv2.imencode(extension, np.ascontiguousarray(pixels), params)
    if not ok:
        raise ValueError(f"{extension[1:].upper()} encoding failed for an image of shape {rgb.shape}")
    return encoded.tobytes()


def to_png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an RGB (H, W, 3) or grey (H, W) uint8 picture as PNG bytes."""
    return _encode(rgb, ".png", [], "to_png_bytes")


def to_jpeg_bytes(rgb: np.ndarray, quality: int = SCREEN_JPEG_QUALITY) -> bytes:
    """Encode an RGB (H, W, 3) or grey (H, W) uint8 picture as JPEG bytes, for the screen.

    Streamlit encodes a picture given as an array at JPEG quality 100, holding the interpreter lock:
    about 2.5 times the bytes of quality 90 for a row of heat maps (240 against 96 kB), for every
    browser to fetch and decode. OpenCV encodes without holding the lock.
    """
    return _encode(rgb, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(quality)], "to_jpeg_bytes")
