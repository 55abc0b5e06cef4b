"""The whole dashboard in a real browser: every page, a DICOM and a PNG upload, a corrupt upload, and
three files at once whose review CSV is downloaded.

Screenshots go to ``test-artifacts/`` (``CXR_TEST_ARTIFACTS`` overrides). Skipped, with the reason,
only where Debian's Chromium or the playwright package is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser_harness import PAGES, ROOT, browser_missing, chromium_page, dashboard, errors_on, wait_until_idle
from conftest import save_detector
from io_corpus import dicom_bytes, dicom_dataset
from PIL import Image

pytestmark = [
    pytest.mark.slow,  # starts the dashboard and drives Chromium through every page
    pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or ""),
]

ARTIFACTS = Path(os.environ.get("CXR_TEST_ARTIFACTS", ROOT / "test-artifacts"))


def _dicom_file(tmp: Path) -> Path:
    """A real DICOM from CXR_DATA_DIR/dicom when available, else a generated one."""
    data_dir = os.environ.get("CXR_DATA_DIR")
    if data_dir and (Path(data_dir) / "dicom").is_dir():
        found = sorted((Path(data_dir) / "dicom").glob("*.dcm"))
        if found:
            return found[0]
    from cxrcore.data.phantoms import render_phantom

    image, _ = render_phantom(np.random.default_rng(3), 256, ["Opacity"])
    path = tmp / "generated.dcm"
    path.write_bytes(dicom_bytes(dicom_dataset(np.round(image * 4095).astype(np.uint16), bits_stored=12)))
    return path


def _png_file(home: Path) -> Path:
    return sorted((home / "demo" / "phantoms" / "images").glob("*.png"))[0]


def _clear_uploads(page) -> None:
    """Remove the files uploaded so far (the uploader keeps adding files to its list)."""
    delete = page.locator('[data-testid="stFileChipDeleteBtn"]')
    while delete.count():
        delete.first.click()
        wait_until_idle(page)


def _upload(page, path: Path, shot: Path) -> bool:
    """Upload a file; when the upload guard warns, screenshot the warning and ask for the predictions.

    Returns whether the guard warned.
    """
    _clear_uploads(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(path))
    wait_until_idle(page)
    anyway = page.get_by_text("Show the predictions anyway")
    warned = anyway.count() > 0
    if warned:
        page.screenshot(path=str(shot.with_name(shot.stem + "-guard.png")), full_page=True)
        assert "does not look like a chest X-ray the model was trained on" in page.inner_text("body")
        anyway.click()
        wait_until_idle(page)
    page.screenshot(path=str(shot), full_page=True)
    return warned


def _default_model_is_synthetic(home: Path) -> bool:
    from cxrcore.models.catalog import list_checkpoints

    return list_checkpoints(home)[0].synthetic


def test_every_page_and_uploads_in_chromium(trained_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "workspace"
    shutil.copytree(trained_home, home)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with dashboard(home) as (url, _), chromium_page() as page:
        for name, path in PAGES.items():
            page.goto(f"{url}/{path}")
            wait_until_idle(page)
            page.screenshot(path=str(ARTIFACTS / f"page-{name}.png"), full_page=True)
            assert errors_on(page) == [], f"{name}: {errors_on(page)}"
            assert page.locator('[data-testid="stMain"]').inner_text().strip(), f"{name} is empty"
        links = page.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()
        assert links[0].strip() == "Home" and "streamlit app" not in " ".join(links).lower()
        # A DICOM upload: probabilities and heat maps, no error.
        page.goto(f"{url}/Explain")
        wait_until_idle(page)
        assert page.get_by_text("Download the panel").count() == 0  # waiting for an image
        dicom = _dicom_file(tmp_path)
        warned = _upload(page, dicom, ARTIFACTS / "explain-dicom.png")
        if dicom.name != "generated.dcm":
            # A real radiograph passes the guard of a model trained on real X-rays (the bundled default)
            # and is flagged by one that learnt synthetic phantoms only.
            assert warned == _default_model_is_synthetic(home)
        assert errors_on(page) == []
        assert page.get_by_text("Download the panel").count() == 1
        # The panel's PNG is made when the button is clicked: a whole picture, not a blank one.
        with page.expect_download() as download:
            page.get_by_text("Download the panel").click()
        panel = Image.open(download.value.path())
        assert panel.format == "PNG" and min(panel.size) > 100 and np.asarray(panel).std() > 0
        assert download.value.suggested_filename.endswith("-explained.png")
        assert page.locator('[data-testid="stHtml"] table').count() >= 1  # the readings, with their bars
        assert page.locator('[data-testid="stPlotlyChart"]').count() == 0  # the chart only on request
        rows = page.locator('[data-testid="stImage"]').filter(has_text="| CAM | CRM")  # a picture per label
        assert rows.count() >= 3
        # A PNG upload replaces it.
        _upload(page, _png_file(home), ARTIFACTS / "explain-png.png")
        assert errors_on(page) == []
        assert rows.count() >= 3
        # A corrupt file: the reader's message, nothing else.
        broken = tmp_path / "broken.png"
        broken.write_bytes(_png_file(home).read_bytes()[:80])
        _upload(page, broken, ARTIFACTS / "explain-corrupt.png")
        errors = errors_on(page)
        assert len(errors) == 1 and "Cannot read 'broken.png'" in errors[0]
        assert page.get_by_text("Download the panel").count() == 0
        # Three files at once: a gallery of the two readable ones, a warning for the third, and the CSV.
        _clear_uploads(page)
        files = [str(dicom), str(_png_file(home)), str(broken)]
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(files)
        wait_until_idle(page)
        page.screenshot(path=str(ARTIFACTS / "explain-gallery.png"), full_page=True)
        assert errors_on(page) == []
        assert "Cannot read 'broken.png'" in page.inner_text("body")
        with page.expect_download() as download:
            page.get_by_text("Download CSV").click()
        table = pd.read_csv(download.value.path())
        assert table["file"].tolist() == [dicom.name, _png_file(home).name, "broken.png"]
        assert (table["status"][:2] == "ok").all() and table["status"][2].startswith("error: ")
        assert table.columns[table.columns.str.endswith(" probability")].size > 0


def test_explain_draws_a_lesion_detectors_boxes_in_chromium(trained_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "workspace"
    shutil.copytree(trained_home, home)
    save_detector(home)  # a small Faster R-CNN in the workspace: the Explain page picks it by default
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with dashboard(home) as (url, _), chromium_page() as page:
        page.goto(f"{url}/Explain")
        wait_until_idle(page)
        _upload(page, _png_file(home), ARTIFACTS / "explain-detector.png")
        assert errors_on(page) == []
        main = page.locator('[data-testid="stMain"]').inner_text()
        assert "Faster R-CNN:" in main and "box(es) scoring 0.50 or more" in main
        images = page.locator('[data-testid="stImage"]')
        assert images.filter(has_text="| CAM | CRM").count() >= 3  # the maps, a picture per label
        assert images.filter(has_text="Faster R-CNN:").count() == 1  # and the detector's beside them
        assert "No lesion detector yet" not in main
