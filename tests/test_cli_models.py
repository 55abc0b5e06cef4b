from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxrcore.cli import main
from cxrcore.models import create_model, save_checkpoint
from cxrcore.store import Workspace
from cxrcore.workflows.demo import DEMO_DATASET


def test_models_list_json_has_every_entry(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"densenet121", "resnet18", "custom_cnn", "tiny", "vgg16_bn"} <= set(rows)
    assert rows["tiny"]["input_size"] == 64 and rows["densenet121"]["pooling"] == "avg"


def test_checkpoint_info_reads_the_card(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = create_model("tiny", labels=["A", "B"])
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"history": [{"epoch": 1}]})
    assert main(["checkpoint", "info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "tiny" and info["labels"] == ["A", "B"]
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    assert main(["checkpoint", "info", str(tmp_path / "bad.safetensors")]) == 2


def test_data_merge_on_the_proxy_task(demo_ws: Workspace, capsys: pytest.CaptureFixture) -> None:
    ws = demo_ws  # the session's demo workspace, copied: generating the phantoms again takes seconds
    index = ws.load_dataset(DEMO_DATASET).index
    other = ws.load_dataset(DEMO_DATASET)
    other.index = index.iloc[:40].drop(columns=["Opacity", "Effusion"])
    other.boxes = other.boxes.iloc[:0]
    ws.register_dataset("nodules-only", "csv", {}, other)
    assert main(["data", "merge", "pre", "--from", f"{DEMO_DATASET},nodules-only", "--proxy"]) == 0
    record = ws.get_dataset("pre")
    assert record.labels == ["Abnormal"] and record.n_images == len(index) + 40
    assert record.split["seed"] == 0 and sum(record.split["counts"].values()) == record.n_images
