"""Image preprocessing: resize to a square, CLAHE, an optional lung crop, and normalisation.

``prepare`` turns a decoded image (float32 in [0, 1], shape (H, W), as returned by ``cxrcore.io``)
into a uint8 square at the model's input size: lung crop (optional) -> fit/resize -> CLAHE (optional).
Its output is what the on-disk cache stores (see ``cxrcore.data.cache``). The lung crop's box comes
from ``cxrcore.lung_crop`` (a threshold heuristic, or the lung segmenter).

Normalisation uses a mean and standard deviation computed once on the training split
(``compute_norm_stats``) and stored with the run, never statistics of the current batch, so that
validation, test and uploaded images see exactly the transform the model was trained with.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import cv2
import numpy as np
import pandas as pd

from cxrcore.hints import unknown_choice

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# Bump when the output of ``prepare`` changes for the same settings, so stale cache entries miss.
PREPROCESS_VERSION = 1
FIT_MODES: tuple[str, ...] = ("pad", "crop")
# How the lung crop finds its box (cxrcore.lung_crop): the threshold heuristic, or the lung segmenter.
LUNG_CROP_METHODS: tuple[str, ...] = ("threshold", "segmenter")
DEFAULT_LUNG_CROP_METHOD = "threshold"
MIN_SIZE = 32
STD_EPSILON = 1e-6

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, "torch.Tensor")


def _from_mapping(cls: type, d: Mapping[str, Any]) -> Any:
    """Build a dataclass from a mapping, rejecting keys the class does not have."""
    if not isinstance(d, Mapping):
        raise ValueError(f"{cls.__name__}.from_dict expects a mapping, got {type(d).__name__}")
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(d) - set(valid))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; valid keys: {', '.join(valid)}")
    return cls(**d)


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings that turn a decoded image into the model's uint8 input square.

    Attributes:
        input_size: side of the square output in pixels (at least 32): the model's input size.
        fit: "pad" letterboxes the whole image keeping its aspect ratio (padding value 0);
            "crop" resizes the short side to ``size`` and cuts the centre square.
        clahe: apply CLAHE (contrast-limited adaptive histogram equalisation) at the target size.
        clahe_clip: CLAHE clip limit.
        clahe_tile: CLAHE tile grid (tiles per side).
        lung_crop: crop to the lungs' box before resizing (off by default).
        lung_crop_method: how the crop box is found, one of ``LUNG_CROP_METHODS``: "threshold" (the
            heuristic, the default) or "segmenter" (the bundled lung segmenter's lungs). Written into
            ``to_dict`` only when not the default, so settings and cache keys made before the choice
            existed stay the same.
    """

    input_size: int = 224
    fit: Literal["pad", "crop"] = "pad"
    clahe: bool = False
    clahe_clip: float = 2.0
    clahe_tile: int = 8
    lung_crop: bool = False
    lung_crop_method: str = DEFAULT_LUNG_CROP_METHOD

    def __post_init__(self) -> None:
        """Validate every field and normalise numeric types so equal settings give equal keys."""
        size = self.input_size
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < MIN_SIZE:
            raise ValueError(f"input_size must be an integer >= {MIN_SIZE}, got {size!r}")
        if self.fit not in FIT_MODES:
            raise ValueError(f"unknown fit {self.fit!r}; valid options: {', '.join(FIT_MODES)}")
        for name in ("clahe", "lung_crop"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.lung_crop_method not in LUNG_CROP_METHODS:
            raise ValueError(unknown_choice("lung_crop_method", self.lung_crop_method, LUNG_CROP_METHODS))
        clip = self.clahe_clip
        if isinstance(clip, bool) or not isinstance(clip, int | float) or not np.isfinite(clip) or clip <= 0:
            raise ValueError(f"clahe_clip must be a positive number, got {clip!r}")
        tile = self.clahe_tile
        if isinstance(tile, bool) or not isinstance(tile, int | np.integer) or not 1 <= tile <= size:
            raise ValueError(f"clahe_tile must be an integer in [1, input_size={size}], got {tile!r}")
        object.__setattr__(self, "input_size", int(size))
        object.__setattr__(self, "clahe", bool(self.clahe))
        object.__setattr__(self, "clahe_clip", float(clip))
        object.__setattr__(self, "clahe_tile", int(tile))
        object.__setattr__(self, "lung_crop", bool(self.lung_crop))

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (``lung_crop_method`` only when not the default)."""
        out = asdict(self)
        if out["lung_crop_method"] == DEFAULT_LUNG_CROP_METHOD:
            del out["lung_crop_method"]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessConfig:
        """Rebuild settings from ``to_dict`` output (``size``, the older name, is read as ``input_size``).

        Unknown keys raise ValueError.
        """
        if isinstance(d, Mapping) and "size" in d and "input_size" not in d:
            d = {("input_size" if k == "size" else k): v for k, v in d.items()}
        return _from_mapping(cls, d)

    def key(self) -> str:
        """A stable short id of these settings and the preprocessing version, usable as a folder name.

        A learned lung crop adds its model's identity, so a retrained segmenter makes new keys.
        """
        settings = self.to_dict()
        if self.lung_crop and self.lung_crop_method != DEFAULT_LUNG_CROP_METHOD:
            from cxrcore.lung_crop import method_identity  # builds on this module's helpers

            settings["lung_crop_method"] = method_identity(self.lung_crop_method)
        payload = json.dumps({"v": PREPROCESS_VERSION, **settings}, sort_keys=True)
        digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
        return f"{self.input_size}-{self.fit}-{digest}"


@dataclass(frozen=True)
class NormStats:
    """Training-split intensity mean and standard deviation, on the [0, 1] scale."""

    mean: float
    std: float
    n_images: int

    def __post_init__(self) -> None:
        """Reject statistics that cannot normalise anything."""
        if not np.isfinite(self.mean) or not np.isfinite(self.std) or self.std <= 0:
            raise ValueError(f"NormStats needs finite mean, positive std; got {self.mean!r}, {self.std!r}")
        object.__setattr__(self, "mean", float(self.mean))
        object.__setattr__(self, "std", float(self.std))
        object.__setattr__(self, "n_images", int(self.n_images))

    def to_dict(self) -> dict[str, Any]:
        """The statistics as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NormStats:
        """Rebuild statistics from ``to_dict`` output; unknown keys raise ValueError."""
        return _from_mapping(cls, d)


def check_unit_image(pixels: np.ndarray, name: str = "pixels") -> None:
    """Raise ValueError unless ``pixels`` is a non-empty 2-D floating array with values in [0, 1]."""
    if not isinstance(pixels, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(pixels).__name__}")
    if pixels.ndim != 2 or pixels.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D (H, W) array, got shape {pixels.shape}")
    if not np.issubdtype(pixels.dtype, np.floating):
        raise ValueError(f"{name} must be float in [0, 1], got dtype {pixels.dtype}")
    lo, hi = float(pixels.min()), float(pixels.max())
    if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
        raise ValueError(f"{name} values must lie in [0, 1], got range [{lo}, {hi}]")


def _unit_to_u8(pixels: np.ndarray) -> np.ndarray:
    """Scale a checked [0, 1] float image to uint8 with rounding."""
    return cv2.convertScaleAbs(np.ascontiguousarray(pixels, dtype=np.float32), alpha=255.0)


def _resize(u8: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize with area averaging when shrinking and bilinear interpolation when enlarging."""
    h, w = u8.shape
    if (w, h) == (width, height):
        return u8
    shrinking = width * height < w * h
    return cv2.resize(u8, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def fit_geometry(width: int, height: int, size: int, fit: str) -> tuple[int, int, int, int]:
    """Where an image lands in the ``size`` square: resized (width, height) and its offset (x0, y0).

    A point (x, y) of the original maps to (x * rw / width + x0, y * rh / height + y0); with "pad" the
    offsets are the padding (>= 0), with "crop" minus the cropped margin (<= 0).
    """
    if fit == "pad":
        scale = size / max(height, width)
        rw, rh = max(1, min(size, round(width * scale))), max(1, min(size, round(height * scale)))
        return rw, rh, (size - rw) // 2, (size - rh) // 2
    scale = size / min(height, width)
    rw, rh = max(size, round(width * scale)), max(size, round(height * scale))
    return rw, rh, -((rw - size) // 2), -((rh - size) // 2)


def boxes_to_input(
    boxes: pd.DataFrame, width: int, height: int, cfg: PreprocessConfig
) -> pd.DataFrame | None:
    """Boxes (x, y, w, h in the original image's pixels) moved onto the prepared ``cfg.input_size`` square.

    None with a lung crop, whose crop depends on the image's content.
    """
    if cfg.lung_crop:
        return None
    rw, rh, x0, y0 = fit_geometry(width, height, cfg.input_size, cfg.fit)
    sx, sy = rw / width, rh / height
    out = boxes.copy()
    out["x"], out["y"] = boxes["x"] * sx + x0, boxes["y"] * sy + y0
    out["w"], out["h"] = boxes["w"] * sx, boxes["h"] * sy
    return out


def boxes_from_input(boxes: np.ndarray, width: int, height: int, cfg: PreprocessConfig) -> np.ndarray:
    """Boxes (n, 4) x, y, w, h on the prepared square moved back to the original image's pixels.

    The inverse of ``boxes_to_input``; the result is clipped to the image.

    Raises:
        ValueError: the preprocessing crops to the lungs (the crop depends on the image's content).
    """
    if cfg.lung_crop:
        raise ValueError("boxes on a lung-cropped input cannot be moved back to the original image")
    rw, rh, x0, y0 = fit_geometry(width, height, cfg.input_size, cfg.fit)
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sx, sy = width / rw, height / rh
    x1 = np.clip((a[:, 0] - x0) * sx, 0, width)
    y1 = np.clip((a[:, 1] - y0) * sy, 0, height)
    x2 = np.clip((a[:, 0] + a[:, 2] - x0) * sx, 0, width)
    y2 = np.clip((a[:, 1] + a[:, 3] - y0) * sy, 0, height)
    return np.column_stack([x1, y1, x2 - x1, y2 - y1])


def _fit(u8: np.ndarray, size: int, fit: str) -> np.ndarray:
    """Fit an image into a ``size`` square, keeping its aspect ratio by padding or centre-cropping."""
    h, w = u8.shape
    rw, rh, x0, y0 = fit_geometry(w, h, size, fit)
    resized = _resize(u8, rw, rh)
    if fit == "pad":
        out = np.zeros((size, size), dtype=np.uint8)
        out[y0 : y0 + rh, x0 : x0 + rw] = resized
        return out
    return np.ascontiguousarray(resized[-y0 : -y0 + size, -x0 : -x0 + size])


def prepare(pixels: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Turn a float32 [0, 1] (H, W) image into a uint8 square of ``input_size``: lung crop -> fit -> CLAHE.

    Raises:
        ValueError: ``pixels`` is not a non-empty 2-D float array with values in [0, 1].
    """
    check_unit_image(pixels)
    if cfg.lung_crop:
        from cxrcore.lung_crop import crop_box  # builds on this module's helpers

        x0, y0, x1, y1 = crop_box(pixels, cfg.lung_crop_method)
        pixels = pixels[y0:y1, x0:x1]
    out = _fit(_unit_to_u8(pixels), cfg.input_size, cfg.fit)
    if cfg.clahe:
        clahe = cv2.createCLAHE(clipLimit=cfg.clahe_clip, tileGridSize=(cfg.clahe_tile, cfg.clahe_tile))
        out = clahe.apply(out)
    return out


def mask_to_input(mask: np.ndarray, cfg: PreprocessConfig, pixels: np.ndarray | None = None) -> np.ndarray:
    """A boolean (H, W) mask of an image placed on the model's input square as ``prepare`` places the image.

    The mask goes through the same crop and fit (area-averaged when shrinking); a pixel of the square
    is in the mask when at least half of what it shows was. With a lung crop the crop box is found on
    ``pixels``, the image itself, by the config's method. Returns bool (input_size, input_size).

    Raises:
        ValueError: a mask that is not 2-D, or a lung crop without the image (or of another shape).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"mask must be a non-empty 2-D (H, W) array, got shape {mask.shape}")
    if cfg.lung_crop:
        if pixels is None or pixels.shape != mask.shape:
            got = None if pixels is None else pixels.shape
            raise ValueError(
                f"a lung-cropped input needs the image of the mask's shape {mask.shape}, got {got}"
            )
        from cxrcore.lung_crop import crop_box  # builds on this module's helpers

        x0, y0, x1, y1 = crop_box(pixels, cfg.lung_crop_method)
        mask = mask[y0:y1, x0:x1]
    u8 = np.where(mask.astype(bool), np.uint8(255), np.uint8(0))
    return _fit(u8, cfg.input_size, cfg.fit) >= 128


def input_to_image(maps: np.ndarray, width: int, height: int, cfg: PreprocessConfig) -> np.ndarray:
    """Maps (C, S, S) over the model's input square put back onto the image's own (height, width) pixels.

    The inverse of ``prepare``'s fit: the part of the square that shows the image is resized
    (bilinearly) to the image; with "crop" fitting, image pixels outside the square get 0.

    Raises:
        ValueError: the preprocessing crops to the lungs (the crop depends on the image's content), or
            the maps are not (C, input_size, input_size).
    """
    size = cfg.input_size
    if cfg.lung_crop:
        raise ValueError("maps of a lung-cropped input cannot be put back onto the whole image")
    if maps.ndim != 3 or maps.shape[1:] != (size, size):
        raise ValueError(f"maps must be (C, {size}, {size}), got shape {maps.shape}")
    rw, rh, x0, y0 = fit_geometry(width, height, size, cfg.fit)
    out = np.zeros((maps.shape[0], height, width), dtype=np.float32)
    for channel, square in zip(out, maps.astype(np.float32, copy=False), strict=True):
        canvas = np.zeros((rh, rw), np.float32)  # the resized image's frame
        src = square[max(y0, 0) : max(y0, 0) + min(rh, size), max(x0, 0) : max(x0, 0) + min(rw, size)]
        canvas[max(-y0, 0) : max(-y0, 0) + src.shape[0], max(-x0, 0) : max(-x0, 0) + src.shape[1]] = src
        channel[:] = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_LINEAR)
    return out


def to_unit(u8: np.ndarray) -> np.ndarray:
    """Convert a uint8 image to float32 in [0, 1]."""
    if not isinstance(u8, np.ndarray) or u8.dtype != np.uint8:
        got = getattr(u8, "dtype", type(u8).__name__)
        raise ValueError(f"to_unit expects a uint8 numpy array, got {got}")
    return u8.astype(np.float32) / np.float32(255.0)


def compute_norm_stats(images: Iterable[np.ndarray]) -> NormStats:
    """Pixel mean and standard deviation over training images, streamed, on the [0, 1] scale.

    Each image may be uint8 (divided by 255) or float already in [0, 1]; every pixel counts once, so
    larger images weigh more. Sums are accumulated in float64, one image at a time. The standard
    deviation is floored at ``STD_EPSILON`` so constant data cannot cause a division by zero later.

    Raises:
        ValueError: no images, or an image that is neither uint8 nor float in [0, 1].
    """
    total = total_sq = 0.0
    n_pixels = n_images = 0
    for i, image in enumerate(images):
        x = np.asarray(image)
        if x.dtype == np.uint8:
            x = x.astype(np.float64) / 255.0
        elif np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
            if x.size and not (x.min() >= 0.0 and x.max() <= 1.0):
                raise ValueError(f"image {i}: float values must lie in [0, 1], got [{x.min()}, {x.max()}]")
        else:
            raise ValueError(f"image {i}: dtype must be uint8 or float in [0, 1], got {x.dtype}")
        total += float(x.sum())
        total_sq += float(np.square(x).sum())
        n_pixels += x.size
        n_images += 1
    if n_pixels == 0:
        raise ValueError("compute_norm_stats got no images (or only empty ones); pass the training images")
    mean = total / n_pixels
    std = max(np.sqrt(max(total_sq / n_pixels - mean * mean, 0.0)), STD_EPSILON)
    if std == STD_EPSILON:
        logger.warning("training images have (near) zero variance; std floored at %g", STD_EPSILON)
    return NormStats(mean=mean, std=float(std), n_images=n_images)


def normalise(x: ArrayOrTensor, stats: NormStats) -> ArrayOrTensor:
    """Standardise an image or batch with stored training statistics, returning float32 of the same type.

    ``stats`` are on the [0, 1] scale: uint8 input is divided by 255 first, float input is taken as
    already in [0, 1]. Works on numpy arrays and torch tensors (any shape, any device).
    """
    mean, std = np.float32(stats.mean), np.float32(stats.std)
    if isinstance(x, np.ndarray):
        y = x.astype(np.float32) / np.float32(255.0) if x.dtype == np.uint8 else x.astype(np.float32)
        return (y - mean) / std
    import torch  # imported here so that numpy-only callers do not pay for torch

    if not isinstance(x, torch.Tensor):
        raise ValueError(f"normalise expects a numpy array or torch tensor, got {type(x).__name__}")
    y = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)
    return (y - float(mean)) / float(std)


def lung_crop_box(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """The threshold heuristic's box around both lung fields (x0, y0, x1, y1; see ``cxrcore.lung_crop``)."""
    from cxrcore.lung_crop import threshold_lung_box  # builds on this module's helpers

    return threshold_lung_box(pixels)
