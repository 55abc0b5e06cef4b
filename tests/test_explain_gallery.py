"""Several uploads on the Explain page: the gallery, its sort, the downloads, and opening one image."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from io_corpus import PHI, dicom_bytes, dicom_dataset
from page_harness import readings_tables, run, run_page
from PIL import Image

from cxrcore.data.phantoms import render_phantom
from cxrcore.store import Workspace
from cxrcore.ui import state

TINY = Path(__file__).resolve().parents[1] / "checkpoints" / "demo-tiny.safetensors"


def _png(seed: int, finding: str) -> bytes:
    image, _ = render_phantom(np.random.default_rng(seed), 128, [finding])
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _dicom() -> bytes:
    image, _ = render_phantom(np.random.default_rng(7), 128, ["Effusion"])
    return dicom_bytes(dicom_dataset(np.round(image * 4095).astype(np.uint16), bits_stored=12))


@pytest.mark.slow  # three uploads through the model, the guard and both reports
def test_several_uploads_make_a_sorted_gallery_with_reports_and_open_one(demo_ws: Workspace) -> None:
    at = run_page("pages/5_Explain.py")
    at.session_state[state.CHECKPOINT] = str(TINY)
    files = [("a.png", _png(1, "Nodule"), "image/png"), ("scan.dcm", _dicom(), "application/dicom")]
    files.append(("broken.png", _png(2, "Opacity")[:70], "image/png"))
    at.file_uploader(key="explain_upload").set_value(files)
    run(at)
    assert any("Cannot read 'broken.png'" in w.value for w in at.warning)
    gallery = at.dataframe[0].value
    assert len(gallery) == 2 and set(gallery["file"]) == {"a.png", "scan.dcm"}
    assert gallery["thumbnail"].str.startswith("data:image/png;base64,").all()
    assert gallery["Nodule probability"].is_monotonic_decreasing  # sorted by the first label at first
    at.selectbox(key="gallery_sort").set_value("Effusion")
    run(at)
    gallery = at.dataframe[0].value
    assert gallery["Effusion probability"].is_monotonic_decreasing
    labels = [b.label for b in at.get("download_button")]
    assert {"Download report (HTML)", "Download report (PDF)", "Download CSV"} <= set(labels)
    opened = at.selectbox(key="gallery_open")
    assert opened.options == gallery["file"].tolist()  # in the gallery's order
    opened.select_index(1)
    run(at)
    [readings] = readings_tables(at)  # the opened image's per-label table, below the gallery
    assert list(readings.columns[:3]) == ["probability", "threshold", "call"]
    second = gallery["Effusion probability"][1]
    assert readings.loc["Effusion", "probability"] == pytest.approx(second, abs=1e-3)
    assert any("Called positive" in c.value or "⚠ marks" in c.value for c in at.caption)
    assert len(at.get("image")) >= 3  # the opened image's panel
    shown = " ".join(str(e.value) for kind in ("markdown", "caption", "warning") for e in at.get(kind))
    assert not any(value in shown for value in PHI.values())


def test_a_set_of_uploads_is_reviewed_in_a_later_turn(
    demo_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One person's set of images waits behind other people's single uploads (``cxrcore.ui.turns``)."""
    from cxrcore.ui import batch, turns

    gate = turns.TurnGate(slots=2)
    monkeypatch.setattr(turns, "_GATE", gate)
    held: list[int | None] = []
    review = batch.review_batch

    def recorded(*args: object, **kwargs: object) -> object:
        held.append(gate.held())
        return review(*args, **kwargs)

    monkeypatch.setattr(batch, "review_batch", recorded)
    at = run_page("pages/5_Explain.py")
    at.session_state[state.CHECKPOINT] = str(TINY)
    files = [("a.png", _png(1, "Nodule"), "image/png"), ("b.png", _png(3, "Effusion"), "image/png")]
    at.file_uploader(key="explain_upload").set_value(files)
    run(at)
    assert not at.exception and len(at.dataframe[0].value) == 2
    assert held == [turns.LATER]
    assert gate.running == 0
