"""Builders for the image files the cxrcore.io tests read: rasters with known pixels, DICOM data sets,
encapsulated compressed DICOM, and hand-crafted headers (a PNG claiming 20000 x 20000 pixels).

Everything is generated in memory or in the test's tmp_path; nothing is downloaded.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

# Distinctive patient and study values the privacy test looks for everywhere.
PHI = {
    "PatientName": "Zyxwvut^Quillonius",
    "PatientID": "PID-7734-QX",
    "PatientBirthDate": "19230415",
    "StudyDate": "20240229",
    "SeriesDate": "20240301",
    "AccessionNumber": "ACC-55331-KW",
    "InstitutionName": "Grimsditch Infirmary",
    "ReferringPhysicianName": "Vantablack^Orpheline",
}


def grey_test_pattern(height: int = 64, width: int = 96, peak: int = 255) -> np.ndarray:
    """Top half: a left-to-right ramp 0..peak on every row. Bottom half: a constant block at 3/4 peak."""
    out = np.empty((height, width), dtype=np.uint16 if peak > 255 else np.uint8)
    out[: height // 2] = np.round(np.linspace(0, peak, width))[np.newaxis, :]
    out[height // 2 :] = round(peak * 0.75)
    return out


def colour_test_pattern(height: int = 64, width: int = 96) -> np.ndarray:
    """An 8-bit RGB pattern: red rises left to right, green top to bottom, blue constant."""
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[..., 0] = np.round(np.linspace(0, 255, width))[np.newaxis, :]
    rgb[..., 1] = np.round(np.linspace(0, 255, height))[:, np.newaxis]
    rgb[..., 2] = 90
    return rgb


def bt601(rgb: np.ndarray, peak: float = 255.0) -> np.ndarray:
    """The documented colour-to-grey rule: 0.299 R + 0.587 G + 0.114 B, scaled to [0, 1]."""
    rgb = rgb.astype(np.float64)
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / peak


def pil_bytes(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """Encode a Pillow image to bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with a valid CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height 8-bit grey pixels but whose IDAT holds a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def bmp_claiming(width: int, height: int) -> bytes:
    """A BMP whose header claims width x height 24-bit pixels but holds almost none."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    header = struct.pack("<2sIHHI", b"BM", 14 + 40 + 16, 0, 0, 14 + 40)
    return header + info + b"\x00" * 16


def dicom_dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    frames: int = 1,
    syntax: UID = ExplicitVRLittleEndian,
    **elements: Any,
) -> Dataset:
    """A minimal Secondary Capture data set holding ``pixels`` natively, with PHI for the privacy test.

    ``pixels`` is (rows, cols), (rows, cols, 3) or, with ``frames`` > 1, (frames, rows, cols).
    Extra keyword arguments become data elements (e.g. ``WindowCenter=2048``).
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    ds.Modality = "DX"
    samples = 3 if pixels.ndim == 3 and frames == 1 else 1
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if samples == 3 else pixels.shape[-2:]
    ds.SamplesPerPixel = samples
    if samples == 3:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PhotometricInterpretation = photometric
    allocated = pixels.dtype.itemsize * 8
    ds.BitsAllocated = allocated
    ds.BitsStored = bits_stored or allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def dicom_bytes(ds: Dataset) -> bytes:
    """The data set as a DICOM Part 10 file (128-byte preamble, "DICM", file meta)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def encapsulated(ds: Dataset, frames: list[bytes], syntax: UID) -> Dataset:
    """Replace the data set's pixel data with already-compressed frames under ``syntax``."""
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    return ds


def write(path: Path, data: bytes) -> Path:
    """Write bytes to ``path`` (creating its folder) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def assert_damage_only_raises_image_errors(data: bytes, seed: str, rounds: int) -> None:
    """Cut and corrupt ``data`` at random: each result decodes to valid pixels or raises ImageReadError."""
    import random

    from cxrcore.io import ImageReadError, read_image

    rng = random.Random(seed)
    for _ in range(rounds):
        mutated = bytearray(data[: rng.randrange(1, len(data) + 1)])
        for _ in range(rng.randrange(0, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            pixels, _ = read_image(bytes(mutated))
        except ImageReadError:
            continue
        assert pixels.dtype == np.float32 and pixels.min() >= 0 and pixels.max() <= 1
