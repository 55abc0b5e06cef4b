"""A pickle that runs code when loaded (it writes a marker file) is refused on every path that reads
weights: foreign-weight import from a file or an upload (the Models page), checkpoints, and resuming a
run. The payload is shown to work when unpickled the unsafe way, in a separate process."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from page_harness import run, run_page

from cxrcore.cli import main
from cxrcore.models import CheckpointError, import_state_dict, load_checkpoint
from cxrcore.models.external import import_weights_file, read_weights_bytes
from cxrcore.store import Workspace
from cxrcore.workflows.demo import DEMO_DATASET

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Pickled, it becomes a call of ``exec`` that writes ``marker``: code run by merely loading."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran on load')",)


def evil_files(folder: Path, marker: Path) -> dict[str, bytes]:
    """The payload as a raw pickle and inside PyTorch's zip format, beside a real state dict."""
    zipped = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": Payload(marker)}, zipped)
    files = {
        "evil.pkl": pickle.dumps({"w": torch.zeros(2), "x": Payload(marker)}),
        "evil.pth": zipped.getvalue(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


@pytest.mark.slow
def test_the_payload_is_real_when_unpickled_the_unsafe_way(tmp_path: Path) -> None:
    marker = tmp_path / "proof" / "ran"
    marker.parent.mkdir()
    files = evil_files(tmp_path / "files", marker)
    for name, loader in (("evil.pkl", "pickle.load(f)"), ("evil.pth", "torch.load(f, weights_only=False)")):
        marker.unlink(missing_ok=True)
        code = (
            f"import pickle, torch\nwith open({str(tmp_path / 'files' / name)!r}, 'rb') as f:\n    {loader}"
        )
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
        assert marker.read_text() == "code ran on load", name
    assert set(files) == {"evil.pkl", "evil.pth"}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # PyTorch's note on the raw pickle
def test_import_refuses_the_payload_from_files_and_uploads(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    files = evil_files(tmp_path / "files", marker)
    for name, data in files.items():
        with pytest.raises(CheckpointError, match=r"refused to load .*weights_only=True"):
            import_state_dict(tmp_path / "files" / name)
        with pytest.raises(CheckpointError, match=r"refused to load .*weights_only=True"):
            read_weights_bytes(name, data)
        with pytest.raises(CheckpointError, match=r"refused to load"):
            import_weights_file(name, data, tmp_path / "imported")
        renamed = tmp_path / "files" / f"{name}.safetensors"  # passed off as our format
        renamed.write_bytes(data)
        with pytest.raises(CheckpointError, match="is not a readable safetensors file"):
            load_checkpoint(renamed)
        with pytest.raises(CheckpointError, match="is not a readable safetensors file"):
            import_state_dict(renamed)
    assert not marker.exists() and not (tmp_path / "imported").exists()


def test_the_models_page_refuses_an_uploaded_payload(workspace_home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    files = evil_files(tmp_path / "files", marker)
    at = run_page("pages/6_Models.py")
    at.file_uploader(key="import_file").upload("chexnet.pth", files["evil.pth"])
    at.button[[b.label for b in at.button].index("Import")].click()
    run(at, expect_error="refused to load 'chexnet.pth'")
    assert not marker.exists() and not (workspace_home / "runs" / "imported").exists()


@pytest.mark.slow
def test_resuming_from_a_planted_resume_file_is_refused(demo_ws: Workspace, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil_files(tmp_path / "files", marker)
    run_dir = demo_ws.home / "runs" / "planted"
    assert main(["train", "--dataset", DEMO_DATASET, "--model", "tiny", "--epochs", "1", "--input-size", "32",
                 "--steps-per-epoch", "2", "--run-name", "planted"]) == 0  # fmt: skip
    for name in ("evil.pth", "evil.pkl"):
        shutil.copy(tmp_path / "files" / name, run_dir / "resume.pt")
        command = ["train", "--resume", "planted", "--epochs", "2"]
        result = subprocess.run(
            [sys.executable, "-m", "cxrcore", *command],
            cwd=ROOT,
            env={**os.environ, "CXR_HOME": str(demo_ws.home), "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert result.returncode == 2, result.stderr
        assert f"error: cannot resume from {run_dir / 'resume.pt'}: only tensors" in result.stderr
        assert "Traceback" not in result.stderr
    assert not marker.exists()
