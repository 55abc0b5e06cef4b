"""The batch review: python -m cxrcore explain on a folder, its CSV, HTML and PDF, no patient identifiers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from io_corpus import PHI, dicom_bytes, dicom_dataset
from PIL import Image

from cxrcore.cli import main
from cxrcore.data.phantoms import render_phantom
from cxrcore.explain.engine import explain
from cxrcore.io import read_image
from cxrcore.models import load_checkpoint
from cxrcore.models.readout import thresholds
from cxrcore.notice import RESEARCH_NOTICE
from cxrcore.workflows.batch_report import batch_table, collect_files, review_batch

TINY = Path(__file__).resolve().parents[1] / "checkpoints" / "demo-tiny.safetensors"


def _phantom(seed: int, findings: tuple[str, ...]) -> np.ndarray:
    image, _ = render_phantom(np.random.default_rng(seed), 160, list(findings))
    return image


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A DICOM carrying planted patient identifiers, a PNG, a broken file and a text file to leave out."""
    scans = tmp_path / "scans"
    (scans / "ward").mkdir(parents=True)
    pixels = np.round(_phantom(1, ("Effusion",)) * 4095).astype(np.uint16)
    (scans / "ward" / "study.dcm").write_bytes(dicom_bytes(dicom_dataset(pixels, bits_stored=12)))
    png = io.BytesIO()
    Image.fromarray(np.round(_phantom(2, ("Nodule",)) * 255).astype(np.uint8)).save(png, format="PNG")
    (scans / "nodule.png").write_bytes(png.getvalue())
    (scans / "broken.png").write_bytes(png.getvalue()[:80])
    (scans / "notes.txt").write_text("not an image")
    return scans


def test_collect_files_names_them_inside_the_folder(folder: Path) -> None:
    found = collect_files([folder])
    assert [name for name, _ in found] == ["broken.png", "nodule.png", "ward/study.dcm"]
    assert collect_files([folder / "nodule.png"]) == [("nodule.png", folder / "nodule.png")]
    with pytest.raises(FileNotFoundError, match="no such file"):
        collect_files([folder / "missing"])


def test_explain_command_writes_the_good_ones_and_names_the_broken_one(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "review"
    code = main(["explain", str(folder), "--checkpoint", str(TINY), "--out", str(out), "--json"])
    assert code == 2  # one file could not be read; the others are written
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["reviewed"] == 2 and [f["file"] for f in report["failed"]] == ["broken.png"]
    assert captured.err.strip().startswith("error: broken.png: ") and "truncated" in captured.err
    assert sorted(p.name for p in (out / "panels").iterdir()) == ["nodule.png", "study.png"]
    table = pd.read_csv(out / "review.csv")
    assert table["file"].tolist() == ["broken.png", "nodule.png", "ward/study.dcm"]
    assert table.loc[0, "status"].startswith("error: ") and (table["status"][1:] == "ok").all()
    # The CSV's probabilities are the checkpoint's calibrated ones, called against its thresholds.
    checkpoint = load_checkpoint(TINY)
    pixels, _ = read_image(folder / "nodule.png")
    expected = explain(checkpoint, pixels, methods=("cam",)).probabilities
    cuts = thresholds(checkpoint.card)
    row = table.iloc[1]
    for label in checkpoint.labels:
        assert row[f"{label} probability"] == pytest.approx(expected[label], abs=1e-4)
        assert row[f"{label} call"] == ("above" if expected[label] >= cuts[label] else "below")
    assert row["guard_distance"] > 0 and row["guard_flagged"] in (True, False)
    html = (out / "report.html").read_text()
    assert RESEARCH_NOTICE in html and html.count("data:image/png;base64,") == 4  # 2 thumbnails, 2 panels
    assert "broken.png" in html and "Platt scaling" in html and "demo-phantoms-train" in html
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")


def test_no_planted_patient_identifier_reaches_any_output(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "review"
    main(["explain", str(folder), "--checkpoint", str(TINY), "--out", str(out)])
    printed = capsys.readouterr()
    outputs = [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    assert len(outputs) == 5  # two panels, the CSV, the HTML, the PDF
    assert b"Research tool" in (out / "report.pdf").read_bytes()  # the PDF's text is searchable
    for value in PHI.values():
        for part in {value, *value.split("^")}:
            for blob in [*outputs, printed.out.encode(), printed.err.encode()]:
                assert part.encode() not in blob, f"{part!r} found in an output"


def test_top_boxes_are_in_the_images_own_pixels(folder: Path) -> None:
    checkpoint = load_checkpoint(TINY)
    review = review_batch(checkpoint, [("nodule.png", folder / "nodule.png")], panel_labels=1)
    image = review.images[0]
    assert image.size == (160, 160) and image.box_frame == "image" and len(image.panel_labels) == 1
    for box in image.boxes.values():
        assert box["x"] >= 0 and box["x"] + box["w"] <= 160 + 1e-6
        assert box["y"] >= 0 and box["y"] + box["h"] <= 160 + 1e-6
    table = batch_table(review)
    label = next(iter(image.boxes))
    assert table.loc[0, f"{label} box"] == " ".join(str(round(image.boxes[label][k])) for k in "xywh")
