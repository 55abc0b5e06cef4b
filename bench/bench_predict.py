"""Batch prediction throughput against the model's own forward throughput, over cached images.

Run: .venv/bin/python bench/bench_predict.py [--model resnet18] [--size 224] [--images 256]

Writes phantom images (bench/out/predict/), registers them in a throwaway workspace, saves an
untrained checkpoint (timing does not depend on the weights), warms the preprocessing cache, then
measures: the model alone on ready tensors in batches of 64, and `predict` over the cached split
(refresh each time) with 0 and 2 DataLoader workers. Prints one JSON object; the target is a
prediction pass at >= 85% of the model-only throughput.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from cxrcore.data.adapters import load_source
from cxrcore.data.cache import PreprocessCache
from cxrcore.data.phantoms import write_phantom_dataset
from cxrcore.evaluate.predict import predict
from cxrcore.models import create_model, save_checkpoint
from cxrcore.preprocess import PreprocessConfig
from cxrcore.store import Workspace, WorkspaceError

TARGET = 0.85
BATCH = 64


def _setup(root: Path, n: int, model_name: str, size: int) -> tuple[Workspace, Path]:
    ws = Workspace(root / "workspace")
    try:
        ws.get_dataset("bench-predict")
    except WorkspaceError:
        ds = write_phantom_dataset(root / "images", n_images=n, size=512, seed=2)
        data = load_source("csv", csv_path=str(ds.labels_csv), boxes_csv=str(ds.boxes_csv))
        data.index["split"] = "test"
        ws.register_dataset("bench-predict", "csv", {}, data)
    labels = ws.get_dataset("bench-predict").labels
    model = create_model(model_name, labels=labels, input_size=size, mean=0.5, std=0.25)
    checkpoint = save_checkpoint(
        root / f"{model_name}-{size}.safetensors",
        model,
        {"preprocess": PreprocessConfig(input_size=size).to_dict()},
    )
    paths = ws.load_dataset("bench-predict").index["path"].tolist()
    PreprocessCache(ws.cache_dir / "preprocessed", PreprocessConfig(input_size=size)).warm(paths)
    return ws, checkpoint


def model_only(model_name: str, size: int, n: int) -> float:
    """Images per second of the forward pass alone on ready tensors."""
    model = create_model(model_name, num_labels=3, input_size=size).eval()
    x = torch.randn(BATCH, 1, size, size)
    with torch.inference_mode():
        model(x)  # warm-up
        start, done = time.perf_counter(), 0
        while done < n:
            model(x)
            done += BATCH
    return done / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=256)
    args = parser.parse_args()
    root = Path(__file__).resolve().parent / "out" / "predict"
    ws, checkpoint = _setup(root, args.images, args.model, args.size)
    out = {"model": args.model, "size": args.size, "images": args.images, "batch": BATCH}
    out["model_only_per_s"] = round(model_only(args.model, args.size, args.images), 2)
    for workers in (0, 2):
        start = time.perf_counter()
        preds = predict(
            checkpoint, ws, "bench-predict", "test", batch_size=BATCH, workers=workers, refresh=True
        )
        rate = len(preds.table) / (time.perf_counter() - start)
        out[f"predict_workers{workers}_per_s"] = round(rate, 2)
        out[f"ratio_workers{workers}"] = round(rate / out["model_only_per_s"], 3)
    start = time.perf_counter()
    predict(checkpoint, ws, "bench-predict", "test")
    out["stored_read_s"] = round(time.perf_counter() - start, 3)
    out["meets_target"] = max(out["ratio_workers0"], out["ratio_workers2"]) >= TARGET
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
