"""Degenerate images: refused (NaN / infinite / constant) or warned (odd shape, empty histogram), in the
engine, the reader, ``cxr image info`` and ``cxr explain``, and on the Explain page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from io_corpus import dicom_bytes, dicom_dataset, pil_bytes, write
from page_harness import readings_tables, run, run_page
from PIL import Image
from streamlit.testing.v1 import AppTest

from cxrcore.cli import main
from cxrcore.data.phantoms import render_phantom
from cxrcore.io import DegenerateImageError, ImageReadError, assess_image, read_image

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "demo-tiny.safetensors"
PAGE = "pages/5_Explain.py"


def _float_tiff(values: np.ndarray) -> bytes:
    return pil_bytes(Image.fromarray(values.astype(np.float32), mode="F"), "TIFF")


def _phantom(size: int = 128) -> np.ndarray:
    image, _ = render_phantom(np.random.default_rng(3), size, ["Nodule"])
    return image


def _png(pixels: np.ndarray) -> bytes:
    return pil_bytes(Image.fromarray(np.round(pixels * 255).astype(np.uint8)), "PNG")


def _noise(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(0).random((height, width)).astype(np.float32)


def _with_inf() -> np.ndarray:
    values = _noise(64, 64)
    values[:4] = np.inf
    return values


REFUSED = {
    "all-nan-tiff": (lambda: _float_tiff(np.full((64, 64), np.nan)), "4096 of 4096 pixels (100.0%) are NaN"),
    "some-inf-tiff": (lambda: _float_tiff(_with_inf()), "256 of 4096 pixels (6.2%) are NaN or infinite"),
    "minus-inf-tiff": (lambda: _float_tiff(np.full((64, 64), -np.inf)), "are NaN or infinite"),
    "black-png": (lambda: _png(np.zeros((128, 128))), "every pixel has the same value (0.000"),
    "white-png": (lambda: _png(np.ones((96, 128))), "every pixel has the same value (1.000"),
    "constant-dicom": (lambda: dicom_bytes(dicom_dataset(np.full((64, 64), 700, np.uint16), bits_stored=12)),
                       "every pixel has the same value"),
}  # fmt: skip

WARNED = {
    "wide": (lambda: _noise(40, 4000), "its aspect ratio is extreme (4000 x 40 pixels)"),
    "tall": (lambda: _noise(1000, 36), "its aspect ratio is extreme (36 x 1000 pixels)"),
    "two-levels": (lambda: np.where(_noise(128, 128) > 0.5, 0.2, 0.8), "only 2 of 256 grey levels in use"),
    "one-spot": (lambda: np.pad(_noise(6, 6), 60), "of the pixels share one grey level"),
    "faint": (lambda: 0.5 + 0.004 * _noise(128, 128), "nearly uniform"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_degenerate_files_are_read_then_refused_with_the_reason(name: str) -> None:
    build, phrase = REFUSED[name]
    pixels, meta = read_image(build())
    assert pixels.dtype == np.float32 and np.isfinite(pixels).all()  # the reader's contract holds
    quality = assess_image(pixels, meta, "scan.tif")
    assert quality.refused and phrase in quality.refusal and quality.refusal.startswith("scan.tif: ")
    with pytest.raises(DegenerateImageError, match="no prediction is made") as info:
        quality.check()
    assert isinstance(info.value, ImageReadError)  # a user error: one line from the command line


@pytest.mark.parametrize("name", list(WARNED))
def test_odd_images_are_warned_about_but_not_refused(name: str) -> None:
    build, phrase = WARNED[name]
    quality = assess_image(np.asarray(build(), dtype=np.float32))
    assert not quality.refused and quality.check() is quality
    assert any(phrase in w for w in quality.warnings), quality.warnings


def test_chest_images_pass_without_a_word() -> None:
    for seed in range(5):
        image, _ = render_phantom(np.random.default_rng(seed), 128, ["Nodule", "Effusion"])
        assert assess_image(image) == assess_image(image, {"nonfinite_pixels": 0})
        assert assess_image(image).warnings == () and not assess_image(image).refused


def test_nan_in_an_array_handed_over_directly_is_refused() -> None:
    pixels = _phantom()
    pixels[5, 5] = np.nan
    assert "1 of 16384 pixels" in assess_image(pixels).refusal


def test_the_reader_counts_non_finite_pixels_and_shows_them_as_zero() -> None:
    pixels, meta = read_image(_float_tiff(_with_inf()))
    assert meta["nonfinite_pixels"] == 256 and float(pixels[:4].max()) == 0.0
    _, clean = read_image(_png(_phantom()))
    assert clean["nonfinite_pixels"] == 0


def test_too_thin_an_image_is_refused_by_the_reader() -> None:
    with pytest.raises(ImageReadError, match=r"too small \(4000x20 pixels\)"):
        read_image(_png(_noise(20, 4000)))


# ---------------------------------------------------------------- the command line


def test_cli_explain_refuses_a_degenerate_image_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for name, (build, phrase) in REFUSED.items():
        image = write(tmp_path / f"{name}.img", build())
        assert main(["explain", str(CHECKPOINT), str(image), "--json", "--out", str(tmp_path / "out")]) == 2
        out, err = capsys.readouterr()
        assert err.count("\n") == 1 and err.startswith(f"error: {image.name}: ") and phrase in err, err
        payload = json.loads(out)
        assert payload["reviewed"] == 0 and payload["images"] == {}
        assert phrase in payload["failed"][0]["error"]
    assert not (tmp_path / "out").exists()  # nothing was written for a refused image


def test_cli_explain_carries_warnings_with_the_probabilities(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image = write(tmp_path / "wide.png", _png(_noise(40, 400)))
    assert main(["explain", str(CHECKPOINT), str(image), "--json", "--out", str(tmp_path / "out")]) == 0
    out, err = capsys.readouterr()
    image_payload = json.loads(out)["images"]["wide.png"]
    assert "its aspect ratio is extreme (400 x 40 pixels)" in image_payload["warnings"]
    assert "warning: wide.png: its aspect ratio is extreme" in err
    assert set(image_payload["probabilities"]) == {"Effusion", "Nodule", "Opacity"}
    assert Image.open(tmp_path / "out" / "panels" / "wide.png").size[0] > 320
    assert "aspect ratio is extreme" in (tmp_path / "out" / "report.html").read_text()


def test_cli_explain_of_a_chest_image_has_no_quality_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image = write(tmp_path / "chest.png", _png(_phantom()))
    assert main(["explain", str(image), "--checkpoint", str(CHECKPOINT)]) == 0
    out, err = capsys.readouterr()
    assert "Nodule: " in out and "aspect" not in err and "histogram" not in err and "warning" not in out


def test_cli_image_info_reports_the_verdict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image = write(tmp_path / "nan.tif", _float_tiff(np.full((64, 64), np.nan)))
    assert main(["image", "info", str(image), "--json"]) == 0
    out, err = capsys.readouterr()
    info = json.loads(out)
    assert info["quality"]["refused"] and info["nonfinite_pixels"] == 4096
    assert "warning: nan.tif: 4096 of 4096 pixels" in err


# ---------------------------------------------------------------- the Explain page


@pytest.fixture
def page_ws(workspace_home: Path) -> Path:
    """An empty workspace: the page offers the bundled checkpoints."""
    return workspace_home


def _upload(name: str, data: bytes, expect_error: str | None = None) -> AppTest:
    at = run_page(PAGE)
    at.file_uploader(key="explain_upload").upload(name, data)
    return run(at, expect_error)


def test_the_page_refuses_a_constant_or_nan_upload_and_shows_no_probability(page_ws: Path) -> None:
    for name, data, phrase in (
        ("black.png", _png(np.zeros((128, 128))), "'black.png': every pixel has the same value"),
        ("nan.tif", _float_tiff(np.full((64, 64), np.nan)), "'nan.tif': 4096 of 4096 pixels"),
    ):
        at = _upload(name, data, expect_error=phrase)
        assert len(at.error) == 1 and len(readings_tables(at)) == 0 and len(at.get("image")) == 0


def test_the_page_warns_about_an_odd_upload_before_any_probability(page_ws: Path) -> None:
    at = _upload("wide.png", _png(_noise(40, 400)))
    assert any("its aspect ratio is extreme (400 x 40 pixels)" in w.value for w in at.warning)
    assert len(readings_tables(at)) == 0  # held back until "show the predictions anyway"
    at.checkbox(key="explain_anyway").check()
    run(at)
    assert len(readings_tables(at)) == 1
