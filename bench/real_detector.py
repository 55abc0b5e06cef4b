"""The bundled lesion detector: register the real boxes, train, score on the test split, bundle.

Run (from the repository root, with the real data; an hour or more on 2 CPU cores):
    CXR_DATA_DIR=../shared/data CXR_HOME=/tmp/cxr-detect .venv/bin/python bench/real_detector.py \
        [--skip-training] [--out checkpoints/real-detector]

Steps, each a ``python -m cxrcore`` command of ``cxrcore/workflows/realdata.py`` (``DETECT_TRAIN``):
register the real datasets (``REGISTER_COMMANDS``: NIH official boxes, RSNA opacity boxes as Pneumonia,
TBX11K tuberculosis boxes, JSRT nodule squares, merged into ``cxr-detect`` and split by patient), train
the detector, choose its box score threshold on the validation split (``checkpoint calibrate``), then score
its best checkpoint on the test split: the detection report per class (mAP / mAR / F1 at IoU 0.25-0.75 from
that threshold, COCO mAP, RSNA score, FROC), a 95% bootstrap interval of mAP@0.5 (images resampled),
image-level AUROC with CIs, and the bundled classifier's CAM and CRM boxes on the same images in the same
table. The checkpoint is written to ``--out`` (float16) with its card holding how it was made and these
figures. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from cxrcore.cli import main as cli
from cxrcore.evaluate.detection_report import OVERALL
from cxrcore.evaluate.detector_eval import compare_box_sources, evaluate_detector
from cxrcore.evaluate.localisation import average_precision
from cxrcore.store import Workspace
from cxrcore.workflows.bundle import hardware, metrics_for_card
from cxrcore.workflows.realdata import (
    DETECT_DATASET,
    DETECT_TRAIN,
    REGISTER_COMMANDS,
    command_argv,
    real_data_dir,
    register_real_datasets,
)

ROOT = Path(__file__).resolve().parents[1]
CLASSIFIER = ROOT / "checkpoints" / "real-densenet121.safetensors"
BUNDLED_NAME = "checkpoints/real-detector.safetensors"  # as the card's commands name it
SHOWN = ["n_boxes", "mAP@0.25", "mAP@0.5", "mAR@0.5", "F1@0.5", "mAP@0.75", "coco_mAP", "rsna", "cpm"]


def bootstrap_map50(
    table: pd.DataFrame, truth: pd.DataFrame, ids: list[str], n_boot: int = 200
) -> list[float]:
    """A 95% interval of the pooled mAP@0.5 (every class, matched within its class), images resampled."""
    entries: dict[str, list] = {i: [] for i in ids}
    for (image_id, label), group in truth.groupby(["image_id", "label"]):
        entries[image_id].append((label, group[["x", "y", "w", "h"]].to_numpy(float)))
    classes = sorted(set(truth["label"]))
    per_image = {}
    for image_id in ids:
        dets = table[table["image_id"] == image_id]
        gts = dict(entries[image_id])
        pairs = []
        for c in classes:
            mine = dets[dets["label"] == c]
            found = (mine[["x", "y", "w", "h"]].to_numpy(float), mine["score"].to_numpy(float))
            pairs.append((found, gts.get(c, np.zeros((0, 4)))))
        per_image[image_id] = pairs
    rng = np.random.default_rng(0)
    values = []
    for _ in range(n_boot):
        sample = rng.choice(len(ids), len(ids), replace=True)
        pairs = [pair for k in sample for pair in per_image[ids[k]]]
        values.append(average_precision([p for p, _ in pairs], [g for _, g in pairs], 0.5))
    return [round(float(np.nanpercentile(values, q)), 4) for q in (2.5, 97.5)]


def table_rows(report: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """A report's shown columns as plain numbers per class."""
    return {
        str(k): {c: (None if pd.isna(v) else round(float(v), 4)) for c, v in row[SHOWN].items()}
        for k, row in report.iterrows()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-training", action="store_true", help="score the run already trained")
    parser.add_argument("--out", default=str(ROOT / "checkpoints" / "real-detector"))
    args = parser.parse_args()
    data = real_data_dir()
    if data is None:
        sys.exit("set CXR_DATA_DIR to the real data folder")
    ws = Workspace()
    started = time.perf_counter()
    try:
        ws.get_dataset(DETECT_DATASET)
    except Exception:
        register_real_datasets(data)
    run_name, command = DETECT_TRAIN
    if not args.skip_training:
        assert cli(command_argv(command, data, ws.home)) == 0
    train_seconds = round(time.perf_counter() - started, 1)
    best = ws.home / "runs" / run_name / "best.safetensors"
    from cxrcore.models.checkpoint import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(best)
    calibrate = f"checkpoint calibrate {BUNDLED_NAME} --dataset {DETECT_DATASET}"
    commands = [*REGISTER_COMMANDS, command, calibrate]
    how_made = {
        "commands": [f"python -m cxrcore {c}" for c in commands],
        "hardware": hardware(),
        "training_seconds": loaded.card.detector.get("seconds"),
        "note": "trained on CPU; see the README's lesion detector results for what limits it",
    }
    written = save_checkpoint(args.out, loaded.model, loaded.card.replace(how_made=how_made), half=True)
    # The box score threshold, chosen on the validation split; the test figures count boxes from it.
    assert cli(["checkpoint", "calibrate", str(written), "--dataset", DETECT_DATASET]) == 0
    result = evaluate_detector(written, ws, DETECT_DATASET, "test")
    truth = ws.load_dataset(DETECT_DATASET).boxes
    ids = list(result.stored.image_ids)
    classes = list(result.report.index[:-1])
    truth = truth[truth["image_id"].isin(ids) & truth["label"].isin(classes)]
    interval = bootstrap_map50(result.stored.table, truth, ids)
    compared = {}
    for method in ("cam", "crm"):
        table = compare_box_sources([], [CLASSIFIER], ws, DETECT_DATASET, "test", method=method)
        compared[method] = table.set_index("class").drop(columns=["source", "kind"])
    evaluation = {
        "dataset": DETECT_DATASET,
        "split": "test",
        "n_images": len(ids),
        "score_threshold": result.score_threshold,
        "score_threshold_source": result.threshold_source,
        "boxes": table_rows(result.report),
        "map50_ci95": interval,
        "image_level": metrics_for_card(result.image_level),
        "heat_map_boxes": {f"real-densenet121 {m.upper()}": table_rows(t) for m, t in compared.items()},
    }
    card = load_checkpoint(written).card.replace(evaluation=evaluation)
    written = save_checkpoint(args.out, load_checkpoint(written).model, card, half=True)
    overall = result.report.loc[OVERALL]
    print(
        json.dumps(
            {
                "checkpoint": str(written),
                "train_and_register_seconds": train_seconds,
                "overall_map50": round(float(overall["mAP@0.5"]), 4),
                **evaluation,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
