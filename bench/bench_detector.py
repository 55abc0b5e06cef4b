"""Lesion detector on phantoms: mAP@0.5 on fresh phantoms within 10 minutes of training; latency; throughput.

Run: .venv/bin/python bench/bench_detector.py [--minutes 10] [--images 600] [--size 192] [--skip-throughput]

Trains ``faster_rcnn_resnet18`` (random initialisation, 192 px input, constant lr 3e-4) on phantoms of
seed 1 (their lesions' boxes are known) in epochs of 60 steps, stops before an epoch would end past the
time budget, and scores the best checkpoint (by validation
mAP@0.5) on 200 fresh phantoms of seed 2 with the engine's detection metrics. Then times ``detect`` on one
image at the input size (median of 20) and the training throughput of each backbone (images per second
over 6 steps of batch 4 after one warm-up step). Target: mAP@0.5 >= 0.5 on the fresh phantoms. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from cxrcore.evaluate.detect_predict import detect_split
from cxrcore.evaluate.localisation import average_precision
from cxrcore.io.reader import read_image
from cxrcore.models import create_model, load_checkpoint
from cxrcore.models.detection import detect
from cxrcore.models.detector_names import DETECTOR_BACKBONES, detector_name
from cxrcore.store import Workspace
from cxrcore.train.config import TrainConfig
from cxrcore.train.detect_loop import DetectTrainer, build_box_data
from cxrcore.train.progress import LogReporter
from cxrcore.workflows.demo import register_phantoms

TARGET_MAP50 = 0.5


class Budget(LogReporter):
    """Stops the run after the last epoch that can finish (validation included) within the time budget."""

    def __init__(self, seconds: float) -> None:
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + seconds
        self.last = self.t0
        self.over = False

    def epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        now = time.perf_counter()
        shown = {k: v for k, v in record.items() if not k.endswith("label")}
        print(f"epoch {epoch} at {now - self.t0:.0f} s: {json.dumps(shown)}", file=sys.stderr)
        self.over = now + (now - self.last) > self.deadline  # the next epoch would end past the budget
        self.last = now

    def should_stop(self) -> bool:
        return self.over


def map50(stored: Any, ws: Workspace, dataset: str) -> dict[str, float]:
    """AP at IoU 0.5 per class, and their mean, of stored detections against the dataset's boxes."""
    truth = ws.load_dataset(dataset).boxes
    out = {}
    for name in stored.classes:
        preds, gts = [], []
        for image_id in stored.image_ids:
            d = stored.table[(stored.table.image_id == image_id) & (stored.table.label == name)]
            preds.append((d[["x", "y", "w", "h"]].to_numpy(), d["score"].to_numpy()))
            gts.append(
                truth[(truth.image_id == image_id) & (truth.label == name)][["x", "y", "w", "h"]].to_numpy()
            )
        out[name] = average_precision(preds, gts, 0.5)
    out["mean"] = float(np.nanmean(list(out.values())))
    return out


def throughput(size: int, batch: int = 4, steps: int = 6) -> dict[str, float]:
    """Training images per second of each backbone's Faster R-CNN on random images with one box each."""
    rates = {}
    for backbone in DETECTOR_BACKBONES:
        model = create_model(detector_name("faster_rcnn", backbone), labels=["a", "b"], input_size=size)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        gen = torch.Generator().manual_seed(0)
        images = [torch.rand(1, size, size, generator=gen) for _ in range(batch)]
        targets = [{"boxes": torch.tensor([[20.0, 30.0, 80.0, 90.0]]), "labels": torch.tensor([0])}] * batch
        for i in range(steps + 1):
            if i == 1:
                start = time.perf_counter()
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
        rates[backbone] = round(batch * steps / (time.perf_counter() - start), 2)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--epochs", type=int, default=100, help="at most; the time budget stops it first")
    parser.add_argument(
        "--steps", type=int, default=60, help="steps of 4 images per epoch (validated after each)"
    )
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as home:
        ws = Workspace(home)
        register_phantoms(ws, "det-train", args.images, 1, (0.85, 0.15, 0.0))
        register_phantoms(ws, "det-fresh", 200, 2, (0.0, 0.0, 1.0))
        cfg = TrainConfig(
            dataset="det-train",
            task="detect",
            model="faster_rcnn_resnet18",
            input_size=args.size,
            epochs=args.epochs,
            batch_size=4,
            lr=3e-4,
            schedule="none",
            max_steps_per_epoch=args.steps,
            run_name="bench",
        )
        started = time.perf_counter()
        trainer = DetectTrainer(cfg, ws, Budget(args.minutes * 60))
        result = trainer.run()
        train_seconds = time.perf_counter() - started
        checkpoint = load_checkpoint(result.best_checkpoint)
        stored = detect_split(checkpoint, ws, "det-fresh", "test")
        scores = map50(stored, ws, "det-fresh")
        first = ws.load_dataset("det-fresh").index["path"].iloc[0]
        pixels, _meta = read_image(first)
        detect(checkpoint, pixels)
        times = []
        for _ in range(20):
            t = time.perf_counter()
            detect(checkpoint, pixels)
            times.append(time.perf_counter() - t)
        data = build_box_data(cfg, ws, args.size, masks=False)
        out = {
            "model": cfg.model,
            "input_size": args.size,
            "train_images": len(data.train),
            "train_boxes": data.train.n_boxes,
            "epochs": result.epochs_completed,
            "train_seconds": round(train_seconds, 1),
            "budget_seconds": args.minutes * 60,
            "fresh_images": len(stored.image_ids),
            "fresh_map50": round(scores["mean"], 4),
            "fresh_ap50_per_class": {k: round(v, 4) for k, v in scores.items() if k != "mean"},
            "target_map50": TARGET_MAP50,
            "meets_target": scores["mean"] >= TARGET_MAP50,
            "detect_latency_ms_median": round(1000 * float(np.median(times)), 1),
            "threads": torch.get_num_threads(),
        }
        if not args.skip_throughput:
            out["train_images_per_second"] = throughput(args.size)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
