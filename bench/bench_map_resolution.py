"""Coarse against finer heat maps: two real-data classifiers on the same test images, AUROC and localisation.

Run: CXR_DATA_DIR=../shared/data .venv/bin/python bench/bench_map_resolution.py \
        [--baseline checkpoints/real-densenet121.safetensors] --candidate RUN/best.safetensors \
        [--bootstrap 1000] [--max-images 600]

Both checkpoints must be trained on the recipe's ``cxr-real`` (registered here when missing). Prints one
JSON object:
- ``auroc``: each model's macro AUROC over the labels of the test split with a 95% bootstrap CI
  (images resampled, the same resamples for both), and the paired difference candidate - baseline
  with its CI;
- ``localisation``: CAM and CRM against true boxes (per-image IoU, PeerJ mAP, COCO mAP, pointing
  game, best-box IoU; ``cxrcore.evaluate.map_localisation``) on the test split of ``cxr-real`` per
  source (NIH + RSNA boxes on NIH films, TBX11K), and on ``nihbox``: the 554 NIH films with the
  official boxes of 8 findings, less the films that are also in ``cxr-real`` (so no trained-on film
  is scored).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from sklearn.metrics import roc_auc_score

from cxrcore.evaluate.map_localisation import localisation_report
from cxrcore.evaluate.predict import predict
from cxrcore.models.card import read_card
from cxrcore.store import Workspace
from cxrcore.workflows.realdata import REAL_DATASET, real_data_dir, register_real_datasets

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "checkpoints" / "real-densenet121.safetensors"
NIH_BOXES = "nihbox"
METRICS = ("pairs", "mean_iou", "peerj_map", "coco_map", "pointing", "top_box_iou")


def _macro(y: np.ndarray, p: np.ndarray) -> float:
    """Mean AUROC over the labels with both classes among known truths."""
    values = []
    for j in range(y.shape[1]):
        known = ~np.isnan(y[:, j])
        t = y[known, j]
        if t.size and t.min() != t.max():
            values.append(roc_auc_score(t, p[known, j]))
    return float(np.mean(values)) if values else float("nan")


def auroc_table(ws: Workspace, paths: list[Path], n_boot: int, seed: int = 0) -> dict:
    """Each model's macro AUROC with a bootstrap CI, and the paired difference (last minus first)."""
    preds = [predict(path, ws, REAL_DATASET, "test") for path in paths]
    ids = preds[0].table["image_id"].tolist()
    for other in preds[1:]:
        if other.table["image_id"].tolist() != ids or other.labels != preds[0].labels:
            raise SystemExit("the two checkpoints were not scored on the same images and labels")
    y = preds[0].y_true
    points = [_macro(y, p.y_prob) for p in preds]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(ids), len(ids))
        draws.append([_macro(y[pick], p.y_prob[pick]) for p in preds])
    boot = np.asarray(draws)
    diff = boot[:, -1] - boot[:, 0]
    out = {
        path.stem if path.stem not in ("best", "last") else path.parent.name: {
            "macro_auroc": round(point, 4),
            "ci95": [
                round(float(np.nanpercentile(boot[:, i], 2.5)), 4),
                round(float(np.nanpercentile(boot[:, i], 97.5)), 4),
            ],
        }
        for i, (path, point) in enumerate(zip(paths, points, strict=True))
    }
    out["difference"] = {
        "candidate_minus_baseline": round(points[-1] - points[0], 4),
        "ci95": [round(float(np.nanpercentile(diff, 2.5)), 4), round(float(np.nanpercentile(diff, 97.5)), 4)],
        "n_images": len(ids),
        "n_boot": n_boot,
    }
    return out


def _rows(report_table: dict) -> dict:
    return {
        model: {k: round(float(v), 4) for k, v in row.items() if k in METRICS}
        for model, row in report_table.items()
    }


def localisation(ws: Workspace, paths: list[Path], max_images: int) -> dict:
    """CAM and CRM localisation of each model on the cxr-real test boxes (per source) and on nihbox."""
    trained_on = set(ws.load_dataset(REAL_DATASET).index["image_id"].str.split("/").str[-1])
    out: dict = {}
    for method in ("cam", "crm"):
        real = localisation_report(
            paths, ws, REAL_DATASET, "test", method=method, by="source", max_images=max_images
        )
        out[f"{REAL_DATASET}/test {method}"] = {src: _rows(t.T.to_dict()) for src, t in real.groups.items()}
        nih = localisation_report(
            paths, ws, NIH_BOXES, "all", method=method, max_images=max_images, exclude=trained_on
        )
        out[f"{NIH_BOXES} {method}"] = _rows(nih.table.T.to_dict())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--candidate", type=Path, required=True)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--max-images", type=int, default=600)
    args = parser.parse_args()
    if real_data_dir() is None:
        print(json.dumps({"skipped": "CXR_DATA_DIR is not set to the real data folder"}))
        return 0
    ws = Workspace()
    if REAL_DATASET not in {r.name for r in ws.list_datasets()}:
        register_real_datasets()
    paths = [args.baseline, args.candidate]
    start = time.perf_counter()
    result = {
        "models": {
            str(p): {"input_size": read_card(p).input_size, "map_side": read_card(p).input_size // 32}
            for p in paths
        },
        "auroc": auroc_table(ws, paths, args.bootstrap),
        "localisation": localisation(ws, paths, args.max_images),
    }
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
