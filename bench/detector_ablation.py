"""The RSNA Mask R-CNN work's ablation, re-run on the real boxes at a CPU budget: head only against
complete training, a classifier-initialised against a random trunk, augmentation on against off.

Run: CXR_DATA_DIR=../shared/data .venv/bin/python bench/detector_ablation.py \
        [--epochs 2] [--steps 100] [--input-size 192] [--only NAME,...]

Four Faster R-CNN runs on DenseNet-121 (the bundled detector's recipe, ``DETECT_TRAIN``, at a smaller
budget so the four fit together on 2 CPU cores), each trained by ``python -m cxrcore train --task detect``
in the workspace ``$CXR_HOME`` (the recipe's datasets are registered when missing) and scored on the
test split of ``cxr-detect`` at the 0.5 score threshold, with a 95% interval of mAP@0.5 (images
resampled). The four share seed, data, steps and learning rate; only the named setting changes:

- ``head-only``: trunk from ``real-densenet121``, frozen; augmentation on (the bundled recipe's choice);
- ``complete``: trunk from ``real-densenet121``, trained too;
- ``random-trunk``: a random trunk, trained (a frozen random trunk would learn nothing);
- ``no-augment``: as ``head-only`` without augmentation.

Prints one JSON object: per run, its settings, training seconds and the overall test figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from real_detector import SHOWN, bootstrap_map50

from cxrcore.evaluate.detection_report import OVERALL
from cxrcore.evaluate.detector_eval import evaluate_detector
from cxrcore.store import Workspace
from cxrcore.workflows.realdata import DETECT_DATASET, real_data_dir, register_real_datasets

ROOT = Path(__file__).resolve().parents[1]
CLASSIFIER = "checkpoints/real-densenet121.safetensors"
RUNS = {
    "head-only": ["--init", CLASSIFIER, "--freeze-backbone"],
    "complete": ["--init", CLASSIFIER],
    "random-trunk": [],
    "no-augment": ["--init", CLASSIFIER, "--freeze-backbone", "--no-augment"],
}


def train(name: str, extra: list[str], args: argparse.Namespace) -> float:
    """Train one run in its own process; its seconds."""
    command = [
        *("train", "--task", "detect", "--dataset", DETECT_DATASET, "--model", "faster_rcnn_densenet121"),
        *("--input-size", str(args.input_size), "--epochs", str(args.epochs)),
        *("--steps-per-epoch", str(args.steps), "--batch-size", "4", "--lr", "5e-4", "--seed", "0"),
        *("--run-name", f"ablation-{name}", *extra),
    ]
    print("python -m cxrcore " + " ".join(command), file=sys.stderr, flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cxrcore", *command], check=True, cwd=ROOT)
    return round(time.perf_counter() - started, 1)


def score(ws: Workspace, name: str) -> dict:
    """The overall test figures of one run's best checkpoint at the 0.5 score threshold."""
    path = ws.home / "runs" / f"ablation-{name}" / "best.safetensors"
    result = evaluate_detector(path, ws, DETECT_DATASET, "test", score_threshold=0.5)
    ids = list(result.stored.image_ids)
    classes = list(result.report.index[:-1])
    truth = ws.load_dataset(DETECT_DATASET).boxes
    truth = truth[truth["image_id"].isin(ids) & truth["label"].isin(classes)]
    overall = result.report.loc[OVERALL]
    return {
        **{k: round(float(overall[k]), 4) for k in SHOWN if k in overall},
        "mAP@0.5_ci95": bootstrap_map50(result.stored.table, truth, ids),
        "image_auroc_macro": round(float(result.image_level["auroc"].mean()), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--input-size", type=int, default=192)
    parser.add_argument("--only", help="comma-separated run names (default: all four)")
    args = parser.parse_args()
    if real_data_dir() is None:
        print(json.dumps({"skipped": "CXR_DATA_DIR is not set to the real data folder"}))
        return 0
    ws = Workspace()
    if DETECT_DATASET not in {r.name for r in ws.list_datasets()}:
        register_real_datasets()
    wanted = args.only.split(",") if args.only else list(RUNS)
    out: dict = {
        "budget": {"epochs": args.epochs, "steps": args.steps, "batch": 4, "input_size": args.input_size}
    }
    for name in wanted:
        seconds = train(name, RUNS[name], args)
        out[name] = {"settings": RUNS[name], "train_seconds": seconds, "test": score(ws, name)}
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
