"""Commands for the lung segmenter: train it on JSRT, score it, and measure heat inside the lungs.

Examples::

    python -m cxrcore segmenter train --out checkpoints/lung-segmenter.safetensors
    python -m cxrcore segmenter evaluate checkpoints/lung-segmenter.safetensors --json
    python -m cxrcore segmenter heat checkpoints/real-densenet121.safetensors --dataset cxr-real

The JSRT folder is ``$CXR_DATA_DIR/jsrt`` unless ``--data-dir`` names another.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cxrcore.cli.output import ImageBar, emit
from cxrcore.data.index import SPLIT_CHOICES, TEST_SPLIT, DatasetError
from cxrcore.data.jsrt import JSRT_SPLITS, ORGAN_NAMES, ORGANS
from cxrcore.models.segmenter_card import DICE_BOOTSTRAP, LUNG_HEAT_MAX_IMAGES
from cxrcore.store import Workspace
from cxrcore.workflows.realdata import DATA_ENV


def _data_dir(args: argparse.Namespace) -> str:
    """The data folder from --data-dir or $CXR_DATA_DIR; DatasetError saying how to give one."""
    value = args.data_dir or os.environ.get(DATA_ENV)
    if not value:
        raise DatasetError(f"no JSRT data: pass --data-dir or set {DATA_ENV} to the folder holding jsrt/")
    return value


def _positive(text: str) -> int:
    """An argument that must be a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _with_ci(value: dict[str, float]) -> str:
    """A mean with its interval, three decimals."""
    return f"{value['mean']:.3f} ({value['ci_low']:.3f}-{value['ci_high']:.3f})"


def _report_text(summary: dict[str, Any]) -> str:
    """Dice per organ and crop-box IoU in lines for people."""
    lines = [f"{summary['n_images']} test images; mean with bootstrap 95% CI over images"]
    for organ in ORGANS:
        lines.append(f"  Dice {ORGAN_NAMES[organ]:<11} {_with_ci(summary['dice'][organ])}")
    for method, by_tag in summary["crop_box_iou"].items():
        lines.append(
            f"  crop-box IoU, {method:<9} tight {_with_ci(by_tag['tight'])}, "
            f"with 5% margin {_with_ci(by_tag['crop'])}"
        )
    fallbacks = summary["crop_box_iou"]["threshold"].get("fallbacks")
    if fallbacks is not None:
        lines.append(f"  threshold heuristic fell back to the whole image on {fallbacks} image(s)")
    return "\n".join(lines)


def cmd_segmenter_train(args: argparse.Namespace) -> int:
    """Train the lung segmenter on JSRT and write it with its card (test figures included)."""
    from cxrcore.train.segmenter import SegmenterTrainConfig
    from cxrcore.workflows.segmenter import train_and_save

    cfg = SegmenterTrainConfig(
        data_dir=_data_dir(args),
        input_size=args.input_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        max_seconds=args.max_minutes * 60 if args.max_minutes else None,
        max_images=args.max_images,
    )

    def on_epoch(row: dict[str, Any]) -> None:
        print(
            f"epoch {row['epoch']}: loss {row['train_loss']:.3f}, validation Dice {row['val_mean_dice']:.3f} "
            f"({row['seconds']:.0f} s)",
            file=sys.stderr,
        )

    command = [
        *(["python", "-m", "cxrcore", "segmenter", "train", "--out"]),
        str(args.out),
        *(["--data-dir", args.data_dir] if args.data_dir else []),
        *(f"--input-size {cfg.input_size} --epochs {cfg.epochs} --batch-size {cfg.batch_size}".split()),
        *(f"--lr {cfg.lr:g} --max-minutes {args.max_minutes:g} --seed {cfg.seed}".split()),
        *(["--max-images", str(cfg.max_images)] if cfg.max_images else []),
    ]  # every setting spelled out, as the card records it
    weights, report = train_and_save(args.out, cfg, command, on_epoch if not args.json else None)
    payload = {"checkpoint": str(weights), **report.summary}
    emit(payload, args.json, lambda: f"{weights}\n{_report_text(report.summary)}")
    return 0


def cmd_segmenter_evaluate(args: argparse.Namespace) -> int:
    """Score a segmenter checkpoint on a split of its JSRT images."""
    from cxrcore.workflows.segmenter import evaluate_file

    report = evaluate_file(args.checkpoint, _data_dir(args), args.split, n_boot=args.bootstrap)
    payload = {"checkpoint": args.checkpoint, "split": args.split, **report.summary}
    emit(payload, args.json, lambda: _report_text(report.summary))
    return 0


def cmd_segmenter_heat(args: argparse.Namespace) -> int:
    """Mean share of a classifier's CAM and CRM heat inside the lungs, per label, over a split's images."""
    from cxrcore.evaluate.lung_heat import lung_heat

    with ImageBar("heat in the lungs") as bar:
        report = lung_heat(
            args.checkpoint,
            Workspace(),
            args.dataset,
            args.split,
            max_images=args.max_images,
            refresh=args.refresh,
            progress=bar,
        )
    meta = report.meta
    payload = {
        **meta,
        "from_cache": report.from_cache,
        "labels": report.table.reset_index().to_dict(orient="records"),
    }

    def text() -> str:
        head = (
            f"{meta['n_images']} images (the first {meta['max_images']} of {meta['of_split']} in "
            f"{args.dataset}/{args.split}); share of each map's heat inside the lungs, mean "
            "(cam_lo-cam_hi: bootstrap 95% CI); lung_area: what an even map would score"
        )
        return head + "\n" + report.table.to_string(float_format=lambda v: f"{v:.3f}")

    emit(payload, args.json, text)
    return 0


def add_segmenter_commands(groups: Any) -> None:
    """The ``segmenter`` command group."""
    seg = groups.add_parser("segmenter", help="the lung segmenter (JSRT)").add_subparsers(
        dest="command", required=True
    )
    train = seg.add_parser("train", help="train the lung segmenter on $CXR_DATA_DIR/jsrt")
    train.add_argument("--out", type=Path, required=True, help="the checkpoint to write (.safetensors)")
    train.add_argument("--data-dir", help=f"folder holding jsrt/ (default ${DATA_ENV})")
    train.add_argument("--input-size", type=int, default=192)
    train.add_argument("--epochs", type=int, default=40)
    train.add_argument("--batch-size", type=int, default=4)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--max-minutes", type=float, default=13.0, help="no epoch starts after this (0: none)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--max-images", type=_positive, help="train on the first N training images only")
    train.add_argument("--json", action="store_true")
    train.set_defaults(func=cmd_segmenter_train)
    ev = seg.add_parser("evaluate", help="Dice per organ and lung crop-box IoU on the JSRT test split")
    ev.add_argument("checkpoint")
    ev.add_argument("--data-dir", help=f"folder holding jsrt/ (default ${DATA_ENV})")
    ev.add_argument("--split", default="test", choices=JSRT_SPLITS)
    ev.add_argument("--bootstrap", type=_positive, default=DICE_BOOTSTRAP, help="resamples for the 95%% CI")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_segmenter_evaluate)
    heat = seg.add_parser(
        "heat", help="a classifier's CAM / CRM heat inside the lungs, per label, over a split"
    )
    heat.add_argument("checkpoint", help="a classifier checkpoint")
    heat.add_argument("--dataset", required=True, help="a registered dataset")
    heat.add_argument("--split", default=TEST_SPLIT, choices=SPLIT_CHOICES)
    heat.add_argument(
        "--max-images", type=_positive, default=LUNG_HEAT_MAX_IMAGES, help="the first N images of the split"
    )
    heat.add_argument("--refresh", action="store_true", help="compute again even when stored")
    heat.add_argument("--json", action="store_true")
    heat.set_defaults(func=cmd_segmenter_heat)
