"""Training-time augmentation on prepared uint8 images: one affine warp per image.

Random resized crop (scale and aspect), a small rotation and a small translation are folded into a
single ``cv2.warpAffine``, so an image is resampled once. Horizontal flips are off by default:
chest anatomy is lateralised (heart on the patient's left), so a flipped film is not a plausible film.
Each call takes its own ``np.random.Generator``; nothing global is seeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Augment:
    """Ranges of the random geometric changes."""

    scale: tuple[float, float] = (0.85, 1.0)  # share of the image area kept by the crop
    ratio: tuple[float, float] = (0.9, 1.1)  # crop aspect ratio range
    degrees: float = 7.0
    translate: float = 0.05  # share of the side
    hflip: bool = False

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A randomly transformed copy of a square or rectangular uint8 image, same shape."""
        return warp(image, self.matrix(image.shape, rng))

    def matrix(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """A random 2 x 3 affine matrix (output = matrix @ [x, y, 1]) for an image of ``shape`` (H, W)."""
        h, w = shape[:2]
        area = rng.uniform(*self.scale)
        aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
        sx = 1.0 / math.sqrt(area * aspect)  # zoom so the crop fills the output
        sy = 1.0 / math.sqrt(area / aspect)
        angle = math.radians(rng.uniform(-self.degrees, self.degrees))
        tx, ty = rng.uniform(-self.translate, self.translate, size=2) * (w, h)
        cos, sin = math.cos(angle), math.sin(angle)
        linear = np.array([[cos * sx, -sin * sy], [sin * sx, cos * sy]])
        if self.hflip and rng.random() < 0.5:
            linear[:, 0] *= -1
        centre = np.array([(w - 1) / 2, (h - 1) / 2])
        offset = centre + np.array([tx, ty]) - linear @ centre
        return np.hstack([linear, offset[:, None]]).astype(np.float32)


def warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Resample a uint8 image through a 2 x 3 affine matrix, same shape, black outside the source."""
    h, w = image.shape
    return cv2.warpAffine(
        image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def warp_boxes(boxes: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boxes (n, 4) as x1, y1, x2, y2 through the same warp: each corner moved, the enclosing box kept.

    Boxes are clipped to the image; ones left thinner than 2 px (moved out of the frame) are dropped
    by the caller through ``keep_boxes``.
    """
    if len(boxes) == 0:
        return boxes.reshape(0, 4)
    x1, y1, x2, y2 = boxes.T
    corners = np.stack([[x1, y1], [x2, y1], [x1, y2], [x2, y2]])  # (4, 2, n)
    moved = np.einsum("ij,cjn->cin", matrix[:, :2], corners) + matrix[:, 2][None, :, None]
    lo, hi = moved.min(axis=0), moved.max(axis=0)  # (2, n)
    h, w = shape
    out = np.stack([lo[0], lo[1], hi[0], hi[1]], axis=1)
    return np.clip(out, 0, [w, h, w, h]).astype(np.float32)


def keep_boxes(boxes: np.ndarray, min_side: float = 2.0) -> np.ndarray:
    """Which x1, y1, x2, y2 boxes are at least ``min_side`` pixels on both sides."""
    return ((boxes[:, 2] - boxes[:, 0]) >= min_side) & ((boxes[:, 3] - boxes[:, 1]) >= min_side)
