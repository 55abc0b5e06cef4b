"""Patient data planted in DICOM headers never leaves them: one test runs DICOMs carrying a patient's
name, id, birth date and accession number (and more) through every path (upload on the Explain page,
``cxr image info``, ``cxr explain`` with its files, registration, split, statistics, stored
predictions, evaluation, a training run and its checkpoint, logs at DEBUG), then searches everything
written (every file under the workspace and the output folder, decoded where compressed) and
everything printed or shown for each value."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from io_corpus import PHI, dicom_bytes, dicom_dataset
from page_harness import readings_tables, run, run_page
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from streamlit.testing.v1 import AppTest

from cxrcore.cli import main
from cxrcore.data.phantoms import render_phantom

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "demo-tiny.safetensors"
SECRETS = sorted({*PHI.values(), *PHI["PatientName"].split("^"), *PHI["ReferringPhysicianName"].split("^")})
REQUIRED = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber")


def _dicom(seed: int, lesion: bool) -> bytes:
    image, _ = render_phantom(np.random.default_rng(seed), 128, ["Nodule"] if lesion else [])
    return dicom_bytes(dicom_dataset(np.round(image * 4095).astype(np.uint16), bits_stored=12))


def _dataset(root: Path) -> Path:
    """root/{train,valid,test}/{normal,Nodule}/scan-NN.dcm, every file with the planted patient data."""
    seed = 0
    for split in ("train", "valid", "test"):
        for folder, lesion in (("normal", False), ("Nodule", True)):
            for _ in range(2):
                path = root / split / folder / f"scan-{seed:02d}.dcm"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_dicom(seed, lesion))
                seed += 1
    return root


def _texts_of(path: Path) -> list[str]:
    """A file's bytes as text, plus what compression hides: Parquet cells and PNG text chunks."""
    data = path.read_bytes()
    texts = [data.decode("latin-1"), data.decode("utf-16-le", errors="ignore")]
    if data[:4] == b"PAR1":
        texts.append(pd.read_parquet(path).to_csv())
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        with Image.open(path) as im:
            texts.append(repr(im.info) + repr(getattr(im, "text", {})))
    return texts


def find_secrets(folders: list[Path], captured: list[str]) -> dict[str, list[str]]:
    """Where each planted value appears: file paths (relative names) and captured texts (their index)."""
    found: dict[str, list[str]] = {}
    sources = [(f"captured[{i}]", text) for i, text in enumerate(captured)]
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            sources += [(str(path), text) for text in _texts_of(path)]
    for secret in SECRETS:
        where = sorted({name for name, text in sources if secret in text})
        if where:
            found[secret] = where
    return found


def _page_texts(at: AppTest) -> str:
    kinds = ("markdown", "caption", "info", "error", "warning", "success", "text", "json", "code", "title")
    return " ".join(str(element.value) for kind in kinds for element in at.get(kind))


def test_the_search_finds_a_planted_value(tmp_path: Path) -> None:
    """The search below can fail: a value in a file, in a Parquet cell and in a PNG text chunk is found."""
    (tmp_path / "a.log").write_text(f"patient {PHI['PatientID']}")
    pd.DataFrame({"x": [PHI["AccessionNumber"]] * 50}).to_parquet(tmp_path / "b.parquet", compression="gzip")
    image = Image.new("L", (4, 4))
    info = PngInfo()
    info.add_text("who", PHI["PatientName"], zip=True)
    image.save(tmp_path / "c.png", pnginfo=info)
    found = find_secrets([tmp_path], [f"born {PHI['PatientBirthDate']}"])
    assert found[PHI["PatientID"]] == [str(tmp_path / "a.log")]
    assert found[PHI["AccessionNumber"]] == [str(tmp_path / "b.parquet")]
    assert found[PHI["PatientName"]] == [str(tmp_path / "c.png")]
    assert found[PHI["PatientBirthDate"]] == ["captured[0]"]


@pytest.mark.slow  # every path, a short training run included (~30 s on two cores)
def test_planted_patient_data_appears_nowhere(
    workspace_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    assert set(REQUIRED) <= set(PHI) and all(PHI[k] for k in REQUIRED)
    caplog.set_level(logging.DEBUG)
    data = _dataset(tmp_path / "dicoms")
    scan, out = data / "test" / "Nodule" / "scan-10.dcm", tmp_path / "out"
    captured: list[str] = []

    at = run_page("pages/5_Explain.py")  # the upload, held in memory
    at.file_uploader(key="explain_upload").upload("upload.dcm", scan.read_bytes())
    run(at)
    captured.append(_page_texts(at))
    if not readings_tables(at):  # the default model's upload guard asks first (phantoms are not CXRs)
        at.checkbox(key="explain_anyway").check()
        run(at)
    assert len(readings_tables(at)) == 1 and len(at.get("image")) >= 3  # probabilities and maps
    captured.append(_page_texts(at))

    commands = [
        ["image", "info", str(scan), "--json"],
        ["-v", "explain", str(CHECKPOINT), str(scan), "--json", "--out", str(out)],
        ["-v", "data", "register", "phi", "--source", "folder", "--root", str(data)],
        ["-v", "data", "stats", "phi", "--json"],
        ["-v", "predict", str(CHECKPOINT), "--dataset", "phi", "--split", "test", "--json"],
        ["-v", "evaluate", str(CHECKPOINT), "--dataset", "phi", "--split", "test", "--json"],
        ["-v", "train", "--dataset", "phi", "--model", "tiny", "--epochs", "1", "--input-size", "32",
         "--batch-size", "4", "--run-name", "phi-run"],
        ["-v", "checkpoint", "info", str(workspace_home / "runs" / "phi-run" / "last.safetensors"), "--json"],
    ]  # fmt: skip
    for command in commands:
        assert main(command) == 0, command
        result = capsys.readouterr()
        captured += [result.out, result.err]
    captured.append(caplog.text)

    assert (out / "panels" / "scan-10.png").is_file() and (out / "report.pdf").is_file()
    assert list(workspace_home.glob("predictions/*.parquet"))
    assert (workspace_home / "runs" / "phi-run" / "last.safetensors").is_file()
    assert find_secrets([workspace_home, out], captured) == {}
