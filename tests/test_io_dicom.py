"""cxrcore.io on DICOM: value pipeline, photometric, compressed syntaxes, failures, privacy."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from io_corpus import (
    PHI,
    assert_damage_only_raises_image_errors,
    bt601,
    dicom_bytes,
    dicom_dataset,
    encapsulated,
    pil_bytes,
    write,
)
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.pixels.processing import convert_color_space
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    MPEG2MPML,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from cxrcore.io import ImageReadError, image_size, read_image

ROWS, COLS = 64, 80
STORED12 = np.round(np.linspace(0, 4095, ROWS * COLS)).astype(np.uint16).reshape(ROWS, COLS)
RGB8 = np.dstack(
    [
        np.tile(np.linspace(0, 255, COLS).round().astype(np.uint8), (ROWS, 1)),
        np.tile(np.linspace(255, 0, ROWS).round().astype(np.uint8)[:, None], (1, COLS)),
        np.full((ROWS, COLS), 40, np.uint8),
    ]
)


def mono12(**elements: object) -> Dataset:
    """MONOCHROME2, 16 bits allocated, 12 stored, a ramp over the whole 0..4095 range."""
    return dicom_dataset(STORED12, bits_stored=12, **elements)


def read_ds(ds: Dataset) -> tuple[np.ndarray, dict]:
    """read_image on the data set written as a Part 10 file in memory."""
    return read_image(dicom_bytes(ds))


def linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window, output in [0, 1]."""
    x = x.astype(np.float64)
    c, w = center - 0.5, width - 1
    out = (x - c) / w + 0.5
    out[x <= c - w / 2] = 0.0
    out[x > c + w / 2] = 1.0
    return out


# --- the value pipeline ---------------------------------------------------------------------------------


def test_monochrome2_12_bit_uses_bits_stored_range() -> None:
    pixels, meta = read_ds(mono12())
    assert pixels.dtype == np.float32 and pixels.shape == (ROWS, COLS) and pixels.flags.c_contiguous
    np.testing.assert_allclose(pixels, STORED12 / 4095, rtol=0, atol=1e-6)
    assert meta["format"] == "DICOM" and meta["photometric"] == "MONOCHROME2"
    assert meta["bit_depth"] == 12 and meta["original_size"] == (COLS, ROWS)
    assert meta["window"] == {"center": 2047.5, "width": 4095.0, "source": "Bits Stored range"}
    assert meta["transfer_syntax"] == "Explicit VR Little Endian"
    assert meta["modality"] == "DX" and meta["frames"] == 1 and meta["notes"] == []


def test_no_window_maps_the_full_bits_stored_range_not_the_data_range() -> None:
    dim = (STORED12 // 2).astype(np.uint16)  # data only reach 2047 of 4095
    pixels, _ = read_image(dicom_bytes(dicom_dataset(dim, bits_stored=12)))
    assert pixels.max() == pytest.approx(2047 / 4095, abs=1e-6)


def test_monochrome1_is_the_exact_inverse_of_its_monochrome2_twin() -> None:
    for extra in ({}, {"WindowCenter": 1800, "WindowWidth": 1500}):
        m2, _ = read_ds(mono12(**extra))
        m1, meta = read_ds(mono12(PhotometricInterpretation="MONOCHROME1", **extra))
        np.testing.assert_array_equal(m1, np.float32(1) - m2)
        assert "MONOCHROME1 inverted" in meta["notes"] and meta["photometric"] == "MONOCHROME1"


def test_window_center_width_clips_outside_the_window() -> None:
    pixels, meta = read_ds(mono12(WindowCenter=2048, WindowWidth=1024))
    np.testing.assert_allclose(pixels, linear_window(STORED12, 2048, 1024), rtol=0, atol=1e-6)
    assert pixels[STORED12 < 1500].max() == 0.0 and pixels[STORED12 > 2600].min() == 1.0
    assert meta["window"] == {"center": 2048.0, "width": 1024.0, "source": "Window Center/Width"}


def test_several_windows_use_the_first_and_say_so() -> None:
    pixels, meta = read_ds(mono12(WindowCenter=[2048, 600], WindowWidth=[1024, 400]))
    np.testing.assert_allclose(pixels, linear_window(STORED12, 2048, 1024), rtol=0, atol=1e-6)
    assert meta["window"]["center"] == 2048.0 and "2 windows in the file: used the first" in meta["notes"]


def test_rescale_slope_intercept_moves_the_window_into_modality_units() -> None:
    plain, _ = read_ds(mono12(WindowCenter=0, WindowWidth=2000))
    rescaled, meta = read_ds(mono12(WindowCenter=0, WindowWidth=2000, RescaleSlope=2, RescaleIntercept=-1024))
    modality = 2.0 * STORED12 - 1024
    np.testing.assert_allclose(rescaled, linear_window(modality, 0, 2000), rtol=0, atol=1e-6)
    assert not np.allclose(plain, rescaled)
    assert plain[STORED12 > 1000].min() == 1.0  # stored values read as if they were modality values
    assert meta["window"]["source"] == "Window Center/Width"


def test_rescale_without_window_keeps_the_stored_range_mapping() -> None:
    # The Bits Stored range goes through the same affine rescale, so the grey image is unchanged.
    plain, _ = read_ds(mono12())
    rescaled, meta = read_ds(mono12(RescaleSlope=2, RescaleIntercept=-1024))
    np.testing.assert_allclose(rescaled, plain, rtol=0, atol=1e-6)
    assert meta["window"] == {"center": 3071.0, "width": 8190.0, "source": "Bits Stored range"}


def _voi_lut_item(first_map: int, table: np.ndarray) -> Dataset:
    item = Dataset()
    item.add_new(0x00283002, "US", [len(table), first_map, 16])  # LUT Descriptor
    item.add_new(0x00283006, "US", [int(v) for v in table])  # LUT Data
    return item


def test_voi_lut_sequence_wins_over_window_and_uses_the_lut_range() -> None:
    table = np.round(np.linspace(0, 4095, 2048)).astype(np.uint16)  # 12-bit values in a "16-bit" LUT
    ds = mono12(WindowCenter=100, WindowWidth=50)
    ds.VOILUTSequence = Sequence([_voi_lut_item(1024, table)])
    pixels, meta = read_ds(ds)
    index = np.clip(STORED12.astype(np.int64) - 1024, 0, 2047)
    np.testing.assert_allclose(pixels, table[index] / 4095, rtol=0, atol=1e-6)
    assert pixels[STORED12 < 1024].max() == 0.0 and pixels[STORED12 >= 3071].min() == 1.0
    assert meta["window"] == {"center": 2048.0, "width": 2048.0, "source": "VOI LUT"}


def test_invalid_window_falls_back_to_bits_stored_range_with_a_note() -> None:
    pixels, meta = read_ds(mono12(WindowCenter=2048, WindowWidth=0))
    np.testing.assert_allclose(pixels, STORED12 / 4095, rtol=0, atol=1e-6)
    assert meta["window"]["source"] == "Bits Stored range"
    assert any(note.startswith("window unusable") for note in meta["notes"])


def test_signed_pixels_use_the_signed_bits_stored_range() -> None:
    signed = (STORED12.astype(np.int16) - 2048).astype(np.int16)
    pixels, _ = read_image(dicom_bytes(dicom_dataset(signed, bits_stored=12)))
    np.testing.assert_allclose(pixels, (signed + 2048) / 4095, rtol=0, atol=1e-6)


def test_multi_frame_takes_the_first_frame_and_says_so() -> None:
    stack = np.stack([STORED12, 4095 - STORED12, np.full_like(STORED12, 7)])
    pixels, meta = read_image(dicom_bytes(dicom_dataset(stack, bits_stored=12, frames=3)))
    np.testing.assert_allclose(pixels, STORED12 / 4095, rtol=0, atol=1e-6)
    assert meta["frames"] == 3
    assert "multi-frame DICOM with 3 frames: showing frame 1" in meta["notes"]


def test_pixel_spacing_and_imager_pixel_spacing() -> None:
    _, meta = read_ds(mono12(PixelSpacing=[0.2, 0.15]))
    assert meta["pixel_spacing"] == (0.2, 0.15)
    _, meta = read_ds(mono12(ImagerPixelSpacing=[0.139, 0.139]))
    assert meta["pixel_spacing"] == (0.139, 0.139)
    assert "pixel spacing from Imager Pixel Spacing (at the detector)" in meta["notes"]


# --- colour ----------------------------------------------------------------------------------------------


def test_rgb_dicom_becomes_bt601_grey() -> None:
    pixels, meta = read_image(dicom_bytes(dicom_dataset(RGB8, photometric="RGB")))
    np.testing.assert_allclose(pixels, bt601(RGB8), rtol=0, atol=1e-6)
    assert meta["photometric"] == "RGB" and "RGB converted to grey (BT.601 luma)" in meta["notes"]


def test_ybr_full_dicom_becomes_grey() -> None:
    ybr = convert_color_space(RGB8, "RGB", "YBR_FULL")
    pixels, meta = read_image(dicom_bytes(dicom_dataset(ybr, photometric="YBR_FULL")))
    np.testing.assert_allclose(pixels, bt601(RGB8), rtol=0, atol=2 / 255)
    assert meta["photometric"] == "YBR_FULL"


def test_palette_colour_goes_through_its_palette() -> None:
    index = np.tile(np.arange(COLS, dtype=np.uint8) * 3, (ROWS, 1))
    lut = np.stack([np.linspace(0, 65535, 256), np.linspace(65535, 0, 256), np.full(256, 30000)]).round()
    lut = lut.astype(np.uint16)
    ds = dicom_dataset(index, photometric="PALETTE COLOR")
    for colour, values in zip(("Red", "Green", "Blue"), lut, strict=True):
        ds.add_new(f"{colour}PaletteColorLookupTableDescriptor", "US", [256, 0, 16])
        ds.add_new(f"{colour}PaletteColorLookupTableData", "OW", values.tobytes())
    pixels, meta = read_image(dicom_bytes(ds))
    np.testing.assert_allclose(pixels, bt601(lut.T[index], peak=65535), rtol=0, atol=1e-6)
    assert "PALETTE COLOR converted to grey (BT.601 luma)" in meta["notes"]


# --- compressed transfer syntaxes ------------------------------------------------------------------------


def _jpeg_lossless_sv1(arr: np.ndarray) -> bytes:
    if not hasattr(imagecodecs, "jpeg8_encode") or not imagecodecs.JPEG8.available:
        pytest.skip("this imagecodecs build has no libjpeg-turbo encoder for lossless JPEG (SV1)")
    frame = imagecodecs.jpeg8_encode(arr, lossless=True, predictor=1, bitspersample=12)
    sos = frame.index(b"\xff\xda")
    assert frame[sos + 5 + 2 * frame[sos + 4]] == 1, "predictor (selection value) must be 1"
    return frame


def _compressed(name: str) -> Dataset:
    ds = mono12()
    if name == "RLE Lossless":
        ds.compress(RLELossless, STORED12)
    elif name == "JPEG 2000 Lossless":
        ds.compress(JPEG2000Lossless, STORED12)
    elif name == "JPEG-LS Lossless":
        encapsulated(ds, [imagecodecs.jpegls_encode(STORED12)], JPEGLSLossless)
    elif name == "JPEG Lossless SV1":
        encapsulated(ds, [_jpeg_lossless_sv1(STORED12)], JPEGLosslessSV1)
    return ds


@pytest.mark.parametrize(
    "name", ["RLE Lossless", "JPEG 2000 Lossless", "JPEG-LS Lossless", "JPEG Lossless SV1"]
)
def test_lossless_syntaxes_decode_to_exactly_the_original(name: str) -> None:
    native, _ = read_ds(mono12())
    pixels, meta = read_ds(_compressed(name))
    np.testing.assert_array_equal(pixels, native)
    np.testing.assert_array_equal(np.round(pixels.astype(np.float64) * 4095).astype(np.uint16), STORED12)
    assert meta["transfer_syntax"] != "Explicit VR Little Endian"


def test_jpeg_2000_lossy_decodes_close_to_the_original() -> None:
    ds = mono12()
    ds.compress(JPEG2000, STORED12, j2k_cr=[10])
    pixels, meta = read_ds(ds)
    assert meta["transfer_syntax"] == "JPEG 2000 Image Compression"
    assert np.abs(pixels - STORED12 / 4095).mean() < 0.01


def test_jpeg_extended_12_bit_decodes_close_to_the_original() -> None:
    frame = imagecodecs.jpeg8_encode(STORED12, level=95, bitspersample=12)
    pixels, _ = read_ds(encapsulated(mono12(), [frame], JPEGExtended12Bit))
    assert np.abs(pixels - STORED12 / 4095).max() < 0.02


def test_jpeg_baseline_8_bit() -> None:
    grey8 = (STORED12 >> 4).astype(np.uint8)
    frame = pil_bytes(Image.fromarray(grey8), "JPEG", quality=95)
    ds = encapsulated(dicom_dataset(grey8), [frame], JPEGBaseline8Bit)
    pixels, meta = read_image(dicom_bytes(ds))
    assert meta["transfer_syntax"] == "JPEG Baseline (Process 1)" and meta["bit_depth"] == 8
    np.testing.assert_allclose(pixels, grey8 / 255, rtol=0, atol=3 / 255)
    reference, _ = read_image(frame)  # the same JPEG read as a plain JPEG file
    np.testing.assert_allclose(pixels, reference, rtol=0, atol=1 / 255)


def test_colour_jpeg_baseline_ybr_full_422_becomes_grey() -> None:
    frame = pil_bytes(Image.fromarray(RGB8), "JPEG", quality=95, subsampling="4:2:2")
    ds = encapsulated(dicom_dataset(RGB8, photometric="YBR_FULL_422"), [frame], JPEGBaseline8Bit)
    pixels, meta = read_image(dicom_bytes(ds))
    assert meta["photometric"] == "YBR_FULL_422" and meta["notes"] == [
        "YBR_FULL_422 converted to grey (BT.601 luma)"
    ]
    np.testing.assert_allclose(pixels, bt601(RGB8), rtol=0, atol=4 / 255)


@pytest.mark.parametrize("syntax", [DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_other_native_encodings(syntax: UID) -> None:
    buffer = io.BytesIO()
    ds = mono12()
    ds.file_meta.TransferSyntaxUID = syntax
    if not syntax.is_little_endian:  # pydicom writes OW bytes as given: store them big endian
        ds.PixelData = STORED12.astype(">u2").tobytes()
    ds.save_as(buffer, enforce_file_format=True, little_endian=syntax.is_little_endian, implicit_vr=False)
    pixels, meta = read_image(buffer.getvalue())
    np.testing.assert_allclose(pixels, STORED12 / 4095, rtol=0, atol=1e-6)
    assert meta["transfer_syntax"] == syntax.name


# --- detection, bytes versus path, header-only size -------------------------------------------------------


def _raw_dataset(ds: Dataset) -> bytes:
    """The data set alone, implicit VR little endian: no preamble, no "DICM", no file meta."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    return buffer.getvalue()


def test_dicom_without_preamble_is_recognised() -> None:
    reference, _ = read_ds(mono12())
    part10 = dicom_bytes(mono12())
    for data in (part10[132:], _raw_dataset(mono12())):
        pixels, meta = read_image(data)
        np.testing.assert_array_equal(pixels, reference)
        assert meta["format"] == "DICOM"
        assert image_size(data) == (COLS, ROWS)


def test_bytes_and_path_agree_and_image_size_reads_the_header(tmp_path: Path) -> None:
    for ds in (mono12(WindowCenter=2000, WindowWidth=3000), _compressed("JPEG 2000 Lossless")):
        data = dicom_bytes(ds)
        path = write(tmp_path / "scan.dcm", data)
        from_path, from_bytes = read_image(path), read_image(data)
        np.testing.assert_array_equal(from_path[0], from_bytes[0])
        assert from_path[1] == from_bytes[1]
        assert image_size(path) == image_size(data) == (COLS, ROWS)


# --- failures --------------------------------------------------------------------------------------------


def _without_pixels() -> bytes:
    ds = mono12()
    del ds.PixelData
    return dicom_bytes(ds)


def _with_garbage_frame(syntax: UID) -> bytes:
    return dicom_bytes(encapsulated(mono12(), [b"\xff\x4f\xff\x51" + bytes(range(200))], syntax))


DICOM_FAILURES: list[tuple[str, Callable[[], bytes], str]] = [
    ("truncated-native", lambda: dicom_bytes(mono12())[: len(dicom_bytes(mono12())) // 2], "truncated"),
    ("truncated-rle", lambda: (d := dicom_bytes(_compressed("RLE Lossless")))[: len(d) // 2], "truncated"),
    ("cut-in-header", lambda: dicom_bytes(mono12())[:200], "or the file is cut short"),
    ("no-pixel-data", _without_pixels, "no pixel data"),
    ("photometric-ybr-ict", lambda: dicom_bytes(mono12(PhotometricInterpretation="YBR_ICT")), "photometric"),
    ("photometric-hsv", lambda: dicom_bytes(mono12(PhotometricInterpretation="HSV")), "interpretation 'HSV'"),
    ("too-small", lambda: dicom_bytes(dicom_dataset(np.zeros((16, 16), np.uint16))), "too small"),
    ("over-limit", lambda: dicom_bytes(mono12(Rows=9000, Columns=9000)), "megapixels"),
    ("damaged-j2k", lambda: _with_garbage_frame(JPEG2000Lossless), "damaged or truncated"),
    ("mpeg", lambda: _with_garbage_frame(MPEG2MPML), "not supported"),
    ("garbage-after-group-8", lambda: b"\x08\x00\x05\x00CS" + bytes(range(256)) * 4, "DICOM"),
]  # fmt: skip


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the damage we then report
@pytest.mark.parametrize(("name", "build", "phrase"), DICOM_FAILURES, ids=[f[0] for f in DICOM_FAILURES])
def test_dicom_failures(name: str, build: Callable[[], bytes], phrase: str, tmp_path: Path) -> None:
    data = build()
    for source in (data, write(tmp_path / f"{name}.dcm", data)):
        with pytest.raises(ImageReadError) as info:
            read_image(source)
        assert phrase in str(info.value), str(info.value)


def test_photometric_message_names_the_value_and_the_supported_ones() -> None:
    with pytest.raises(ImageReadError) as info:
        read_image(dicom_bytes(mono12(PhotometricInterpretation="HSV")))
    message = str(info.value)
    assert "unsupported DICOM photometric interpretation 'HSV'" in message and "MONOCHROME1" in message


def test_dicom_without_pixels_has_no_size() -> None:
    with pytest.raises(ImageReadError, match="no pixel data"):
        read_image(_without_pixels())
    ds = mono12()
    del ds.Rows, ds.Columns, ds.PixelData
    with pytest.raises(ImageReadError, match="no image size"):
        image_size(dicom_bytes(ds))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", ["native", "RLE Lossless", "JPEG 2000 Lossless"])
def test_damaged_dicom_never_raises_anything_else(name: str) -> None:
    data = dicom_bytes(mono12() if name == "native" else _compressed(name))
    assert_damage_only_raises_image_errors(data, name, rounds=40)


# --- privacy ---------------------------------------------------------------------------------------------


def test_patient_data_never_reaches_meta_logs_or_messages(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    caplog.set_level("DEBUG")
    ds = mono12(WindowCenter=2048, WindowWidth=4096, PixelSpacing=[0.2, 0.2])
    secrets = [*PHI.values(), *PHI["PatientName"].split("^"), str(ds.StudyInstanceUID),
               str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)]  # fmt: skip
    texts = []
    _, meta = read_image(write(tmp_path / "study.dcm", dicom_bytes(ds)))
    texts.append(repr(meta))
    for broken in (_without_pixels(), dicom_bytes(mono12(PhotometricInterpretation="HSV")),
                   dicom_bytes(ds)[:-500], _with_garbage_frame(JPEG2000Lossless)):  # fmt: skip
        with pytest.raises(ImageReadError) as info:
            read_image(broken)
        texts.append(str(info.value))
    texts += [caplog.text, *(str(w.message) for w in recwarn)]
    assert "read DICOM 80x64" in caplog.text  # the log did record the reads
    everything = "\n".join(texts)
    for secret in secrets:
        assert secret not in everything, secret
    allowed = {"format", "original_size", "bit_depth", "photometric", "pixel_spacing", "window", "notes",
               "transfer_syntax", "modality", "frames", "nonfinite_pixels"}  # fmt: skip
    assert set(meta) == allowed


# --- real data (CXR_DATA_DIR) ----------------------------------------------------------------------------

RSNA_TWIN = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"


@pytest.mark.realdata
def test_every_real_dicom_reads(data_dir: Path) -> None:
    files = sorted((data_dir / "dicom").glob("*.dcm"))
    assert len(files) >= 4
    for path in files:
        pixels, meta = read_image(path)
        assert pixels.dtype == np.float32 and pixels.ndim == 2 and min(pixels.shape) >= 32
        assert pixels.min() >= 0.0 and pixels.max() <= 1.0
        assert image_size(path) == meta["original_size"] == (pixels.shape[1], pixels.shape[0])


@pytest.mark.realdata
def test_fake_monochrome1_is_the_inverse_of_its_rsna_original(data_dir: Path) -> None:
    inverted, meta = read_image(data_dir / "dicom" / "Fake_MONOHR1.dcm")
    original, original_meta = read_image(data_dir / "dicom" / RSNA_TWIN)
    assert meta["photometric"] == "MONOCHROME1" and original_meta["photometric"] == "MONOCHROME2"
    np.testing.assert_allclose(inverted, 1.0 - original, rtol=0, atol=1e-6)
    assert original.std() > 0.05  # a real image, not a constant
