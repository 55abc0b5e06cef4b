"""Training the lung segmenter on JSRT: prepared squares, a light augmentation, Adam on Dice + BCE.

Every image is prepared once with the segmenter's preprocessing (``prepare``: letterbox to the input
square, CLAHE) and its masks are placed on the same square (``mask_to_input``). Each epoch draws, per
image, one affine warp (``cxrcore.data.augment.Augment``: crop-zoom, aspect, rotation, shift; applied
to the image and its masks alike, no flips since left and right are anatomy) and a random gamma,
contrast and brightness. The loss is BCE plus (1 - soft Dice) per class over the batch. The learning
rate falls on a cosine from ``lr`` to 1% of it over whichever runs out first, the epochs or
``max_seconds``; the weights of the epoch with the best mean validation Dice are kept.

Run it through ``python -m cxrcore segmenter train`` (``cxrcore.workflows.segmenter``).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxrcore.data.augment import Augment, warp
from cxrcore.data.jsrt import ORGANS, cases_fingerprint, jsrt_root, list_cases, read_case, split_cases
from cxrcore.data.split import DEFAULT_FRACTIONS
from cxrcore.models.segmenter import build_network
from cxrcore.models.segmenter_card import SegmenterCard, SegmenterSpec
from cxrcore.preprocess import (
    NormStats,
    PreprocessConfig,
    compute_norm_stats,
    mask_to_input,
    normalise,
    prepare,
)

log = logging.getLogger(__name__)

# Geometric ranges: zoom in or out a little (out leaves black borders, as a letterboxed film has),
# change the aspect, rotate and shift; and the grey-level ranges.
AUGMENT = Augment(scale=(0.75, 1.15), ratio=(0.8, 1.25), degrees=8.0, translate=0.06)
GAMMA = (0.7, 1.4)
CONTRAST = (0.85, 1.15)
BRIGHTNESS = 15.0  # grey levels of 255
LR_FLOOR = 0.01  # the cosine ends at this share of the starting learning rate
Progress = Callable[[dict[str, Any]], None]  # one call per epoch with that epoch's history row


@dataclass(frozen=True)
class SegmenterTrainConfig:
    """What a segmenter run needs: data, network, schedule and time budget."""

    data_dir: str
    input_size: int = 192
    encoder: str = "tu-mobilenetv4_conv_small"
    decoder_channels: tuple[int, ...] = (64, 48, 32, 16, 16)
    clahe: bool = True
    epochs: int = 40
    batch_size: int = 4
    lr: float = 2e-3
    seed: int = 0
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    max_seconds: float | None = 780.0  # no epoch starts after this; the schedule ends here too
    max_images: int | None = None  # train on the first N training images only (tests)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (the data folder left out: it is machine-specific)."""
        out = asdict(self)
        del out["data_dir"]
        return out


@dataclass(frozen=True)
class TrainedSegmenter:
    """The best epoch's network and the card describing it (without test figures yet)."""

    model: nn.Module
    card: SegmenterCard
    split: dict[str, list[str]]
    root: Path
    seconds: float


def prepared_cases(root: Path, names: Sequence[str], pcfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, S, S) uint8 and masks (N, C, S, S) uint8 0 / 1, on the input square."""
    images, masks = [], []
    for name in names:
        pixels, organ_masks = read_case(root, name)
        images.append(prepare(pixels, pcfg))
        masks.append(np.stack([mask_to_input(m, pcfg) for m in organ_masks]).astype(np.uint8))
    return np.stack(images), np.stack(masks)


def _grey_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random gamma, contrast and brightness through one look-up table (0 stays 0: padding is padding)."""
    gamma = math.exp(rng.uniform(math.log(GAMMA[0]), math.log(GAMMA[1])))
    levels = np.arange(256, dtype=np.float32) / 255.0
    lut = 255.0 * levels**gamma * rng.uniform(*CONTRAST) + rng.uniform(-BRIGHTNESS, BRIGHTNESS)
    lut[0] = 0.0
    return cv2.LUT(image, np.clip(np.round(lut), 0, 255).astype(np.uint8))


def augmented(
    image: np.ndarray, masks: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One random warp of an image and its masks alike, then a grey-level jitter of the image."""
    matrix = AUGMENT.matrix(image.shape, rng)
    moved = np.stack([warp(m * np.uint8(255), matrix) >= 128 for m in masks]).astype(np.uint8)
    return _grey_jitter(warp(image, matrix), rng), moved


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """BCE on logits plus the mean over classes of 1 - soft Dice over the batch."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    probs = torch.sigmoid(logits)
    inter = (probs * target).sum(dim=(0, 2, 3))
    total = probs.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3))
    return bce + (1 - (2 * inter + smooth) / (total + smooth)).mean()


def _batch(
    images: np.ndarray, masks: np.ndarray, mean: float, std: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensors (B, 1, S, S) normalised and (B, C, S, S) float targets."""
    x = torch.from_numpy(normalise(images, NormStats(mean, std, 0)))[:, None]
    return x, torch.from_numpy(masks.astype(np.float32))


def square_dice(
    model: nn.Module, images: np.ndarray, masks: np.ndarray, mean: float, std: float
) -> np.ndarray:
    """Dice per (image, class) on the input square at probability 0.5 (1 where both masks are empty)."""
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), 8):
            x, y = _batch(images[start : start + 8], masks[start : start + 8], mean, std)
            pred = (model(x) >= 0).float()  # logit 0 = probability 0.5
            inter = (pred * y).sum(dim=(2, 3))
            total = pred.sum(dim=(2, 3)) + y.sum(dim=(2, 3))
            out.append(torch.where(total > 0, 2 * inter / total.clamp(min=1), 1.0).numpy())
    return np.concatenate(out)


def _lr(cfg: SegmenterTrainConfig, epoch: int, elapsed: float) -> float:
    """The cosine learning rate at the share of the run spent (epochs or time, whichever is further)."""
    spent = epoch / cfg.epochs
    if cfg.max_seconds:
        spent = max(spent, elapsed / cfg.max_seconds)
    floor = LR_FLOOR * cfg.lr
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * min(spent, 1.0)))


def _epoch(
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    data: tuple[np.ndarray, np.ndarray, NormStats],
    cfg: SegmenterTrainConfig,
    rng: np.random.Generator,
) -> float:
    """One pass over the training images with fresh augmentation; the mean loss."""
    images, masks, stats = data
    mean, std = stats.mean, stats.std
    model.train()
    losses = []
    order = rng.permutation(len(images))
    for start in range(0, len(order), cfg.batch_size):
        pairs = [augmented(images[i], masks[i], rng) for i in order[start : start + cfg.batch_size]]
        x, y = _batch(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), mean, std)
        loss = dice_bce_loss(model(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def _fit(
    model: nn.Module,
    cfg: SegmenterTrainConfig,
    train: tuple[np.ndarray, np.ndarray, NormStats],
    valid: tuple[np.ndarray, np.ndarray],
    start: float,
    progress: Progress | None,
) -> tuple[list[dict[str, Any]], int]:
    """Run the epochs (within the time budget) and load the best validation epoch's weights.

    Returns the per-epoch history and the best epoch (1-based).
    """
    stats = train[2]
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    history: list[dict[str, Any]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] = (-1.0, 0, {})
    for epoch in range(cfg.epochs):
        elapsed = time.perf_counter() - start
        if cfg.max_seconds and epoch > 0 and elapsed > cfg.max_seconds:
            log.info("time budget of %.0f s reached after %d epochs", cfg.max_seconds, epoch)
            break
        for group in optimiser.param_groups:
            group["lr"] = _lr(cfg, epoch, elapsed)
        loss = _epoch(model, optimiser, train, cfg, rng)
        dice = square_dice(model, *valid, stats.mean, stats.std).mean(axis=0)
        row = {
            "epoch": epoch + 1,
            "lr": optimiser.param_groups[0]["lr"],
            "train_loss": loss,
            **{f"val_dice_{organ}": float(d) for organ, d in zip(ORGANS, dice, strict=True)},
            "val_mean_dice": float(dice.mean()),
            "seconds": round(time.perf_counter() - start, 1),
        }
        history.append(row)
        if row["val_mean_dice"] > best[0]:
            best = (row["val_mean_dice"], epoch + 1, copy.deepcopy(model.state_dict()))
        if progress is not None:
            progress(row)
    model.load_state_dict(best[2])
    return history, best[1]


def train_segmenter(cfg: SegmenterTrainConfig, progress: Progress | None = None) -> TrainedSegmenter:
    """Train a segmenter on the JSRT folder of ``cfg.data_dir``; the best validation epoch is kept."""
    start = time.perf_counter()
    root = jsrt_root(cfg.data_dir)
    names = list_cases(root)
    split = split_cases(names, cfg.seed, cfg.fractions)
    train_names = split["train"][: cfg.max_images] if cfg.max_images else split["train"]
    pcfg = PreprocessConfig(input_size=cfg.input_size, fit="pad", clahe=cfg.clahe)
    images, masks = prepared_cases(root, train_names, pcfg)
    stats = compute_norm_stats(images)
    torch.manual_seed(cfg.seed)
    spec = SegmenterSpec(
        cfg.encoder, "Unet", cfg.decoder_channels, ORGANS, cfg.input_size, stats.mean, stats.std
    )
    model = build_network(spec)
    valid = prepared_cases(root, split["valid"], pcfg)
    history, best_epoch = _fit(model, cfg, (images, masks, stats), valid, start, progress)
    training = {
        "data": {
            "dataset": "JSRT chest X-rays with SCR organ masks",
            "images": len(names),
            "fingerprint": cases_fingerprint(names),
            "split": {"counts": {k: len(v) for k, v in split.items()}, "fractions": list(cfg.fractions)},
            "seed": cfg.seed,
            "trained_on": len(train_names),
        },
        "settings": {**cfg.to_dict(), "augment": asdict(AUGMENT), "gamma": GAMMA, "loss": "BCE + soft Dice"},
        "norm_images": stats.n_images,
        "selected_by": "val_mean_dice",
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "history": history,
    }
    card = SegmenterCard(spec=spec, preprocess=pcfg, training=training)
    return TrainedSegmenter(model.eval(), card, split, root, time.perf_counter() - start)
