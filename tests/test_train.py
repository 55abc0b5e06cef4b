"""Training on the phantoms with the tiny model: checkpoints, resume after kill -9, DDP, repurposing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cxrcore.models import load_checkpoint, read_card
from cxrcore.store import Workspace
from cxrcore.train.config import TrainConfig
from cxrcore.train.loop import run_training
from cxrcore.train.progress import LogReporter
from cxrcore.workflows.demo import DEMO_DATASET, DEMO_MODELS, train_demo_models

ROOT = Path(__file__).resolve().parents[1]
TINY = {"dataset": DEMO_DATASET, "model": "tiny", "input_size": 64, "batch_size": 8, "lr": 3e-3}


@pytest.fixture
def ws(demo_ws: Workspace) -> Workspace:
    return demo_ws


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _assert_same_weights(a: Path, b: Path, atol: float) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
    assert worst <= atol, f"largest weight difference {worst}"


def test_training_writes_best_and_last_checkpoints_with_a_model_card(ws: Workspace) -> None:
    cfg = TrainConfig(**TINY, epochs=2, max_steps_per_epoch=4, run_name="card")
    result = run_training(cfg, ws, LogReporter())
    assert result.epochs_completed == 2 and len(result.history) == 2
    assert result.best_checkpoint == ws.home / "runs" / "card" / "best.safetensors"
    card = read_card(result.last_checkpoint)
    assert card.labels == ("Nodule", "Opacity", "Effusion") and card.task == "classify"
    assert card.dataset.fingerprint == ws.get_dataset(DEMO_DATASET).fingerprint
    assert card.dataset.split_seed == 0
    assert [h["epoch"] for h in card.history] == [1, 2]
    assert 0.0 <= card.metrics["val_auroc"] <= 1.0
    assert card.input_size == card.preprocess.input_size == 64 and card.norm_images > 0
    assert card.training_config["input_size"] == 64
    stored = json.loads((result.last_checkpoint.with_suffix(".json")).read_text())
    assert stored["format_version"] == 2 and "input_size" not in stored["preprocess"]
    model = load_checkpoint(result.last_checkpoint).model
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 3)


def _launch(cfg: TrainConfig, home: Path, *extra: str) -> subprocess.Popen:
    path = home / f"{cfg.run_name}.json"
    path.write_text(json.dumps(cfg.to_dict()))
    env = {**os.environ, "CXR_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "cxrcore.train", "--config", str(path), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow  # kills a training process and resumes it
def test_run_killed_with_sigkill_resumes_to_the_same_weights(ws: Workspace) -> None:
    settings = {**TINY, "epochs": 3, "max_steps_per_epoch": 6, "workers": 0, "seed": 7}
    whole = run_training(TrainConfig(**settings, run_name="whole"), ws, LogReporter())
    cfg = TrainConfig(**settings, run_name="killed")
    proc = _launch(cfg, ws.home)
    state = ws.home / "runs" / "killed" / "resume.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # mid-run: after epoch 1 was saved
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    done = torch.load(state, weights_only=True)["epoch"]
    assert 1 <= done < 3
    resumed = _launch(cfg, ws.home, "--resume")
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read() if resumed.stderr else ""
    _assert_same_weights(whole.last_checkpoint, ws.home / "runs" / "killed" / "last.safetensors", atol=1e-6)


@pytest.mark.slow  # DDP: two torchrun processes and a reference run
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(ws: Workspace) -> None:
    settings = {
        **TINY,
        "epochs": 1,
        "max_steps_per_epoch": 3,
        "augment": False,
        "seed": 3,
        "schedule": "none",
    }
    single = run_training(TrainConfig(**settings, run_name="single"), ws, LogReporter())
    cfg = TrainConfig(**settings, run_name="ddp")
    path = ws.home / "ddp.json"
    path.write_text(json.dumps(cfg.to_dict()))
    env = {**os.environ, "CXR_HOME": str(ws.home), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            "29533",
            "-m",
            "cxrcore.train",
            "--config",
            str(path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_weights(single.last_checkpoint, ws.home / "runs" / "ddp" / "last.safetensors", atol=1e-5)


def test_repurposing_keeps_the_backbone_and_replaces_the_head(ws: Workspace) -> None:
    proxy = run_training(
        TrainConfig(**TINY, epochs=1, max_steps_per_epoch=3, label_mode="any", run_name="proxy"),
        ws,
        LogReporter(),
    )
    assert read_card(proxy.last_checkpoint).labels == ("Any finding",)
    source = load_checkpoint(proxy.last_checkpoint).model
    target = run_training(
        TrainConfig(
            **{**TINY, "input_size": 96},  # a new input size: the card must carry it once, everywhere
            epochs=1,
            max_steps_per_epoch=3,
            init=str(proxy.last_checkpoint),
            freeze_backbone=True,
            run_name="target",
        ),
        ws,
        LogReporter(),
    )
    loaded = load_checkpoint(target.last_checkpoint)
    model = loaded.model
    assert model.labels == ("Nodule", "Opacity", "Effusion")
    assert loaded.input_size == loaded.preprocess.input_size == 96 != source.spec.input_size
    frozen = dict(source.named_parameters())
    backbone_names = {
        n for n, p in model.named_parameters() if any(p is q for q in model.backbone_parameters())
    }
    assert backbone_names
    for name in backbone_names:
        assert torch.equal(dict(model.named_parameters())[name], frozen[name]), name


def test_config_rejects_unknown_settings_and_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid options: adamw, sgd"):
        TrainConfig(dataset="x", optimizer="adam")
    with pytest.raises(ValueError, match="unknown training setting"):
        TrainConfig.from_dict({"dataset": "x", "learning_rate": 1})
    toml = tmp_path / "run.toml"
    toml.write_text('[train]\ndataset = "demo"\nmodel = "tiny"\nepochs = 4\nlabels = ["Nodule"]\n')
    cfg = TrainConfig.from_file(toml, epochs=2)
    assert (cfg.model, cfg.epochs, cfg.labels) == ("tiny", 2, ("Nodule",))


def test_demo_models_are_named_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    names = [name for name, _ in DEMO_MODELS]
    assert names == ["demo-resnet18", "demo-tiny", "demo-localiser", "demo-localiser-b"]
    for name, settings in DEMO_MODELS:  # every demo model ships, and its card names the command that made it
        card = read_card(ROOT / "checkpoints" / f"{name}.safetensors")
        assert card.how_made["command"] in (
            "python -m cxrcore demo models",
            f"python -m cxrcore demo models --only {name}",
        )
        made = card.training_config
        assert made["run_name"] == name and made["seed"] == settings["seed"]
        assert (made["model"], made["epochs"]) == (settings["model"], settings["epochs"])
    with pytest.raises(ValueError, match=r"unknown demo model.*demo-resnet50.*valid options: demo-resnet18"):
        train_demo_models(Workspace(tmp_path / "ws"), tmp_path / "out", only=("demo-resnet50",))
    assert not (tmp_path / "out").exists()
