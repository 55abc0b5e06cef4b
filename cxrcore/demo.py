"""The synthetic demo: phantom images registered as a dataset, so every page has content offline.

Everything here is synthetic and is labelled so wherever it appears (dataset name, notes, source).
"""

from __future__ import annotations

from collections.abc import Callable

from cxrcore.data.adapters import load_source
from cxrcore.data.phantoms import write_phantom_dataset
from cxrcore.data.split import patient_split
from cxrcore.store import DatasetRecord, Workspace, WorkspaceError

DEMO_DATASET = "demo-phantoms"
DEMO_IMAGES = 240
DEMO_SIZE = 256
DEMO_SEED = 0
SYNTHETIC_SOURCE = "synthetic phantom"


def prepare_demo(ws: Workspace, progress: Callable[[str], None] | None = None) -> DatasetRecord:
    """Generate the phantom images and register them with a patient-level split; reuse them if present."""
    say = progress or (lambda _msg: None)
    try:
        return ws.get_dataset(DEMO_DATASET)
    except WorkspaceError:
        pass
    root = ws.home / "demo" / "phantoms"
    if not (root / "labels.csv").exists():
        say(f"generating {DEMO_IMAGES} synthetic phantom images in {root} ...")
        write_phantom_dataset(root, n_images=DEMO_IMAGES, size=DEMO_SIZE, seed=DEMO_SEED)
    dataset = load_source("csv", csv_path=str(root / "labels.csv"), boxes_csv=str(root / "boxes.csv"))
    dataset.index["source"] = SYNTHETIC_SOURCE
    dataset.index = patient_split(dataset.index, (0.7, 0.1, 0.2), seed=DEMO_SEED)
    dataset.notes.update(synthetic=True, description="synthetic chest-X-ray-like phantoms, not real patients")
    arguments = {"csv_path": str(root / "labels.csv"), "boxes_csv": str(root / "boxes.csv")}
    say("registering the demo dataset ...")
    ws.register_dataset(DEMO_DATASET, "csv", arguments, dataset)
    return ws.save_split(
        DEMO_DATASET, dataset.index, fractions=[0.7, 0.1, 0.2], seed=DEMO_SEED, stratified=True
    )
