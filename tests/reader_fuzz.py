"""Fuzzing the image readers: valid seed files of every format, mutations described as data, and the
property every input must keep. Shared by ``tests/test_fuzz_readers.py`` (hypothesis draws the
mutations) and ``bench/fuzz_readers.py`` (a seeded generator draws >= 10,000 of them).

The property: ``read_image`` returns a C-contiguous float32 (H, W) image, finite and in [0, 1], with
its metadata, or raises ``ImageReadError``; ``image_size`` returns two positive ints or raises it;
``assess_image`` gives a verdict on whatever was read. Any other exception is a bug.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from io_corpus import dicom_bytes, dicom_dataset, encapsulated, pil_bytes, png_chunk
from PIL import Image
from pydicom.uid import ImplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless

from cxrcore.io import ImageReadError, assess_image, image_size, read_image

# A mutation: (kind, where in the file as a fraction of its length, bytes it uses).
Mutation = tuple[str, float, bytes]
KINDS = ("truncate", "flip", "insert", "delete", "overwrite", "duplicate", "huge-int")
# Integers that make header fields lie: sizes of 0, 1, 2^16 - 1, 2^31 - 1, 2^32 - 1, negative.
HUGE = (0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 20000)


def _ramp(height: int = 48, width: int = 40) -> np.ndarray:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, width)[None, :] * np.linspace(0.3, 1, height)[:, None]
    return np.clip(ramp + 0.05 * rng.standard_normal((height, width)), 0, 1)


def _png_with_text() -> bytes:
    """A grey PNG with an extra text chunk before IEND (more chunk structure to damage)."""
    data = pil_bytes(Image.fromarray((_ramp() * 255).astype(np.uint8)), "PNG")
    return data[:-12] + png_chunk(b"tEXt", b"Comment\x00fuzz") + data[-12:]


def seed_files() -> dict[str, bytes]:
    """Small valid files of every format and encoding the readers handle."""
    grey8 = (_ramp() * 255).astype(np.uint8)
    grey16 = (_ramp() * 4095).astype(np.uint16)
    rgb = np.stack([grey8, grey8[::-1], np.full_like(grey8, 90)], axis=-1)
    floats = _ramp().astype(np.float32)
    floats[3, 3] = np.nan
    seeds = {
        "png-grey8": pil_bytes(Image.fromarray(grey8), "PNG"),
        "png-grey16": pil_bytes(Image.fromarray(grey16 * 16), "PNG"),
        "png-palette": pil_bytes(Image.fromarray(rgb).convert("P"), "PNG"),
        "png-text-chunk": _png_with_text(),
        "jpeg-grey": pil_bytes(Image.fromarray(grey8), "JPEG", quality=90),
        "jpeg-colour-progressive": pil_bytes(Image.fromarray(rgb), "JPEG", progressive=True),
        "tiff-grey8": pil_bytes(Image.fromarray(grey8), "TIFF"),
        "tiff-float": pil_bytes(Image.fromarray(floats, mode="F"), "TIFF"),
        "tiff-lzw-rgb": pil_bytes(Image.fromarray(rgb), "TIFF", compression="tiff_lzw"),
        "bmp-rgb": pil_bytes(Image.fromarray(rgb), "BMP"),
        "dicom-12bit": dicom_bytes(
            dicom_dataset(grey16, bits_stored=12, WindowCenter=2048, WindowWidth=4096)
        ),
        "dicom-mono1-implicit": dicom_bytes(
            dicom_dataset(grey16, photometric="MONOCHROME1", bits_stored=12, syntax=ImplicitVRLittleEndian)
        ),
        "dicom-jpeg": dicom_bytes(
            encapsulated(dicom_dataset(grey8), [pil_bytes(Image.fromarray(grey8), "JPEG")], JPEGBaseline8Bit)
        ),
    }
    rle = dicom_dataset(grey16, bits_stored=12)
    rle.compress(RLELossless, grey16)
    seeds["dicom-rle"] = dicom_bytes(rle)
    return seeds


def apply(data: bytes, mutations: Sequence[Mutation]) -> bytes:
    """``data`` with each mutation applied in turn (positions are fractions of the current length)."""
    out = bytearray(data)
    for kind, where, payload in mutations:
        at = min(int(where * len(out)), max(len(out) - 1, 0))
        if kind == "truncate":
            del out[at:]
        elif kind == "flip" and out:
            out[at] ^= payload[0] if payload and payload[0] else 0xFF
        elif kind == "insert":
            out[at:at] = payload
        elif kind == "delete":
            del out[at : at + 1 + len(payload)]
        elif kind == "overwrite":
            out[at : at + len(payload)] = payload
        elif kind == "duplicate":
            out[at:at] = out[at : at + 1 + 16 * len(payload)]
        elif kind == "huge-int":
            value = HUGE[payload[0] % len(HUGE)] if payload else HUGE[0]
            fmt = ">I" if len(payload) % 2 else "<I"
            out[at : at + 4] = struct.pack(fmt, value)
    return bytes(out)


def random_mutations(rng: random.Random) -> list[Mutation]:
    """One to four mutations, mostly near the start of the file (where the headers are)."""
    mutations = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(KINDS)
        where = rng.random() ** 3 if rng.random() < 0.7 else rng.random()
        mutations.append((kind, where, bytes(rng.randrange(256) for _ in range(rng.randint(0, 8)))))
    return mutations


def check(data: bytes) -> str:
    """Read ``data``; "decoded" or "refused" when the property holds, AssertionError when it does not.

    Any exception other than ImageReadError and AssertionError propagates: it is a bug.
    """
    try:
        width, height = image_size(data)
        assert isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0
    except ImageReadError:
        pass
    try:
        pixels, meta = read_image(data)
    except ImageReadError as exc:
        assert str(exc), "an ImageReadError without a message"
        return "refused"
    _check_pixels(pixels, meta)
    assess_image(pixels, meta)
    return "decoded"


def _check_pixels(pixels: Any, meta: Any) -> None:
    assert isinstance(pixels, np.ndarray) and pixels.dtype == np.float32 and pixels.ndim == 2
    assert pixels.flags.c_contiguous and pixels.size > 0
    assert np.isfinite(pixels).all() and float(pixels.min()) >= 0.0 and float(pixels.max()) <= 1.0
    assert isinstance(meta, dict) and {"format", "original_size", "notes", "nonfinite_pixels"} <= set(meta)
