"""cxrcore.io on raster formats, failure messages, byte inputs, and the real data folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from io_corpus import (
    assert_damage_only_raises_image_errors,
    bmp_claiming,
    bt601,
    colour_test_pattern,
    grey_test_pattern,
    pil_bytes,
    png_claiming,
    write,
)
from PIL import Image, ImageFile

from cxrcore.io import DEFAULT_MAX_PIXELS, MIN_SIDE, ImageReadError, image_size, read_image


@dataclass(frozen=True)
class RasterCase:
    """One raster variant: how to encode it, what grey it must decode to, and how closely."""

    name: str
    encode: Callable[[], bytes]
    expected: Callable[[], np.ndarray]
    atol: float
    photometric: str
    bit_depth: int
    note: str | None = None


GREY = grey_test_pattern()
GREY16 = grey_test_pattern(peak=65535)
RGB = colour_test_pattern()
ALPHA = np.tile(np.linspace(0, 255, RGB.shape[1]).astype(np.uint8), (RGB.shape[0], 1))
PALETTE = Image.fromarray(RGB).quantize(colors=32, dither=Image.Dither.NONE)
JPEG_TOL = 4 / 255  # smooth content at quality 95 stays within a few grey levels


def _grey(mode: str = "L") -> Image.Image:
    return Image.fromarray(GREY, mode) if mode == "L" else Image.fromarray(GREY16)


RASTER_CASES = [
    RasterCase("png-L8", lambda: pil_bytes(_grey(), "PNG"), lambda: GREY / 255, 1e-6, "L", 8),
    RasterCase("png-I16", lambda: pil_bytes(_grey("I;16"), "PNG"), lambda: GREY16 / 65535, 1e-5, "I;16", 16),
    RasterCase("png-RGB", lambda: pil_bytes(Image.fromarray(RGB), "PNG"), lambda: bt601(RGB), 1 / 255,
               "RGB", 8, "RGB converted to grey"),
    RasterCase("png-RGBA", lambda: pil_bytes(Image.fromarray(np.dstack([RGB, ALPHA])), "PNG"),
               lambda: bt601(RGB), 1 / 255, "RGBA", 8, "alpha channel ignored"),
    RasterCase("png-P", lambda: pil_bytes(PALETTE, "PNG"), lambda: bt601(np.asarray(PALETTE.convert("RGB"))),
               1 / 255, "P", 8, "P converted to grey"),
    RasterCase("png-LA", lambda: pil_bytes(Image.fromarray(np.dstack([GREY, ALPHA]), "LA"), "PNG"),
               lambda: GREY / 255, 1e-6, "LA", 8, "alpha channel ignored"),
    RasterCase("jpeg-baseline", lambda: pil_bytes(_grey(), "JPEG", quality=95), lambda: GREY / 255, JPEG_TOL,
               "L", 8),
    RasterCase("jpeg-progressive", lambda: pil_bytes(_grey(), "JPEG", quality=95, progressive=True),
               lambda: GREY / 255, JPEG_TOL, "L", 8),
    RasterCase("jpeg-RGB", lambda: pil_bytes(Image.fromarray(RGB), "JPEG", quality=95, subsampling=0),
               lambda: bt601(RGB), JPEG_TOL, "RGB", 8, "RGB converted to grey"),
    RasterCase("jpeg-CMYK", lambda: pil_bytes(Image.fromarray(RGB).convert("CMYK"), "JPEG", quality=95),
               lambda: bt601(RGB), JPEG_TOL, "CMYK", 8, "CMYK converted to grey"),
    RasterCase("tiff-8", lambda: pil_bytes(_grey(), "TIFF"), lambda: GREY / 255, 1e-6, "L", 8),
    RasterCase("tiff-16", lambda: pil_bytes(_grey("I;16"), "TIFF"), lambda: GREY16 / 65535, 1e-5, "I;16", 16),
    RasterCase("tiff-RGB", lambda: pil_bytes(Image.fromarray(RGB), "TIFF", compression="tiff_lzw"),
               lambda: bt601(RGB), 1 / 255, "RGB", 8, "RGB converted to grey"),
    RasterCase("bmp-L", lambda: pil_bytes(_grey(), "BMP"), lambda: GREY / 255, 1e-6, "L", 8),
    RasterCase("bmp-RGB", lambda: pil_bytes(Image.fromarray(RGB), "BMP"), lambda: bt601(RGB), 1 / 255,
               "RGB", 8, "RGB converted to grey"),
]  # fmt: skip


@pytest.mark.parametrize("case", RASTER_CASES, ids=lambda c: c.name)
def test_raster_round_trip(case: RasterCase, tmp_path: Path) -> None:
    path = write(tmp_path / f"{case.name}.img", case.encode())
    pixels, meta = read_image(path)
    expected = case.expected()
    assert pixels.dtype == np.float32 and pixels.flags.c_contiguous
    assert pixels.shape == expected.shape == (64, 96)
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0
    np.testing.assert_allclose(pixels, expected, rtol=0, atol=case.atol)
    assert meta["original_size"] == (96, 64)
    assert meta["format"] == case.name.split("-")[0].upper()
    assert meta["photometric"] == case.photometric
    assert meta["bit_depth"] == case.bit_depth
    assert meta["pixel_spacing"] is None and meta["window"] is None
    if case.note:
        assert any(note.startswith(case.note) for note in meta["notes"]), meta["notes"]
    else:
        assert meta["notes"] == []
    assert image_size(path) == (96, 64)


GREY_CASES = [c for c in RASTER_CASES if c.photometric in ("L", "I;16")]


@pytest.mark.parametrize("case", GREY_CASES, ids=lambda c: c.name)
def test_grey_ramp_is_monotonic_and_block_constant(case: RasterCase) -> None:
    pixels, _ = read_image(case.encode())
    ramp = pixels[:32].mean(axis=0)
    assert np.all(np.diff(ramp) >= -case.atol)
    assert ramp[0] <= case.atol and ramp[-1] >= 1 - case.atol
    np.testing.assert_allclose(pixels[40:, 8:-8], 0.75, atol=case.atol + 1 / 255)


def test_sixteen_bit_keeps_every_level() -> None:
    levels = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    pixels, meta = read_image(pil_bytes(Image.fromarray(levels), "PNG"))
    assert meta["bit_depth"] == 16
    np.testing.assert_array_equal(np.round(pixels.astype(np.float64) * 65535).astype(np.uint16), levels)
    assert pixels[0, 0] == 0.0 and pixels[-1, -1] == 1.0


def test_eight_bit_extremes_are_exact() -> None:
    levels = np.tile(np.arange(256, dtype=np.uint8), (32, 1))
    pixels, _ = read_image(pil_bytes(Image.fromarray(levels), "PNG"))
    assert pixels.min() == 0.0 and pixels.max() == 1.0
    np.testing.assert_allclose(pixels[0], np.arange(256) / 255, rtol=0, atol=1e-7)


def test_bytes_path_bytearray_memoryview_agree(tmp_path: Path) -> None:
    for case in RASTER_CASES:
        data = case.encode()
        path = write(tmp_path / case.name, data)
        from_path = read_image(path)
        for variant in (data, bytearray(data), memoryview(data), str(path)):
            pixels, meta = read_image(variant)
            np.testing.assert_array_equal(pixels, from_path[0])
            assert meta == from_path[1]


def test_multi_page_tiff_takes_first_page_and_says_so() -> None:
    pages = [Image.fromarray(np.full((40, 50), v, np.uint8)) for v in (10, 200, 90)]
    buffer = pil_bytes(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    pixels, meta = read_image(buffer)
    np.testing.assert_allclose(pixels, 10 / 255, atol=1e-7)
    assert "multi-frame TIFF with 3 frames: showing frame 1" in meta["notes"]


# --- failures: one exception type, a specific phrase each ---------------------------------------------


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


FAILURES: list[tuple[str, Callable[[], bytes], str]] = [
    ("empty", lambda: b"", "empty"),
    ("truncated-png", lambda: _half(pil_bytes(Image.fromarray(np.random.default_rng(1).integers(
        0, 256, (64, 64), np.uint8)), "PNG")), "truncated"),
    ("truncated-jpeg", lambda: _half(pil_bytes(Image.fromarray(RGB), "JPEG")), "truncated"),
    ("truncated-tiff", lambda: _half(pil_bytes(_grey(), "TIFF")), "truncated"),
    ("png-signature-only", lambda: b"\x89PNG\r\n\x1a\n this is not an image", "damaged or truncated"),
    ("text", lambda: b"Patient notes, not an image.\nSecond line.\n" * 5, "not a recognised image format"),
    ("random-bytes", lambda: np.random.default_rng(7).integers(1, 255, 4096, np.uint8).tobytes(),
     "not a recognised image format (PNG, JPEG, TIFF, BMP or DICOM)"),
    ("tiny-png", lambda: pil_bytes(Image.new("L", (16, 16)), "PNG"), "too small"),
    ("thin-png", lambda: pil_bytes(Image.new("L", (400, 31)), "PNG"), "too small"),
    ("png-bomb", lambda: png_claiming(20000, 20000), "megapixels"),
    ("bmp-bomb", lambda: bmp_claiming(9000, 9000), "megapixels"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "build", "phrase"), FAILURES, ids=[f[0] for f in FAILURES])
def test_failures_raise_image_read_error_with_reason(
    name: str, build: Callable[[], bytes], phrase: str, tmp_path: Path
) -> None:
    data = build()
    path = write(tmp_path / f"{name}.bin", data)
    assert phrase in str(read_error(data))
    message = str(read_error(path))
    assert phrase in message
    assert path.name in message and str(tmp_path) not in message


def read_error(source: object) -> ImageReadError:
    """The ImageReadError that reading ``source`` raises."""
    with pytest.raises(ImageReadError) as info:
        read_image(source)  # type: ignore[arg-type]
    return info.value


def test_bomb_is_refused_from_the_header_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[object] = []
    original = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> object:
        loads.append(self)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    start = time.perf_counter()
    message = str(read_error(png_claiming(20000, 20000)))
    assert time.perf_counter() - start < 0.5
    assert loads == []
    assert "20000x20000" in message and "400.0 megapixels" in message and "60 megapixels" in message
    assert image_size(png_claiming(20000, 20000)) == (20000, 20000)  # the header alone is fine to read


def test_max_pixels_is_respected() -> None:
    data = pil_bytes(_grey(), "PNG")
    assert "megapixels" in str(read_error_with(data, max_pixels=96 * 64 - 1))
    pixels, _ = read_image(data, max_pixels=96 * 64)
    assert pixels.shape == (64, 96)
    assert DEFAULT_MAX_PIXELS == 60_000_000 and MIN_SIDE == 32


def read_error_with(data: bytes, **options: int) -> ImageReadError:
    """The ImageReadError raised by read_image(data, **options)."""
    with pytest.raises(ImageReadError) as info:
        read_image(data, **options)
    return info.value


def test_missing_path_and_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nested" / "missing.png"
    for call in (read_image, image_size):
        with pytest.raises(ImageReadError) as info:
            call(missing)
        assert not isinstance(info.value, FileNotFoundError)
        assert str(info.value) == "file not found: missing.png"
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def test_wrong_source_type_is_an_image_read_error() -> None:
    with pytest.raises(ImageReadError, match="file path or the file's bytes"):
        read_image(12345)  # type: ignore[arg-type]


def test_image_size_failures() -> None:
    with pytest.raises(ImageReadError, match="not a recognised image format"):
        image_size(b"plain text, no image here at all")
    with pytest.raises(ImageReadError, match="empty"):
        image_size(b"")
    with pytest.raises(ImageReadError, match="damaged or truncated"):
        image_size(pil_bytes(_grey(), "JPEG")[:40])


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP"])
def test_damaged_files_never_raise_anything_else(fmt: str) -> None:
    """Cut and corrupt valid files at random places: either they decode, or ImageReadError."""
    data = pil_bytes(Image.fromarray(RGB), fmt)
    assert_damage_only_raises_image_errors(data, fmt, rounds=60)


def test_logs_carry_no_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    secret = tmp_path / "ward-7-upload"
    path = write(secret / "scan.png", pil_bytes(_grey(), "PNG"))
    read_image(path)
    write(secret / "bad.png", _half(pil_bytes(_grey(), "PNG")))
    with pytest.raises(ImageReadError):
        read_image(secret / "bad.png")
    assert "read PNG 96x64" in caplog.text
    assert "ward-7-upload" not in caplog.text


# --- real data (CXR_DATA_DIR) -------------------------------------------------------------------------

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm"}


def _check_real(path: Path) -> None:
    pixels, meta = read_image(path)
    assert pixels.dtype == np.float32 and pixels.ndim == 2 and pixels.flags.c_contiguous
    assert min(pixels.shape) >= MIN_SIDE
    assert float(pixels.min()) >= 0.0 and float(pixels.max()) <= 1.0
    assert meta["original_size"] == (pixels.shape[1], pixels.shape[0])


@pytest.mark.realdata
@pytest.mark.parametrize("folder", ["nih14/images", "tbx11k/images", "kermany/train/NORMAL",
                                    "kermany/train/PNEUMONIA", "nih1000_64px/train/0_normal",
                                    "nih1000_64px/test/1_abnormal"])  # fmt: skip
def test_real_image_folders_sample(data_dir: Path, folder: str) -> None:
    files = sorted(p for p in (data_dir / folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    assert files, f"no images in {folder}"
    for path in files[:: max(1, len(files) // 8)]:
        _check_real(path)
        assert image_size(path) == read_image(path)[1]["original_size"]


@pytest.mark.slow  # reads every image of the real data folder
@pytest.mark.realdata
def test_every_real_image_reads_quickly(data_dir: Path) -> None:
    files = [p for p in sorted(data_dir.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    assert len(files) > 2000
    start = time.perf_counter()
    for path in files:
        _check_real(path)
    elapsed = time.perf_counter() - start
    assert elapsed < 45, f"{len(files)} files took {elapsed:.1f} s"
