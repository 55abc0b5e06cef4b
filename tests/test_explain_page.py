"""The Explain page with real uploads (a generated PNG and DICOM, and a corrupt file), via AppTest."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from io_corpus import PHI, dicom_bytes, dicom_dataset
from page_harness import panel_rows, readings_tables, run, run_page
from PIL import Image
from streamlit.testing.v1 import AppTest

from cxrcore.data.phantoms import render_phantom
from cxrcore.store import Workspace

# Every test here uses trained_home: two models trained once per session (~11 s), then copied per test.
pytestmark = pytest.mark.slow

PAGE = "pages/5_Explain.py"


@pytest.fixture
def ws(trained_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("CXR_CHECKPOINTS", str(tmp_path / "no-bundled"))
    return trained_ws


def _phantom() -> np.ndarray:
    image, _ = render_phantom(np.random.default_rng(5), 128, ["Nodule"])
    return image


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.round(_phantom() * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _dicom() -> bytes:
    return dicom_bytes(dicom_dataset(np.round(_phantom() * 4095).astype(np.uint16), bits_stored=12))


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "error", "warning") for e in at.get(kind)]
    return " ".join(str(p) for p in parts)


def _upload(name: str, data: bytes, expect_error: str | None = None) -> AppTest:
    at = run_page(PAGE)
    at.file_uploader(key="explain_upload").upload(name, data)
    return run(at, expect_error)


@pytest.mark.parametrize(("name", "data"), [("phantom.png", _png), ("phantom.dcm", _dicom)])
def test_an_upload_gets_probabilities_and_maps_side_by_side(ws: Workspace, name: str, data) -> None:
    at = _upload(name, data())
    assert len(readings_tables(at)) == 1  # probabilities
    labels = at.multiselect(key="explain_labels").value
    assert sorted(labels) == ["Effusion", "Nodule", "Opacity"]  # top 4 of 3 labels
    text = _texts(at)
    # a picture per label, each (image, CAM, CRM); the filters and activations only once their toggle is on
    assert len(at.get("image")) == 3 and [len(row) for row in panel_rows(at)] == [3, 3, 3]
    assert [row[1:] for row in panel_rows(at)] == [["CAM", "CRM"]] * 3
    assert not any(value in text for value in PHI.values())  # nothing of the DICOM's identity shown
    at.multiselect(key="explain_methods").set_value(["gradcam++"])
    run(at)
    assert [len(row) for row in panel_rows(at)] == [4, 4, 4]


def test_a_corrupt_upload_shows_the_readers_message_and_nothing_else(ws: Workspace) -> None:
    at = _upload("broken.png", _png()[:60], expect_error="Cannot read 'broken.png'")
    assert len(at.error) == 1
    assert len(at.get("image")) == 0 and len(readings_tables(at)) == 0


def test_an_image_of_the_dataset_shows_its_true_boxes(ws: Workspace) -> None:
    at = run_page(PAGE)
    at.radio(key="explain_source").set_value("An image of demo-phantoms")
    run(at)
    assert "true boxes (green)" in _texts(at)


def test_without_a_file_a_synthetic_phantom_can_be_clicked(ws: Workspace) -> None:
    at = run_page(PAGE)
    assert len(at.get("image")) == 4  # the phantoms to click
    at.button(key="explain_sample_0").click()
    run(at)
    assert len(readings_tables(at)) == 1
    assert [len(row) for row in panel_rows(at)] == [3, 3, 3]
    smoothing = at.slider(key="explain_smooth")
    assert smoothing.value == pytest.approx(6.25)  # percent of the map's side: the engine's default
    smoothing.set_value(0.0)  # unsmoothed maps: explained again, the same panel
    run(at)
    assert [len(row) for row in panel_rows(at)] == [3, 3, 3]


def test_the_box_threshold_is_chosen_on_the_page(ws: Workspace) -> None:
    at = _upload("phantom.png", _png())
    box = at.slider(key="explain_box_threshold")  # drawn boxes: tests/test_panel.py
    assert box.value == pytest.approx(0.5)
    assert "regions above 50% of each map's peak" in _texts(at)
    box.set_value(0.8)
    run(at)
    assert "regions above 80% of each map's peak" in _texts(at)
    assert [len(row) for row in panel_rows(at)] == [3, 3, 3]


def _other_png() -> bytes:
    image, _ = render_phantom(np.random.default_rng(11), 128, ["Effusion"])
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_label_choice_holds_for_its_image_and_a_new_image_starts_from_its_own(ws: Workspace) -> None:
    at = _upload("phantom.png", _png())
    first = at.multiselect(key="explain_labels").value
    at.multiselect(key="explain_labels").set_value(["Nodule"])
    run(at)
    assert at.multiselect(key="explain_labels").value == ["Nodule"] and len(panel_rows(at)) == 1
    at.slider(key="explain_alpha").set_value(0.8)  # a display option: the choice stays
    run(at)
    assert at.multiselect(key="explain_labels").value == ["Nodule"] and len(panel_rows(at)) == 1
    # Another image: its own first labels (called positive first), and one row of maps per label.
    at.file_uploader(key="explain_upload").upload("other.png", _other_png())
    run(at)
    labels = at.multiselect(key="explain_labels").value
    assert labels == readings_tables(at)[0].index.tolist()[:4] and sorted(labels) == sorted(first)
    assert [row[0].split(":")[0] for row in panel_rows(at)] == labels
