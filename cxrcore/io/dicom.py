"""DICOM through pydicom 3: first frame, modality LUT, VOI LUT or window, to float32 grey in [0, 1].

The pipeline for monochrome images follows PS3.3 C.11 in order:

1. stored values (first frame only) -> modality LUT or Rescale Slope/Intercept
   (``pydicom.pixels.apply_modality_lut``);
2. VOI LUT Sequence if present (``apply_voi``), else Window Center/Width (``apply_windowing``), else the
   full range that Bits Stored allows, pushed through the rescale, is mapped to [0, 1];
3. MONOCHROME1 is inverted last (1 - x), so it is the exact mirror of its MONOCHROME2 twin.

A VOI LUT's output is scaled by the LUT's own smallest and largest entries (descriptors often claim
16 bits for 12-bit tables). Colour images (RGB, YBR_FULL, YBR_FULL_422; YBR_ICT/YBR_RCT inside JPEG
2000; PALETTE COLOR through its palette) become BT.601 luma scaled by the Bits Stored range.

Privacy: the data set is parsed with ``specific_tags`` set to an allow-list of technical elements, so
patient names, IDs, dates and instance UIDs are never even parsed, let alone put into the metadata,
the log or an error message. The file is handed to pydicom as bytes in memory, so pydicom's own
warnings cannot quote the file's path either.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, apply_windowing, pixel_array
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    UncompressedTransferSyntaxes,
)

from cxrcore.io.errors import ImageReadError, decoder_detail
from cxrcore.io.source import DICOM_RAW, Source, check_dimensions

log = logging.getLogger(__name__)

#: The only elements ever parsed: image pixel module, LUTs, spacing, modality. No patient or study data.
_TECHNICAL_TAGS = [
    "Modality", "ImagerPixelSpacing", "SamplesPerPixel", "PhotometricInterpretation",
    "PlanarConfiguration", "NumberOfFrames", "Rows", "Columns", "PixelSpacing", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "WindowCenter", "WindowWidth", "VOILUTFunction",
    "RescaleIntercept", "RescaleSlope", "ModalityLUTSequence", "VOILUTSequence",
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData", "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData", "ExtendedOffsetTable", "ExtendedOffsetTableLengths",
    "PixelData", "FloatPixelData", "DoubleFloatPixelData",
]  # fmt: skip
_SIZE_TAGS = ["Rows", "Columns"]
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422")
_J2K_COLOUR = ("YBR_ICT", "YBR_RCT")
_SUPPORTED = "MONOCHROME1, MONOCHROME2, RGB, YBR_FULL, YBR_FULL_422, PALETTE COLOR"
_PIXEL_DATA_TAG_BYTES = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian
_HEADER_PREFIX = 1 << 20
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def dicom_size(src: Source, fmt: str) -> tuple[int, int]:
    """(width, height) = (Columns, Rows) from the header, without reading the pixel data."""
    ds, _ = _parse(src.read_bytes(_HEADER_PREFIX), src.name, fmt, tags=_SIZE_TAGS, stop_before_pixels=True)
    if ("Rows" not in ds or "Columns" not in ds) and src.size > _HEADER_PREFIX:
        ds, _ = _parse(src.read_bytes(), src.name, fmt, tags=_SIZE_TAGS, stop_before_pixels=True)
    if "Rows" not in ds or "Columns" not in ds:
        raise ImageReadError(f"{src.name}: the DICOM file has no image size (Rows/Columns); no pixel data")
    return int(ds.Columns), int(ds.Rows)


def read_dicom(src: Source, fmt: str, max_pixels: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode the first frame of a DICOM source into float32 grey [0, 1] and allow-listed metadata."""
    data = src.read_bytes()
    ds, truncated = _parse(data, src.name, fmt, tags=_TECHNICAL_TAGS, stop_before_pixels=False)
    _check_pixel_data(ds, data, src.name, truncated)
    width, height = int(ds.Columns), int(ds.Rows)
    check_dimensions(width, height, max_pixels, src.name)
    _check_complete(ds, src.name, truncated)
    notes: list[str] = []
    photometric = _photometric(ds, src.name, notes)
    frames = _frames(ds)
    if frames > 1:
        notes.append(f"multi-frame DICOM with {frames} frames: showing frame 1")
    arr = _decode_first_frame(ds, src.name)
    window = None
    if photometric in _MONOCHROME:
        pixels, window = _monochrome_to_unit(arr, ds, notes)
        if photometric == "MONOCHROME1":
            np.subtract(np.float32(1.0), pixels, out=pixels)
            notes.append("MONOCHROME1 inverted")
    else:
        pixels = _colour_to_grey(arr, ds, photometric, notes)
    meta = {
        "format": "DICOM",
        "original_size": (width, height),
        "bit_depth": int(ds.BitsStored),
        "photometric": photometric,
        "pixel_spacing": _pixel_spacing(ds, notes),
        "window": window,
        "notes": notes,
        "transfer_syntax": _transfer_syntax_name(ds.file_meta.TransferSyntaxUID),
        "modality": str(ds.Modality) if ds.get("Modality") else None,
        "frames": frames,
    }
    return np.ascontiguousarray(pixels, dtype=np.float32), meta


def _parse(
    data: bytes, name: str, fmt: str, *, tags: list[str], stop_before_pixels: bool
) -> tuple[Dataset, bool]:
    """Parse only ``tags`` (plus the file meta); return the data set and whether the file ended early."""
    stream = io.BytesIO(data)
    try:
        ds = pydicom.dcmread(
            stream, force=fmt == DICOM_RAW, specific_tags=tags, stop_before_pixels=stop_before_pixels
        )
    except Exception as exc:  # InvalidDicomError, EOFError, struct.error, ValueError, KeyError...
        log.debug("pydicom could not parse a header: %s", type(exc).__name__)
        raise ImageReadError(f"{name}: the DICOM header is damaged or truncated") from exc
    # Elements left out by ``specific_tags`` are skipped by seeking; a seek past the end means truncation.
    truncated = stream.tell() > len(data)
    if not ds.file_meta.get("TransferSyntaxUID"):
        ds.file_meta.TransferSyntaxUID = _syntax_from_encoding(ds, name)
    return ds, truncated


def _syntax_from_encoding(ds: Dataset, name: str) -> UID:
    """The transfer syntax of a data set without file meta, from the encoding pydicom detected."""
    implicit, little = ds.original_encoding
    if little is None:
        raise ImageReadError(f"{name}: the DICOM file does not say how it is encoded (no transfer syntax)")
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _check_pixel_data(ds: Dataset, data: bytes, name: str, truncated: bool) -> None:
    """Refuse data sets without pixel data (telling truncation apart from absence); fill benign gaps."""
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise ImageReadError(f"{name}: DICOM float pixel data is not supported")
        if truncated or _PIXEL_DATA_TAG_BYTES in data:
            raise ImageReadError(f"{name}: the DICOM file is truncated (it ends inside the pixel data)")
        raise ImageReadError(
            f"{name}: the DICOM file has no pixel data (it holds no image, or the file is cut short)"
        )
    if "Rows" not in ds or "Columns" not in ds or "BitsAllocated" not in ds:
        raise ImageReadError(f"{name}: the DICOM file lacks Rows, Columns or Bits Allocated")
    for keyword, default in (
        ("BitsStored", ds.BitsAllocated),
        ("SamplesPerPixel", 1),
        ("PixelRepresentation", 0),
    ):
        if keyword not in ds:
            setattr(ds, keyword, default)


def _check_complete(ds: Dataset, name: str, truncated: bool) -> None:
    """Refuse files that end early: a skipped element ran past the end, or native pixel data is short."""
    if truncated or (ds.file_meta.TransferSyntaxUID in UncompressedTransferSyntaxes and _short(ds)):
        raise ImageReadError(f"{name}: the DICOM file is truncated (its pixel data is incomplete)")


def _short(ds: Dataset) -> bool:
    """Whether native pixel data holds fewer bytes than Rows x Columns x frames needs."""
    try:
        return len(ds.PixelData) < get_expected_length(ds, "bytes")
    except (AttributeError, TypeError, ValueError):
        return False  # incomplete image pixel module: the decoder will say what is wrong


def _photometric(ds: Dataset, name: str, notes: list[str]) -> str:
    """The photometric interpretation, refusing the ones this reader cannot turn into grey."""
    value = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    if not value and int(ds.SamplesPerPixel) == 1:
        notes.append("Photometric Interpretation missing: read as MONOCHROME2")
        value = ds.PhotometricInterpretation = "MONOCHROME2"
    allowed = _MONOCHROME + _COLOUR + ("PALETTE COLOR",)
    if value in _J2K_COLOUR and ds.file_meta.TransferSyntaxUID in JPEG2000TransferSyntaxes:
        return value
    if value not in allowed:
        raise ImageReadError(
            f"{name}: unsupported DICOM photometric interpretation {value or '(none)'!r} "
            f"(supported: {_SUPPORTED})"
        )
    return value


def _frames(ds: Dataset) -> int:
    """Number of frames (1 when the element is absent or unusable)."""
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _decode_first_frame(ds: Dataset, name: str) -> np.ndarray:
    """Decode only frame 1 through pydicom's decoders (pylibjpeg, openjpeg, RLE plug-ins)."""
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        return pixel_array(ds, index=0)
    except NotImplementedError as exc:
        raise ImageReadError(
            f"{name}: the DICOM transfer syntax {_transfer_syntax_name(syntax)!r} is not supported"
        ) from exc
    except Exception as exc:  # decoder RuntimeError, ValueError for bad lengths, struct.error...
        log.debug("pydicom could not decode pixels (%s): %s", syntax.name, type(exc).__name__)
        raise ImageReadError(
            f"{name}: the DICOM pixel data ({_transfer_syntax_name(syntax)}) is damaged or truncated "
            f"and cannot be decoded ({decoder_detail(exc)})"
        ) from exc


def _monochrome_to_unit(arr: np.ndarray, ds: Dataset, notes: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply the modality LUT, then the VOI LUT, the window or the Bits Stored range, into [0, 1]."""
    lo, hi = _output_range(ds)
    values = apply_modality_lut(arr, ds)
    if ds.get("VOILUTSequence"):
        try:
            return _apply_voi_lut(values, ds, notes)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError, NotImplementedError) as exc:
            notes.append(f"VOI LUT unusable ({type(exc).__name__}): used the Bits Stored range")
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        try:
            mapped = apply_windowing(values, ds)
            center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
            if ds["WindowCenter"].VM > 1:
                notes.append(f"{ds['WindowCenter'].VM} windows in the file: used the first")
            return _scale(mapped, lo, hi), {"center": center, "width": width, "source": "Window Center/Width"}
        except (TypeError, ValueError) as exc:
            notes.append(f"window unusable ({decoder_detail(exc)}): used the Bits Stored range")
    window = {"center": (lo + hi) / 2.0, "width": abs(hi - lo), "source": "Bits Stored range"}
    return _scale(values, lo, hi), window


def _apply_voi_lut(values: np.ndarray, ds: Dataset, notes: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply the first VOI LUT and scale by the LUT's own output range."""
    if not np.issubdtype(values.dtype, np.integer):
        values = np.rint(values).astype(np.int64)  # the LUT is indexed by integer modality values
    item = ds.VOILUTSequence[0]
    entries, first_map = int(item.LUTDescriptor[0]) or 65536, int(item.LUTDescriptor[1])
    table = apply_voi(np.arange(first_map, first_map + entries, dtype=np.int64), ds)
    if len(ds.VOILUTSequence) > 1:
        notes.append(f"{len(ds.VOILUTSequence)} VOI LUTs in the file: used the first")
    window = {"center": first_map + entries / 2.0, "width": float(entries), "source": "VOI LUT"}
    return _scale(apply_voi(values, ds), float(table.min()), float(table.max())), window


def _output_range(ds: Dataset) -> tuple[float, float]:
    """The value range Bits Stored allows, after the modality LUT or rescale (as pydicom computes it)."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    if int(ds.PixelRepresentation) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = lo * slope + intercept, hi * slope + intercept
    return lo, hi


def _scale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(values - lo) / (hi - lo) in float32, clipped to [0, 1]; a reversed range flips the image."""
    span = hi - lo if hi != lo else 1.0
    out = np.subtract(values, lo, dtype=np.float32)
    np.multiply(out, np.float32(1.0 / span), out=out)
    return np.clip(out, 0.0, 1.0, out=out)


def _colour_to_grey(arr: np.ndarray, ds: Dataset, photometric: str, notes: list[str]) -> np.ndarray:
    """RGB (pydicom already turned YBR into RGB) or palette colour into BT.601 luma in [0, 1]."""
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)[..., :3]
        peak = float(2 ** int(ds.RedPaletteColorLookupTableDescriptor[2]) - 1)
    else:
        rgb = arr if arr.ndim == 3 else arr[..., np.newaxis].repeat(3, axis=-1)
        peak = float(2 ** int(ds.BitsStored) - 1)
    notes.append(f"{photometric} converted to grey (BT.601 luma)")
    grey = np.dot(rgb.astype(np.float32, copy=False), _LUMA)
    np.multiply(grey, np.float32(1.0 / peak), out=grey)
    return np.clip(grey, 0.0, 1.0, out=grey)


def _pixel_spacing(ds: Dataset, notes: list[str]) -> tuple[float, float] | None:
    """(row, column) spacing in mm from Pixel Spacing, else Imager Pixel Spacing (at the detector)."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            value = ds.get(keyword)
            if value is not None and len(value) == 2 and all(float(v) > 0 for v in value):
                if keyword == "ImagerPixelSpacing":
                    notes.append("pixel spacing from Imager Pixel Spacing (at the detector)")
                return float(value[0]), float(value[1])
        except (TypeError, ValueError):
            continue
    return None


def _first(value: Any) -> float:
    """The first value of a possibly multi-valued DS element."""
    return float(value[0]) if isinstance(value, MultiValue | list | tuple) else float(value)


def _transfer_syntax_name(uid: UID) -> str:
    """The transfer syntax's name; an unknown (private) syntax is not named by its UID."""
    name = uid.name
    return name if name != str(uid) else "unknown transfer syntax"
