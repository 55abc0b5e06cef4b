"""The two public entry points: ``read_image`` (pixels + metadata) and ``image_size`` (header only)."""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import numpy as np

from cxrcore.io.dicom import dicom_size, read_dicom
from cxrcore.io.errors import ImageReadError
from cxrcore.io.raster import raster_size, read_raster
from cxrcore.io.source import (
    DEFAULT_MAX_PIXELS,
    DICOM,
    DICOM_RAW,
    NOT_AN_IMAGE,
    Source,
    load_source,
    sniff_format,
)

log = logging.getLogger(__name__)

ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview
# What the safety nets let through. Decoders written in Rust (pylibjpeg-rle) report a damaged frame by
# a panic, which PyO3 raises as PanicException, a BaseException: it is caught and worded like the rest.
_PASS_THROUGH = (ImageReadError, KeyboardInterrupt, SystemExit, GeneratorExit)


def read_image(
    source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a chest X-ray (PNG, JPEG, TIFF, BMP or DICOM) into float32 grey pixels in [0, 1].

    Args:
        source: a file path, or the file's bytes (``bytes``, ``bytearray`` or ``memoryview``).
        max_pixels: largest width x height accepted; checked from the header, before decoding.

    Returns:
        ``(pixels, meta)``: a C-contiguous float32 array of shape (H, W) with values in [0, 1], and a
        dict with ``format``, ``original_size`` (width, height), ``bit_depth``, ``photometric``,
        ``pixel_spacing`` ((row_mm, col_mm) or None), ``window`` (None or center/width/source) and
        ``notes`` (list of str), ``nonfinite_pixels`` (how many pixels were NaN or infinite in the
        file; they are shown as 0, and ``cxrcore.io.quality`` refuses such images); DICOM adds
        ``transfer_syntax``, ``modality`` and ``frames``.

    Raises:
        ImageReadError: the only exception raised: missing, empty, truncated or unrecognised file,
            no pixel data, unsupported photometric interpretation or transfer syntax, image over
            ``max_pixels`` or under ``MIN_SIDE`` on a side.
    """
    src = load_source(source)
    fmt = _format(src)
    start = time.perf_counter()
    try:
        if fmt in (DICOM, DICOM_RAW):
            pixels, meta = read_dicom(src, fmt, max_pixels)
        else:
            pixels, meta = read_raster(src, fmt, max_pixels)
    except _PASS_THROUGH:
        raise
    except BaseException as exc:  # a safety net: nothing but ImageReadError may escape (see _PASS_THROUGH)
        log.debug("unexpected %s while reading a %s image", type(exc).__name__, fmt)
        raise ImageReadError(f"{src.name}: the {_label(fmt)} image could not be decoded") from exc
    pixels = _finite(pixels, meta)
    log.debug(
        "read %s %dx%d (%s) in %.1f ms",
        meta["format"], *meta["original_size"], meta["photometric"], (time.perf_counter() - start) * 1e3,
    )  # fmt: skip
    return pixels, meta


def image_size(source: ImageSource) -> tuple[int, int]:
    """Return (width, height) from the image's header, without decoding its pixels.

    Raises:
        ImageReadError: the source is missing, empty, not an image, or its header is damaged.
    """
    src = load_source(source)
    fmt = _format(src)
    try:
        width, height = dicom_size(src, fmt) if fmt in (DICOM, DICOM_RAW) else raster_size(src, fmt)
    except _PASS_THROUGH:
        raise
    except BaseException as exc:  # a safety net: nothing but ImageReadError may escape (see _PASS_THROUGH)
        log.debug("unexpected %s while sizing a %s image", type(exc).__name__, fmt)
        raise ImageReadError(f"{src.name}: the {_label(fmt)} header could not be read") from exc
    if width <= 0 or height <= 0:  # a header may claim anything; an image has pixels
        raise ImageReadError(f"{src.name}: the {_label(fmt)} header claims {width}x{height} pixels")
    return int(width), int(height)


def _finite(pixels: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Keep the [0, 1] contract: NaN or infinite values left by a conversion become 0, and are counted."""
    meta.setdefault("nonfinite_pixels", 0)
    if math.isfinite(float(pixels.sum(dtype=np.float64))):
        return pixels
    bad = ~np.isfinite(pixels)
    meta["nonfinite_pixels"] += int(bad.sum())
    pixels = pixels.copy() if not pixels.flags.writeable else pixels
    pixels[bad] = 0.0
    return np.clip(pixels, 0.0, 1.0, out=pixels)


def _format(src: Source) -> str:
    """The sniffed format, or an ImageReadError saying the bytes are not an image we read."""
    fmt = sniff_format(src.head)
    if fmt is None:
        raise ImageReadError(f"{src.name}: {NOT_AN_IMAGE}")
    return fmt


def _label(fmt: str) -> str:
    """The format's name for messages."""
    return "DICOM" if fmt == DICOM_RAW else fmt
