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
        h, w = image.shape
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
        matrix = np.hstack([linear, offset[:, None]]).astype(np.float32)
        return cv2.warpAffine(
            image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
