"""The synthetic demo: phantom images registered as a dataset, so every page has content offline.

Everything here is synthetic and is labelled so wherever it appears (dataset name, notes, source).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cxrcore.data.adapters import load_source
from cxrcore.data.phantoms import render_phantom, write_phantom_dataset
from cxrcore.data.split import patient_split
from cxrcore.store import DatasetRecord, Workspace, WorkspaceError

DEMO_DATASET = "demo-phantoms"
DEMO_IMAGES = 240
DEMO_SIZE = 256
DEMO_SEED = 0
SYNTHETIC_SOURCE = "synthetic phantom"


SAMPLE_FINDINGS = (("Nodule",), ("Effusion",), ("Opacity",), ())


def sample_phantom_png(seed: int, size: int = DEMO_SIZE) -> tuple[str, bytes]:
    """A synthetic phantom as PNG bytes, for trying the dashboard without a file; (file name, bytes)."""
    findings = SAMPLE_FINDINGS[seed % len(SAMPLE_FINDINGS)]
    image, _ = render_phantom(np.random.default_rng(10_000 + seed), size, findings)
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, format="PNG")
    what = "-".join(f.lower() for f in findings) or "no-finding"
    return f"synthetic-phantom-{seed}-{what}.png", buffer.getvalue()


def register_phantoms(
    ws: Workspace,
    name: str,
    n_images: int,
    seed: int,
    fractions: tuple[float, float, float],
    say: Callable[[str], None] | None = None,
) -> DatasetRecord:
    """Generate phantoms under ``$CXR_HOME/demo/<name>`` and register them with a patient-level split.

    Reuses the registered dataset, or the generated images, when present.
    """
    say = say or (lambda _msg: None)
    try:
        return ws.get_dataset(name)
    except WorkspaceError:
        pass
    root = ws.home / "demo" / ("phantoms" if name == DEMO_DATASET else name)
    if not (root / "labels.csv").exists():
        say(f"generating {n_images} synthetic phantom images in {root} ...")
        write_phantom_dataset(root, n_images=n_images, size=DEMO_SIZE, seed=seed)
    dataset = load_source("csv", csv_path=str(root / "labels.csv"), boxes_csv=str(root / "boxes.csv"))
    dataset.index["source"] = SYNTHETIC_SOURCE
    dataset.index = patient_split(dataset.index, fractions, seed=seed)
    dataset.notes.update(synthetic=True, description="synthetic chest-X-ray-like phantoms, not real patients")
    arguments = {"csv_path": str(root / "labels.csv"), "boxes_csv": str(root / "boxes.csv")}
    say(f"registering {name} ...")
    ws.register_dataset(name, "csv", arguments, dataset)
    return ws.save_split(name, dataset.index, fractions=list(fractions), seed=seed, stratified=True)


def prepare_demo(ws: Workspace, progress: Callable[[str], None] | None = None) -> DatasetRecord:
    """Generate the demo phantoms and register them with a patient-level split; reuse them if present."""
    return register_phantoms(ws, DEMO_DATASET, DEMO_IMAGES, DEMO_SEED, (0.7, 0.1, 0.2), progress)


# The bundled demo models: trained by `python -m cxrcore demo models` on their own 2,400 phantoms
# (another seed than the demo dataset, so every demo image is new to them).
DEMO_TRAIN_DATASET = "demo-phantoms-train"
DEMO_TRAIN_IMAGES = 2400
DEMO_TRAIN_SEED = 1
DEMO_MODELS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("demo-resnet18", {"model": "resnet18", "input_size": 64, "epochs": 8, "lr": 3e-3, "seed": 0}),
    ("demo-tiny", {"model": "tiny", "input_size": 64, "epochs": 25, "lr": 3e-3, "seed": 0}),
    # Fine maps for the Explain page and the localisation benchmark (16x16 cells at 128 px); the same
    # recipe with the next seed, so the two make an ensemble whose mean map is steadier than either.
    ("demo-localiser", {"model": "localiser", "input_size": 128, "epochs": 12, "lr": 3e-3, "seed": 0}),
    ("demo-localiser-b", {"model": "localiser", "input_size": 128, "epochs": 12, "lr": 3e-3, "seed": 1}),
)


def train_demo_models(
    ws: Workspace, out_dir: str | Path, reporter: Any = None, only: tuple[str, ...] = ()
) -> list[Path]:
    """Train the demo models (those named in ``only``, or all) and write them to ``out_dir``.

    Each is written with its card, weights and upload guard.
    """
    unknown = sorted(set(only) - {name for name, _ in DEMO_MODELS})
    if unknown:
        valid = ", ".join(name for name, _ in DEMO_MODELS)
        raise ValueError(f"unknown demo model(s) {', '.join(unknown)}; valid options: {valid}")
    from cxrcore.train.config import TrainConfig
    from cxrcore.train.loop import run_training
    from cxrcore.train.progress import LogReporter
    from cxrcore.workflows.bundle import bundle_checkpoint, hardware

    register_phantoms(ws, DEMO_TRAIN_DATASET, DEMO_TRAIN_IMAGES, DEMO_TRAIN_SEED, (0.8, 0.1, 0.1))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, settings in DEMO_MODELS:
        if only and name not in only:
            continue
        started = time.perf_counter()
        cfg = TrainConfig(dataset=DEMO_TRAIN_DATASET, run_name=name, batch_size=32, workers=1, **settings)
        result = run_training(cfg, ws, reporter or LogReporter())
        how_made = {
            "command": f"python -m cxrcore demo models --only {name}",
            "seconds": round(time.perf_counter() - started, 1),
            "hardware": hardware(),
            "data": f"{DEMO_TRAIN_IMAGES} synthetic phantoms (seed {DEMO_TRAIN_SEED}), not real patients",
        }
        target = bundle_checkpoint(
            result.best_checkpoint,
            out_dir / f"{name}.safetensors",
            how_made,
            # Calibrated on the models' own validation phantoms, scored on their test phantoms.
            evaluate_on={"workspace": ws, "dataset": DEMO_TRAIN_DATASET, "split": "test"},
        )
        written.append(target)
    return written
