"""Where an image's bytes come from (a path or bytes in memory), what format they are, and size limits."""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cxrcore.io.errors import ImageReadError

DEFAULT_MAX_PIXELS = 60_000_000
MIN_SIDE = 32

#: Names of the formats the sniffer recognises; DICOM_RAW is DICOM without preamble and "DICM" prefix.
PNG, JPEG, TIFF, BMP, DICOM, DICOM_RAW = "PNG", "JPEG", "TIFF", "BMP", "DICOM", "DICOM_RAW"
NOT_AN_IMAGE = "not a recognised image format (PNG, JPEG, TIFF, BMP or DICOM)"

_HEAD_BYTES = 256
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_BMP_DIB_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
# Explicit VR codes that may follow the first tag of a preamble-less DICOM data set.
_DICOM_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB", b"OD",
    b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI",
    b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
}  # fmt: skip


@dataclass(frozen=True)
class Source:
    """An image source resolved once: a readable file or bytes in memory, plus its first bytes.

    Attributes:
        name: what messages call it: the file's base name, or "image data" for bytes.
        path: the file, or None for in-memory bytes.
        data: the bytes, or None for a file.
        size: length in bytes.
        head: the first bytes (up to 256), for format sniffing.
    """

    name: str
    path: Path | None
    data: bytes | None
    size: int
    head: bytes

    def open(self) -> BinaryIO:
        """Open the bytes for reading from the start (a file handle or an in-memory stream)."""
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        try:
            return self.path.open("rb")
        except OSError as exc:
            raise _os_error(exc, self.name) from exc

    def read_bytes(self, limit: int | None = None) -> bytes:
        """Return all the bytes, or only the first ``limit`` bytes."""
        if self.data is not None:
            return self.data if limit is None else self.data[:limit]
        with self.open() as fh:
            return fh.read() if limit is None else fh.read(limit)


def load_source(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> Source:
    """Resolve a path or bytes into a ``Source``; refuse missing, unreadable and empty inputs."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = source.tobytes() if isinstance(source, memoryview) else bytes(source)
        src = Source("image data", None, data, len(data), data[:_HEAD_BYTES])
    elif isinstance(source, str | os.PathLike):
        path = Path(os.fspath(source))
        name = path.name or str(path)
        try:
            with path.open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                head = fh.read(_HEAD_BYTES)
        except OSError as exc:
            raise _os_error(exc, name) from exc
        src = Source(name, path, None, size, head)
    else:
        raise ImageReadError(
            f"cannot read an image from a {type(source).__name__}; give a file path or the file's bytes"
        )
    if src.size == 0:
        raise ImageReadError(f"{src.name}: the file is empty (0 bytes)")
    return src


def _os_error(exc: OSError, name: str) -> ImageReadError:
    """Turn an OSError from opening a file into a message naming only the file's base name."""
    if isinstance(exc, FileNotFoundError):
        return ImageReadError(f"file not found: {name}")
    if isinstance(exc, IsADirectoryError):
        return ImageReadError(f"{name}: is a folder, not an image file")
    if isinstance(exc, PermissionError):
        return ImageReadError(f"{name}: permission denied")
    return ImageReadError(f"{name}: cannot be opened ({exc.strerror or type(exc).__name__})")


def sniff_format(head: bytes) -> str | None:
    """Name the format from the first bytes (magic numbers only), or None when none matches."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return DICOM  # checked first: a DICOM preamble may itself hold a TIFF header
    if head.startswith(_PNG_MAGIC):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:4] in _TIFF_MAGICS:
        return TIFF
    if head.startswith(b"BM") and len(head) >= 18 and struct.unpack("<I", head[14:18])[0] in _BMP_DIB_SIZES:
        return BMP
    if _looks_like_raw_dicom(head):
        return DICOM_RAW
    return None


def _looks_like_raw_dicom(head: bytes) -> bool:
    """Whether the bytes plausibly start a DICOM data set without preamble (little endian).

    Such files begin with a tag of group 0x0002 (file meta) or 0x0008 (identifying elements)
    followed either by a two-letter VR (explicit VR) or by a 32-bit length that is even and small.
    """
    if len(head) < 8:
        return False
    group, element = struct.unpack("<HH", head[:4])
    if group not in (0x0002, 0x0008) or element > 0x1200:
        return False
    if head[4:6] in _DICOM_VRS:
        return True
    (length,) = struct.unpack("<I", head[4:8])
    return length % 2 == 0 and length < 1 << 16


def png_header_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk, read straight from the bytes (no decoder)."""
    if len(head) >= 24 and head.startswith(_PNG_MAGIC) and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    return None


def check_dimensions(width: int, height: int, max_pixels: int, name: str) -> None:
    """Refuse images over ``max_pixels`` or under ``MIN_SIDE`` on a side, before any decoding."""
    if width * height > max_pixels:
        raise ImageReadError(
            f"{name}: the image is {width}x{height} ({width * height / 1e6:.1f} megapixels), over the "
            f"limit of {max_pixels / 1e6:g} megapixels; it was not decoded"
        )
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageReadError(
            f"{name}: the image is too small ({width}x{height} pixels); both sides must be at least "
            f"{MIN_SIDE} pixels"
        )
