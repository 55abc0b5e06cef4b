"""Shared fixtures: the real-data folder (skipped without it), a throwaway workspace, tiny images."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

if TYPE_CHECKING:
    from cxrcore.store import Workspace

# Tests load only the models they use: no start-up warm-up in AppTest runs nor in the servers they start
# (a test of the warm-up sets it back on for its own server).
os.environ["CXR_WARMUP_S"] = "off"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep ``-m "not slow"`` quick: a test that needs ``trained_home`` (two trainings) must be slow."""
    unmarked = [
        item.nodeid
        for item in items
        if "trained_home" in getattr(item, "fixturenames", ()) and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        raise pytest.UsageError(f"tests that use trained_home without @pytest.mark.slow: {unmarked}")


@pytest.fixture
def data_dir() -> Path:
    """The real chest X-ray folder from CXR_DATA_DIR; the test is skipped without it."""
    value = os.environ.get("CXR_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.skip("CXR_DATA_DIR is not set to the real data folder")
    return Path(value)


@pytest.fixture
def workspace_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh CXR_HOME for the test."""
    home = tmp_path / "workspace"
    monkeypatch.setenv("CXR_HOME", str(home))
    return home


def write_png(path: Path, size: tuple[int, int] = (64, 64), value: int | None = None, seed: int = 0) -> Path:
    """Write an 8-bit grey PNG (random content unless a constant value is given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    if value is None:
        pixels = np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)
    else:
        pixels = np.full((h, w), value, dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path)
    return path


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prepared demo workspace per test session (generating it takes a few seconds)."""
    from cxrcore.store import Workspace
    from cxrcore.workflows.demo import prepare_demo

    home = tmp_path_factory.mktemp("demo") / "workspace"
    prepare_demo(Workspace(home))
    return home


@pytest.fixture
def demo_ws(demo_home: Path, workspace_home: Path) -> Iterator[Workspace]:
    """A fresh copy of the demo workspace as CXR_HOME; job processes still alive at the end are killed."""
    from cxrcore.store import Workspace
    from cxrcore.train import jobs

    shutil.copytree(demo_home, workspace_home)
    workspace = Workspace()
    yield workspace
    for job in jobs.list_jobs(workspace):
        if job.pid and jobs.process_alive(job.pid):
            os.killpg(job.pid, signal.SIGKILL)
    jobs.reconcile(workspace)  # reaps them


@pytest.fixture(scope="session")
def trained_home(demo_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo workspace plus two small models trained on it (tiny and resnet18 at 64 px, 2 epochs)."""
    from cxrcore.store import Workspace
    from cxrcore.train.config import TrainConfig
    from cxrcore.train.loop import run_training
    from cxrcore.train.progress import LogReporter

    home = tmp_path_factory.mktemp("trained") / "workspace"
    shutil.copytree(demo_home, home)
    ws = Workspace(home)
    for model, lr in (("tiny", 3e-3), ("resnet18", 1e-3)):
        cfg = TrainConfig(
            dataset="demo-phantoms",
            model=model,
            input_size=64,
            batch_size=16,
            lr=lr,
            epochs=2,
            run_name=model,
        )
        run_training(cfg, ws, LogReporter())
    return home


@pytest.fixture
def trained_ws(trained_home: Path, workspace_home: Path) -> Workspace:
    """A fresh copy of the trained demo workspace as CXR_HOME."""
    from cxrcore.store import Workspace

    shutil.copytree(trained_home, workspace_home)
    return Workspace()


DETECTOR_CLASSES = ("Effusion", "Nodule", "Opacity")  # the demo phantoms' box labels, sorted


def save_detector(
    home: Path, name: str = "det", input_size: int = 96, classes: tuple[str, ...] = DETECTOR_CLASSES
) -> Path:
    """An untrained Faster R-CNN (small input) saved as a workspace run, with a card as training writes it.

    Its boxes are real network outputs of random weights: enough to draw, list and filter them.
    """
    import torch

    from cxrcore.models import create_model, save_checkpoint
    from cxrcore.models.detector_names import BOX_FORMAT

    torch.manual_seed(0)
    model = create_model("faster_rcnn_resnet18", labels=list(classes), input_size=input_size)
    ap = dict(zip(classes, (0.25, 0.1, 0.4, 0.3), strict=False))
    record = {"epoch": 1, "train_loss": 1.5, "val_map50": 0.25, "val_ap50_per_label": ap, "val_auroc": 0.6}
    card = {
        "task": "detect",
        "dataset": {"name": "demo-phantoms", "synthetic": True},
        "history": [record],
        "epoch": 1,
        "selected_by": "val_map50",
        "metrics": {**record, "val_auroc_per_label": dict.fromkeys(classes, 0.6)},
        "detector": {
            "kind": "faster_rcnn",
            "backbone": "resnet18",
            "classes": list(classes),
            "box_format": BOX_FORMAT,
            "input_size": input_size,
            "training": "complete",
            "init": "random",
            "augment": True,
            "train_images": 180,
            "train_boxes": 211,
            "seconds": 42.0,
        },
    }
    return save_checkpoint(home / "runs" / name / "best", model, card)
