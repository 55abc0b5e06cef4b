"""Train the real-data models behind the Results tables, and write the bundled real-data checkpoint.

Run: CXR_DATA_DIR=../shared/data .venv/bin/python bench/real_experiments.py [--only RUN,...] [--force]
     [--no-bundle]

Every step is a ``python -m cxrcore`` command from ``cxrcore/workflows/realdata.py``: register the
sources and merge them, then train each run in its own process (a run whose best checkpoint exists is
kept unless ``--force``), then write ``checkpoints/real-densenet121.safetensors`` and
``checkpoints/real-densenet121-256.safetensors`` (float16, with their upload guards) whose model cards
hold the commands, the data fingerprint, the split seed, the training time, the hardware and the
test-split figures of ``python -m cxrcore evaluate ... --by source``. The workspace is ``$CXR_HOME``
(``make`` sets it to ./workspace). About two hours on 2 CPU cores. Prints one JSON object: seconds per
run and the bundled files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxrcore.models.card import read_card
from cxrcore.store import Workspace
from cxrcore.workflows.bundle import bundle_checkpoint, hardware
from cxrcore.workflows.realdata import (
    BUNDLED_RUNS,
    CALIBRATE_COMMAND,
    REAL_DATASET,
    REGISTER_COMMANDS,
    TRAIN_COMMANDS,
    command_argv,
    real_data_dir,
    register_real_datasets,
)

ROOT = Path(__file__).resolve().parents[1]


def train(runs: list[tuple[str, str]], ws: Workspace, data: Path, force: bool) -> dict[str, float | str]:
    """Run each training command in its own process; returns seconds per run (or 'kept')."""
    done: dict[str, float | str] = {}
    for run, command in runs:
        best = ws.home / "runs" / run / "best.safetensors"
        if best.is_file() and not force:
            done[run] = "kept"
            continue
        argv = command_argv(command, data, ws.home)
        print(f"python -m cxrcore {command}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cxrcore", *argv], check=True, cwd=ROOT)
        done[run] = round(time.perf_counter() - started, 1)
    return done


def bundle(ws: Workspace, run: str) -> Path:
    """Write one bundled real-data checkpoint with how it was made and its test figures."""
    source = ws.home / "runs" / run / "best.safetensors"
    card = read_card(source)
    command = dict(TRAIN_COMMANDS)[run]
    calibrate = CALIBRATE_COMMAND.replace("real-densenet121.safetensors", f"{run}.safetensors")
    record = ws.get_dataset(REAL_DATASET)
    how_made = {
        "commands": [f"python -m cxrcore {c}" for c in (*REGISTER_COMMANDS, command, calibrate)],
        "recipe": "bench/real_experiments.py",
        "data": "real public chest X-rays of $CXR_DATA_DIR: 524 NIH ChestX-ray14 images, 149 paediatric "
        "pneumonia images (Kermany), 400 TBX11K tuberculosis images; patient-level split 70/10/20",
        "data_fingerprint": record.fingerprint,
        "split_seed": 0,
        "train_seconds": round(sum(float(h.get("seconds", 0.0)) for h in card.history), 1),
        "best_epoch": card.epoch,
        "hardware": hardware(),
    }
    evaluate_on = {"workspace": ws, "dataset": REAL_DATASET, "split": "test", "by": "source"}
    return bundle_checkpoint(
        source, ROOT / "checkpoints" / f"{run}.safetensors", how_made, evaluate_on=evaluate_on
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated run names to train (default: all)")
    parser.add_argument("--force", action="store_true", help="train again runs that have a checkpoint")
    parser.add_argument("--no-bundle", action="store_true", help="do not write the bundled checkpoint")
    args = parser.parse_args()
    data = real_data_dir()
    if data is None:
        print(json.dumps({"skipped": "CXR_DATA_DIR not set to the real data folder"}))
        return 0
    ws = Workspace()
    register_real_datasets(data, say=lambda line: print(line, file=sys.stderr, flush=True), report=print)
    wanted = set(args.only.split(",")) if args.only else None
    runs = [(r, c) for r, c in TRAIN_COMMANDS if wanted is None or r in wanted]
    result: dict[str, object] = {"runs": train(runs, ws, data, args.force)}
    if not args.no_bundle:
        # in order: the 256 px run starts from the bundled 128 px file
        result["bundled"] = [str(bundle(ws, run).relative_to(ROOT)) for run in BUNDLED_RUNS]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
