"""Where the lungs are, as a crop box: the threshold heuristic, and other methods registered by name.

``prepare`` (``cxrcore.preprocess``) crops to ``crop_box(pixels, cfg.lung_crop_method)`` when a
``PreprocessConfig`` asks for a lung crop. Two methods exist (``LUNG_CROP_METHODS``):

- ``"threshold"``: the classical heuristic of this module (``threshold_lung_box``); the default, and
  what every checkpoint without a method in its card was trained with;
- ``"segmenter"``: the bounding box of a learned lung segmentation. The segmenter lives in a higher
  layer (``cxrcore.models.segmenter``), which registers its box function here when it is imported
  (``register_lung_crop_method``), so this layer never imports a model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import cv2
import numpy as np

from cxrcore.hints import unknown_choice
from cxrcore.preprocess import LUNG_CROP_METHODS, _resize, _unit_to_u8, check_unit_image

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1 and y1 exclusive
LungBoxFunction = Callable[[np.ndarray], Box]

# Lung-crop parameters (fractions are of the working image): working resolution, border band, the
# threshold ladder (fractions of the Otsu threshold) and opening radii tried in order, smallest lung
# region, widest lung region, smallest second lung relative to the first, joint lung area, margin.
_LUNG_WORK_SIZE = 256
_LUNG_BORDER = 0.02
_LUNG_THRESHOLDS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
_LUNG_OPEN_RADII = (1, 4, 8)
_LUNG_MIN_AREA = 0.01
_LUNG_MAX_WIDTH = 0.5
_LUNG_SECOND_RATIO = 0.2
_LUNG_AREA_RANGE = (0.05, 0.60)
LUNG_MARGIN = 0.05  # the crop box is the lungs' box widened by this share of the image on each side

_REGISTERED: dict[str, tuple[LungBoxFunction, Callable[[], str]]] = {}


def register_lung_crop_method(name: str, box: LungBoxFunction, identity: Callable[[], str]) -> None:
    """Make ``name`` (one of ``LUNG_CROP_METHODS``) usable by ``crop_box``.

    ``identity`` returns a short string that changes whenever the boxes would (a model's weights
    fingerprint), so prepared-image caches keyed by ``PreprocessConfig.key`` never mix two versions.
    """
    if name not in LUNG_CROP_METHODS or name == "threshold":
        valid = [m for m in LUNG_CROP_METHODS if m != "threshold"]
        raise ValueError(f"cannot register lung crop method {name!r}; valid options: {', '.join(valid)}")
    _REGISTERED[name] = (box, identity)


def method_identity(method: str) -> str:
    """The identity of a lung crop method's current implementation ("threshold" for the heuristic)."""
    if method == "threshold":
        return "threshold"
    entry = _REGISTERED.get(method)
    return f"{method}:{entry[1]()}" if entry is not None else f"{method}:unregistered"


def crop_box(pixels: np.ndarray, method: str = "threshold") -> Box:
    """The lung crop box of an image by ``method`` (see the module docstring).

    Raises:
        ValueError: an unknown method, or one whose module has not been imported.
    """
    if method == "threshold":
        return threshold_lung_box(pixels)
    if method not in LUNG_CROP_METHODS:
        raise ValueError(unknown_choice("lung crop method", method, LUNG_CROP_METHODS))
    if method not in _REGISTERED:
        raise ValueError(
            f"the {method!r} lung crop is not available: import cxrcore.models.segmenter first "
            "(loading any checkpoint does)"
        )
    return _REGISTERED[method][0](pixels)


def widen_box(box: tuple[float, float, float, float], width: int, height: int, margin: float) -> Box:
    """A box (x0, y0, x1, y1) widened by ``margin`` of the image's width and height, in whole pixels."""
    x0, y0, x1, y1 = box
    mx, my = margin * width, margin * height
    return (
        max(0, int(np.floor(x0 - mx))),
        max(0, int(np.floor(y0 - my))),
        min(width, int(np.ceil(x1 + mx))),
        min(height, int(np.ceil(y1 + my))),
    )


def _lung_pair(dark: np.ndarray) -> np.ndarray | None:
    """Bounding boxes (x, y, w, h) of a plausible left/right lung pair in a dark-pixel mask, or None."""
    h, w = dark.shape
    band = max(1, round(_LUNG_BORDER * max(h, w)))
    n, _, stats, centroids = cv2.connectedComponentsWithStats(dark, connectivity=4)
    cands = []
    for label in range(1, n):
        x, y, bw, bh, area = stats[label]
        if x < band or y < band or x + bw > w - band or y + bh > h - band:
            continue  # reaches the border: air outside the body, not lung
        if area >= _LUNG_MIN_AREA * w * h and bw <= _LUNG_MAX_WIDTH * w:
            cands.append((int(area), label, centroids[label, 0] < w / 2))
    if not cands:
        return None
    cands.sort(reverse=True)
    first = cands[0]
    others = [c for c in cands[1:] if c[2] != first[2] and c[0] >= _LUNG_SECOND_RATIO * first[0]]
    if not others or not _LUNG_AREA_RANGE[0] <= (first[0] + others[0][0]) / (w * h) <= _LUNG_AREA_RANGE[1]:
        return None
    return stats[[first[1], others[0][1]], :4]


def _find_lungs(small: np.ndarray) -> np.ndarray | None:
    """Search the threshold and opening ladder for a plausible lung pair in a small uint8 image."""
    blurred = cv2.GaussianBlur(small, (5, 5), 0)
    otsu, _ = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    for fraction in _LUNG_THRESHOLDS:
        dark = np.where(blurred <= otsu * fraction, np.uint8(255), np.uint8(0))
        for radius in _LUNG_OPEN_RADII:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
            boxes = _lung_pair(cv2.morphologyEx(dark, cv2.MORPH_OPEN, kernel))
            if boxes is not None:
                return boxes
    return None


def threshold_lung_box(pixels: np.ndarray, margin: float = LUNG_MARGIN) -> Box:
    """Estimate a box around both lung fields, as (x0, y0, x1, y1) pixel bounds with x1, y1 exclusive.

    Method (classical, no learned model): downsample to 256 px on the long side, smooth, and
    threshold dark (air) pixels at Otsu's threshold, then at lower fractions of it, each followed
    by a morphological opening of growing radius, until a plausible lung pair appears: two dark
    regions that stay clear of the image border (air outside the body reaches it), lie on opposite
    sides of the vertical midline, are each at least 1% of the image and at most half its width,
    the smaller at least a fifth of the larger, and together cover 5-60% of the image. The box is
    their joint bounding box widened by ``margin`` (5%) of the image size on each side. When no pair
    is found the full image is returned and a warning is logged. On the 524 NIH ChestX-ray14 frontal
    images of the test data (512 px), about one in nine falls back to the full image.

    What it cannot do: it does not segment lungs and knows no anatomy. It fails on lungs that are
    not darker than the body (large effusions, white-out, dense consolidation), on lateral, rotated
    or heavily collimated views, when one lung is missing or collapsed, when devices or text labels
    split or bridge dark regions, and when a lung merges with outside air or a dark abdomen (then
    the box can include abdomen). Lower thresholds and openings shrink the regions, so the box can
    cut off the costophrenic angles and pathology at the lung bases or outside the lungs; that is
    why ``lung_crop`` is off by default. The learned ``"segmenter"`` method does better on real
    films (README, "Lung segmenter").

    Accepts a float [0, 1] or uint8 2-D image.
    """
    if isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8 and pixels.ndim == 2 and pixels.size:
        u8 = pixels
    else:
        check_unit_image(pixels)
        u8 = _unit_to_u8(pixels)
    h, w = u8.shape
    scale = min(1.0, _LUNG_WORK_SIZE / max(h, w))
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    boxes = _find_lungs(_resize(u8, sw, sh))
    if boxes is None:
        logger.warning("lung crop found no plausible lung pair in a %dx%d image; using the whole image", w, h)
        return 0, 0, w, h
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
    mx, my = margin * sw, margin * sh
    fx, fy = w / sw, h / sh
    return (
        max(0, int(np.floor((x0 - mx) * fx))),
        max(0, int(np.floor((y0 - my) * fy))),
        min(w, int(np.ceil((x1 + mx) * fx))),
        min(h, int(np.ceil((y1 + my) * fy))),
    )
