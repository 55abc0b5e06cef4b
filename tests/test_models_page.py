"""Home and Models pages (AppTest), model import and deletion, and ONNX export checked with onnxruntime."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from page_harness import run, run_page

from cxrcore.models import create_model, load_checkpoint
from cxrcore.models.catalog import delete_checkpoint, list_checkpoints
from cxrcore.models.checkpoint import CheckpointError
from cxrcore.models.export import export_onnx
from cxrcore.store import Workspace

# Every test here uses trained_home: two models trained once per session (~11 s), then copied per test.
pytestmark = pytest.mark.slow


@pytest.fixture
def ws(trained_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("CXR_CHECKPOINTS", str(tmp_path / "no-bundled"))
    return trained_ws


def test_home_shows_the_loaded_model_datasets_and_the_notice(ws: Workspace) -> None:
    at = run_page("Home.py")
    assert any("not a medical device" in w.value for w in at.warning)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Labels"] == "3" and metrics["Architecture"] in ("tiny", "resnet18")
    assert list(at.dataframe[0].value["name"]) == ["demo-phantoms"]
    assert at.button(key="home_phantom").label.startswith("No file at hand")


def test_models_page_lists_cards_and_deletes_with_confirmation(ws: Workspace) -> None:
    at = run_page("pages/6_Models.py")
    table = at.dataframe[0].value
    assert len(table) == 4  # best and last of two runs
    assert set(table["trained on"]) == {"synthetic phantoms"}
    assert len(at.get("plotly_chart")) == 1  # the history plot
    # Calibrated when training ended: the method, the rule and where they were fitted.
    readout = next(m.value for m in at.markdown if m.value.startswith("**Calibration:**"))
    assert "Platt scaling" in readout and "Youden" in readout and "demo-phantoms/valid" in readout
    delete = at.button(key="delete_button")
    assert delete.disabled  # nothing is deleted without the confirmation
    before = len(list_checkpoints(ws.home))
    at.checkbox(key="delete_sure").check()
    run(at)
    at.button(key="delete_button").click()
    run(at)
    assert len(list_checkpoints(ws.home)) == before - 1


def test_import_of_a_foreign_state_dict_makes_a_checkpoint(ws: Workspace) -> None:
    from cxrcore.models.external import import_weights_file

    net = create_model("densenet121", labels=[f"L{i}" for i in range(3)], in_chans=3).net
    buffer = io.BytesIO()
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, buffer)
    path = import_weights_file(
        "chexnet-like.pth.tar", buffer.getvalue(), ws.home / "runs" / "imported", labels=["A", "B", "C"]
    )
    loaded = load_checkpoint(path)
    assert loaded.labels == ("A", "B", "C") and loaded.card.imported_from == "chexnet-like.pth.tar"
    assert any(e.path == path.resolve() for e in list_checkpoints(ws.home))


def test_bundled_checkpoints_cannot_be_deleted(ws: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="bundled checkpoints are kept"):
        delete_checkpoint(outside, ws.home)
    assert outside.exists()


def test_onnx_export_gives_the_same_logits(ws: Workspace) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = load_checkpoint(ws.home / "runs" / "tiny" / "best.safetensors").model
    data = export_onnx(model)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 1, 64, 64)).astype(np.float32)
    (onnx_logits,) = session.run(["logits"], {"image": x})
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(onnx_logits, expected, atol=1e-4)
