"""Batch evaluation throughput over real NIH PNGs: ``predict`` against a torchxrayvision loop.

Run: CXR_DATA_DIR=../shared/data .venv/bin/python bench/bench_eval_throughput.py [--n 128] [--batch 32]

Both sides run an untrained DenseNet-121 (timing does not depend on the weights) at 224 px over the
same ``--n`` NIH ChestX-ray14 PNGs of ``$CXR_DATA_DIR/nih14/images``, with the same batch size, the
same torch threads and 0 then 2 DataLoader workers:
- ours: a checkpoint saved in a throwaway workspace, the images registered there with the nih14
  adapter (label file filtered to the present images) as a "test" split, then
  ``predict(..., refresh=True)`` twice: "uncached" (empty preprocessing cache: decode, prepare and
  store every image) and "cached" (the second pass reads the cache);
- torchxrayvision: ``NIH_Dataset`` (same filtered label file, every view, every image) with
  ``XRayCenterCrop`` + ``XRayResizer(224)``, a ``DataLoader`` and ``DenseNet(weights=None)`` under
  ``torch.no_grad()``; building the dataset and the model is inside its timing, as loading the
  checkpoint and the index is inside ``predict``'s.
Images/s for each, and ratios ours / torchxrayvision (``*_vs_xrv_*``; above 1: ours is faster).
``xrv_import_s`` is the import of torchxrayvision with torch already loaded. Prints one JSON object;
``{"skipped": ...}`` without CXR_DATA_DIR.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd
import torch
from torch.utils.data import DataLoader

from cxrcore.data.adapters import load_source
from cxrcore.evaluate.predict import predict
from cxrcore.labels import NIH14_LABELS
from cxrcore.models import create_model, save_checkpoint
from cxrcore.preprocess import PreprocessConfig
from cxrcore.store import Workspace

DATASET = "nih-bench"
WORKERS = (0, 2)


def _subset_csv(data: Path, images: list[Path], target: Path) -> Path:
    """The official label file cut down to the rows of ``images``, as a plain CSV."""
    names = {p.name for p in images}
    table = pd.read_csv(data / "nih14" / "Data_Entry_2017_v2020.csv.gz")
    table[table["Image Index"].isin(names)].to_csv(target, index=False)
    return target


def _setup(tmp: Path, images_dir: Path, labels_csv: Path, size: int) -> tuple[Workspace, Path]:
    """A throwaway workspace with the images registered as a test split and an untrained checkpoint."""
    ws = Workspace(tmp / "workspace")
    data = load_source("nih14", labels_csv=str(labels_csv), images_dir=str(images_dir))
    data.index["split"] = "test"
    ws.register_dataset(DATASET, "nih14", {}, data)
    torch.manual_seed(0)
    model = create_model("densenet121", labels=NIH14_LABELS, input_size=size, mean=0.5, std=0.25)
    checkpoint = save_checkpoint(
        tmp / f"densenet121-{size}.safetensors",
        model,
        {"preprocess": PreprocessConfig(input_size=size).to_dict()},
    )
    return ws, checkpoint


def _ours(ws: Workspace, checkpoint: Path, batch: int, workers: int, n: int) -> dict[str, float]:
    """Images/s of ``predict`` with an empty preprocessing cache, then with the cache filled."""
    shutil.rmtree(ws.cache_dir / "preprocessed", ignore_errors=True)
    rates = {}
    for setting in ("uncached", "cached"):
        start = time.perf_counter()
        preds = predict(checkpoint, ws, DATASET, "test", batch_size=batch, workers=workers, refresh=True)
        elapsed = time.perf_counter() - start
        if len(preds.table) != n:
            raise RuntimeError(f"predict gave {len(preds.table)} rows for {n} images")
        rates[setting] = n / elapsed
    return rates


def _xrv(
    xrv: ModuleType, images_dir: Path, labels_csv: Path, args: argparse.Namespace, workers: int
) -> float:
    """Images/s of torchxrayvision's dataset, a DataLoader and its DenseNet forward pass."""
    from torchvision.transforms import Compose

    start = time.perf_counter()
    dataset = xrv.datasets.NIH_Dataset(
        imgpath=str(images_dir),
        csvpath=str(labels_csv),
        views=["*"],
        unique_patients=False,
        transform=Compose([xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(args.size)]),
    )
    if len(dataset) != args.n:
        raise RuntimeError(f"NIH_Dataset holds {len(dataset)} images, expected {args.n}")
    torch.manual_seed(0)
    model = xrv.models.DenseNet(weights=None).eval()
    loader = DataLoader(dataset, batch_size=args.batch, shuffle=False, num_workers=workers)
    done = 0
    with torch.no_grad():
        for sample in loader:
            model(sample["img"])
            done += len(sample["img"])
    return done / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="number of NIH PNGs (first ones by name)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    data = os.environ.get("CXR_DATA_DIR")
    images_dir = Path(data) / "nih14" / "images" if data else None
    if images_dir is None or not images_dir.is_dir():
        print(json.dumps({"skipped": "CXR_DATA_DIR not set"}))
        return 0
    images = sorted(images_dir.glob("*.png"))[: args.n]
    args.n = len(images)
    out: dict = {"images": args.n, "size": args.size, "batch": args.batch, "threads": torch.get_num_threads()}
    start = time.perf_counter()
    try:
        xrv: ModuleType | None = importlib.import_module("torchxrayvision")
        out["torchxrayvision"] = xrv.__version__
        out["xrv_import_s"] = round(time.perf_counter() - start, 2)
    except ImportError:
        xrv = None
        out["torchxrayvision"] = "not installed"
    with tempfile.TemporaryDirectory() as tmp:
        # Both sides index the image folder through the same cut-down label file, so they read the
        # same files; reading them once first puts every side on a warm file-system cache.
        labels_csv = _subset_csv(Path(data), images, Path(tmp) / "Data_Entry_subset.csv")
        for path in images:
            path.read_bytes()
        ws, checkpoint = _setup(Path(tmp), images_dir, labels_csv, args.size)
        for workers in WORKERS:
            rates = _ours(ws, checkpoint, args.batch, workers, args.n)
            out[f"ours_uncached_workers{workers}_per_s"] = round(rates["uncached"], 2)
            out[f"ours_cached_workers{workers}_per_s"] = round(rates["cached"], 2)
            if xrv is None:
                continue
            rate = _xrv(xrv, images_dir, labels_csv, args, workers)
            out[f"xrv_workers{workers}_per_s"] = round(rate, 2)
            out[f"uncached_vs_xrv_workers{workers}"] = round(rates["uncached"] / rate, 3)
            out[f"cached_vs_xrv_workers{workers}"] = round(rates["cached"] / rate, 3)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
