"""The lung segmenter end to end: train on JSRT, score the test split, write the checkpoint with its card.

``train_and_save`` trains (``cxrcore.train.segmenter``), writes the float16 checkpoint, reloads that
file and scores it on the test images (``cxrcore.evaluate.segmentation``), then writes the card again
with the test figures, the command and the duration, so the card holds what
``python -m cxrcore segmenter evaluate`` prints for the shipped weights. ``evaluate_file`` scores a
checkpoint file on its own split of the JSRT images.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from cxrcore.data.index import DatasetError
from cxrcore.data.jsrt import JSRT_SPLITS, cases_fingerprint, jsrt_root, list_cases, split_cases
from cxrcore.evaluate.segmentation import N_BOOT, SegmentationReport, evaluate_segmenter
from cxrcore.models.segmenter import load_segmenter, save_segmenter
from cxrcore.models.segmenter_card import read_segmenter_card
from cxrcore.train.segmenter import SegmenterTrainConfig, train_segmenter
from cxrcore.workflows.bundle import hardware

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def card_split(path: str | Path, data_dir: str | Path) -> tuple[Path, dict[str, list[str]]]:
    """The JSRT folder and the split a segmenter was trained with, rebuilt from its card.

    Raises:
        DatasetError: the JSRT images here are not the ones the card names (another fingerprint).
    """
    card = read_segmenter_card(path)
    data = card.training.get("data") or {}
    root = jsrt_root(data_dir)
    names = list_cases(root)
    if data.get("fingerprint") and data["fingerprint"] != cases_fingerprint(names):
        raise DatasetError(
            f"the JSRT images in {str(root)!r} (fingerprint {cases_fingerprint(names)}) are not the ones "
            f"{Path(path).name} was trained on ({data['fingerprint']})"
        )
    fractions = (card.training.get("settings") or {}).get("fractions") or (0.7, 0.1, 0.2)
    return root, split_cases(names, int(data.get("seed", 0)), fractions)


def evaluate_file(
    path: str | Path,
    data_dir: str | Path,
    split: str = "test",
    *,
    n_boot: int = N_BOOT,
    progress: Progress | None = None,
) -> SegmentationReport:
    """Dice per organ and crop-box IoU of a segmenter checkpoint on one split of its JSRT images."""
    if split not in JSRT_SPLITS:
        raise DatasetError(f"unknown split {split!r}; valid options: {', '.join(JSRT_SPLITS)}")
    root, parts = card_split(path, data_dir)
    return evaluate_segmenter(load_segmenter(path), root, parts[split], n_boot=n_boot, progress=progress)


def train_and_save(
    out: str | Path,
    cfg: SegmenterTrainConfig,
    command: Sequence[str] = (),
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[Path, SegmentationReport]:
    """Train a segmenter, write it to ``out`` (float16) with its card, and score the written file on test."""
    start = time.perf_counter()
    trained = train_segmenter(cfg, on_epoch)
    weights = save_segmenter(out, trained.model, trained.card)
    report = evaluate_segmenter(load_segmenter(weights), trained.root, trained.split["test"])
    how_made = {
        "command": " ".join(command) or None,
        "train_seconds": round(trained.seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "hardware": hardware(),
        "torch_threads": torch.get_num_threads(),
    }
    card = trained.card.replace(evaluation={"split": "test", **report.summary}, how_made=how_made)
    weights = save_segmenter(weights, trained.model, card)
    log.info("lung segmenter written to %s in %.0f s", weights, how_made["total_seconds"])
    return weights, report
