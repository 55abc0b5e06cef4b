"""Calibration methods compared on the bundled checkpoints: ECE and Brier score before and after, per split.

Run: CXR_DATA_DIR=../shared/data .venv/bin/python bench/bench_calibration.py

For each bundled checkpoint whose data is registered in $CXR_HOME (the real-data model on cxr-real,
registered from $CXR_DATA_DIR; the demo models on their own 2,400 training phantoms, generated here
when missing), fits temperature, Platt and isotonic calibration on the validation split's stored
logits and scores the plain sigmoid and each calibration on the validation and test splits: ECE
(10 equal-width bins) and Brier score, mean over labels, and the test AUROC mean (unchanged by
temperature and Platt scaling, which keep each label's ranking). Also the operating points (Youden's
J on calibrated validation probabilities): the mean sensitivity and specificity they give on test.
Prints one JSON object; nothing is written to the checkpoints.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from cxrcore.evaluate.calibration import calibration_scores, fit_calibration
from cxrcore.evaluate.classification import auroc_ci, threshold_metrics
from cxrcore.evaluate.operating_points import choose_operating_points
from cxrcore.evaluate.predict import predict
from cxrcore.models.readout import CALIBRATION_METHODS, calibrate_logits, expit
from cxrcore.store import Workspace
from cxrcore.workflows.demo import (
    DEMO_MODELS,
    DEMO_TRAIN_DATASET,
    DEMO_TRAIN_IMAGES,
    DEMO_TRAIN_SEED,
    register_phantoms,
)
from cxrcore.workflows.realdata import REAL_DATASET, real_data_dir, register_real_datasets

ROOT = Path(__file__).resolve().parents[1]


def _mean_scores(y: np.ndarray, p: np.ndarray, labels: list[str]) -> dict[str, float]:
    table = calibration_scores(y, p, labels)
    return {
        "ece": round(float(table.loc["mean", "ece"]), 4),
        "brier": round(float(table.loc["mean", "brier"]), 4),
    }


def _operating(
    y: np.ndarray, p_valid: np.ndarray, y_valid: np.ndarray, p: np.ndarray, labels: list[str]
) -> dict:
    cuts = choose_operating_points(y_valid, p_valid, labels)["thresholds"]
    rows = [threshold_metrics(y[:, j], p[:, j], cuts[name]) for j, name in enumerate(labels) if name in cuts]
    return {
        "sensitivity": round(float(np.nanmean([r["sensitivity"] for r in rows])), 4),
        "specificity": round(float(np.nanmean([r["specificity"] for r in rows])), 4),
    }


def compare(checkpoint: Path, ws: Workspace, dataset: str) -> dict:
    """Every method's figures for one checkpoint on one dataset's validation and test splits."""
    valid, test = predict(checkpoint, ws, dataset, "valid"), predict(checkpoint, ws, dataset, "test")
    labels = list(valid.labels)
    out: dict = {"dataset": dataset, "valid_images": len(valid.table), "test_images": len(test.table)}
    for method in ("none", *CALIBRATION_METHODS):
        calibration = (
            None if method == "none" else fit_calibration(valid.y_true, valid.logits, labels, method)
        )
        p_valid = calibrate_logits(calibration, labels, valid.logits)
        p_test = calibrate_logits(calibration, labels, test.logits)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            auc = auroc_ci(test.y_true, p_test, n_boot=1, labels=labels)[0]
        out[method] = {
            "valid": _mean_scores(valid.y_true, p_valid, labels),
            "test": _mean_scores(test.y_true, p_test, labels),
            "test_auroc_mean": round(float(np.nanmean(auc)), 4),
            "test_at_youden": _operating(test.y_true, p_valid, valid.y_true, p_test, labels),
        }
    assert np.allclose(expit(valid.logits), calibrate_logits(None, labels, valid.logits))
    return out


def main() -> int:
    started = time.perf_counter()
    ws = Workspace()
    result: dict = {}
    if real_data_dir() is not None:
        register_real_datasets()
        result["real-densenet121"] = compare(
            ROOT / "checkpoints" / "real-densenet121.safetensors", ws, REAL_DATASET
        )
    else:
        result["real-densenet121"] = "skipped: CXR_DATA_DIR not set to the real data folder"
    register_phantoms(ws, DEMO_TRAIN_DATASET, DEMO_TRAIN_IMAGES, DEMO_TRAIN_SEED, (0.8, 0.1, 0.1))
    for name, _ in DEMO_MODELS:
        result[name] = compare(ROOT / "checkpoints" / f"{name}.safetensors", ws, DEMO_TRAIN_DATASET)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
