"""Whether an image as read is fit to be shown to a model: refusals for images with nothing to see,
warnings for images that read but look like no chest radiograph.

``assess_image(pixels, meta)`` is the one check that every path to a prediction runs (the Explain page
before its upload guard, ``cxr explain`` before the model): a refused image never gets a probability,
a warned one gets its warnings shown beside the probabilities.

Refused (``DegenerateImageError``, an ``ImageReadError``):

- pixels that were NaN or infinite in the file (a float TIFF or DICOM with broken values; the reader
  shows them as 0 to keep its [0, 1] contract and counts them in ``meta["nonfinite_pixels"]``);
- a constant image (every pixel the same value: an all-black or all-white export).

Warned (the prediction is still made, and the warning goes with it):

- an extreme aspect ratio (over ``MAX_ASPECT``: no chest radiograph is framed like that);
- a nearly uniform image (grey standard deviation under ``MIN_STD``);
- a nearly empty histogram (fewer than ``MIN_LEVELS`` of 256 grey levels in use, or one level holding
  over ``MAX_LEVEL_SHARE`` of the pixels).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cxrcore.io.errors import ImageReadError

MAX_ASPECT = 2.5  # width / height (or its inverse) beyond which no chest radiograph is framed
MIN_STD = 0.02  # grey standard deviation (on [0, 1]) under which the image is nearly uniform
MIN_LEVELS = 8  # grey levels (of 256) in use under which the histogram is nearly empty
MAX_LEVEL_SHARE = 0.98  # share of the pixels on one grey level over which the histogram is nearly empty
CONSTANT_SPAN = 1e-6  # max - min under which every pixel has the same value


class DegenerateImageError(ImageReadError):
    """The image was read but has nothing a model could look at (constant, or NaN / infinite pixels)."""


@dataclass(frozen=True)
class ImageQuality:
    """The verdict on one image: why it is refused (or None), and warnings that go with its predictions."""

    refusal: str | None
    warnings: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        """Whether no prediction may be made for the image."""
        return self.refusal is not None

    def check(self) -> ImageQuality:
        """Return the verdict, or raise ``DegenerateImageError`` with the refusal."""
        if self.refusal is not None:
            raise DegenerateImageError(self.refusal)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the command line."""
        return {"refused": self.refused, "refusal": self.refusal, "warnings": list(self.warnings)}


def _nonfinite(pixels: np.ndarray, meta: Mapping[str, Any] | None) -> int:
    """Pixels that were NaN or infinite: as the reader counted them, plus any still in the array."""
    counted = int((meta or {}).get("nonfinite_pixels") or 0)
    return counted + int(pixels.size - np.count_nonzero(np.isfinite(pixels)))


def _histogram_warning(pixels: np.ndarray) -> str | None:
    """A warning when few of the 256 grey levels are used or one level holds nearly every pixel."""
    levels = np.bincount(np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8).ravel(), minlength=256)
    used = int(np.count_nonzero(levels))
    share = float(levels.max()) / pixels.size
    if used < MIN_LEVELS:
        return f"its histogram is nearly empty (only {used} of 256 grey levels in use)"
    if share > MAX_LEVEL_SHARE:
        return f"its histogram is nearly empty ({share:.1%} of the pixels share one grey level)"
    return None


def assess_image(
    pixels: np.ndarray, meta: Mapping[str, Any] | None = None, name: str = "the image"
) -> ImageQuality:
    """Refuse an image with nothing to see (NaN / infinite or constant pixels); warn about odd ones.

    The warnings are given for refused images too (the upload guard lists them as its cheap checks).

    Args:
        pixels: the image as read, (H, W) grey.
        meta: the reader's metadata (its ``nonfinite_pixels`` count), if at hand.
        name: what messages call the image (a file's base name).
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.size == 0:
        return ImageQuality(f"{name}: not a grey image (shape {pixels.shape}); no prediction is made")
    bad = _nonfinite(pixels, meta)
    finite = np.nan_to_num(pixels, nan=0.0, posinf=0.0, neginf=0.0) if bad else pixels
    warnings = _warnings(finite)
    if bad:
        return ImageQuality(
            f"{name}: {bad} of {pixels.size} pixels ({bad / pixels.size:.1%}) are NaN or infinite in the "
            "file; its values cannot be trusted, so no prediction is made",
            warnings,
        )
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < CONSTANT_SPAN:
        return ImageQuality(
            f"{name}: every pixel has the same value ({lo:.3f} on a 0-1 scale); there is nothing for a "
            "model to look at, so no prediction is made",
            warnings,
        )
    return ImageQuality(None, warnings)


def _warnings(pixels: np.ndarray) -> tuple[str, ...]:
    """Why a finite image looks like no chest radiograph: its shape, its contrast, its histogram."""
    height, width = pixels.shape
    warnings = []
    if max(width / height, height / width) > MAX_ASPECT:
        warnings.append(f"its aspect ratio is extreme ({width} x {height} pixels)")
    if float(pixels.std()) < MIN_STD:
        warnings.append("it is nearly uniform (almost no contrast)")
    if (histogram := _histogram_warning(pixels)) is not None:
        warnings.append(histogram)
    return tuple(warnings)
