"""Training throughput and data-wait share per architecture, with and without the preprocessing cache.

Run: .venv/bin/python bench/bench_train.py [--models resnet18,densenet121] [--size 224] [--steps 6]

For each model it times optimiser steps on CPU over 256 px synthetic phantoms (or the real NIH PNGs
when CXR_DATA_DIR is set), with a DataLoader of 2 workers, in two settings:
- "cold": every image is decoded and resized during the step (an empty cache folder each run);
- "cached": the preprocessed cache was filled beforehand.
Reported per setting: images/s and data_wait_fraction = time spent waiting for the next batch over
the whole step time. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch.utils.data import DataLoader

from cxrcore.data.cache import PreprocessCache
from cxrcore.data.phantoms import write_phantom_dataset
from cxrcore.data.torch_dataset import CXRDataset
from cxrcore.models import create_model
from cxrcore.preprocess import PreprocessConfig
from cxrcore.train.losses import MaskedLoss


def image_paths(tmp: Path, n: int) -> list[str]:
    """Real NIH PNGs when available, else generated phantoms."""
    data = os.environ.get("CXR_DATA_DIR")
    if data and (Path(data) / "nih14" / "images").is_dir():
        return sorted(str(p) for p in (Path(data) / "nih14" / "images").glob("*.png"))[:n]
    ds = write_phantom_dataset(tmp / "phantoms", n_images=n, size=256, seed=0)
    return sorted(str(p) for p in (ds.root / "images").glob("*.png"))


def measure(model_name: str, paths: list[str], cache: PreprocessCache, args: argparse.Namespace) -> dict:
    """Images/s and the share of step time spent waiting for data."""
    torch.manual_seed(0)
    model = create_model(model_name, labels=["a", "b", "c"], input_size=args.size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = MaskedLoss("weighted_bce", [0.3, 0.3, 0.3])
    targets = torch.randint(0, 2, (len(paths), 3)).float().numpy()
    loader = DataLoader(
        CXRDataset(paths, targets, cache, 0.5, 0.25),
        batch_size=args.batch,
        shuffle=True,
        num_workers=2,
        persistent_workers=False,
    )
    model.train()
    wait = compute = 0.0
    images = 0
    it = iter(loader)
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        x, y = next(it)
        t1 = time.perf_counter()
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        t2 = time.perf_counter()
        if step:  # the first step includes worker start-up
            wait += t1 - t0
            compute += t2 - t1
            images += len(x)
    return {
        "images_per_s": round(images / (wait + compute), 2),
        "data_wait_fraction": round(wait / (wait + compute), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,densenet121")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    n = args.batch * (args.steps + 1)
    out: dict = {
        "size": args.size,
        "batch": args.batch,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        paths = image_paths(Path(tmp), n)
        out["images"] = "nih14" if os.environ.get("CXR_DATA_DIR") else "phantoms"
        pcfg = PreprocessConfig(input_size=args.size)
        warm = PreprocessCache(Path(tmp) / "warm", pcfg)
        warm.warm(paths)
        for name in args.models.split(","):
            cold = PreprocessCache(Path(tempfile.mkdtemp(dir=tmp)), pcfg)
            out[name] = {"cold": measure(name, paths, cold, args), "cached": measure(name, paths, warm, args)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
