"""Images with their boxes, for training and validating detectors.

An image enters a detector exactly as it enters a classifier: the preprocessing cache's uint8 square
(``PreprocessConfig``: fit into ``input_size`` with padding, optional CLAHE), and its boxes are moved
onto that square with ``boxes_to_input``. Images without boxes stay in as negatives (torchvision
accepts empty targets). Training augmentation is the classifiers' affine warp (``Augment``) applied
to the image and its box corners alike, plus a brightness / contrast change; no left-right flip by
default, since chest anatomy is lateralised. Each item's randomness comes from (seed, epoch, item).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cxrcore.data.augment import Augment, keep_boxes, warp, warp_boxes
from cxrcore.data.cache import PreprocessCache
from cxrcore.io.reader import image_size
from cxrcore.preprocess import boxes_to_input

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Jitter:
    """Ranges of the random intensity change: out = (in - 0.5) * contrast + 0.5 + brightness."""

    brightness: float = 0.08
    contrast: tuple[float, float] = (0.85, 1.15)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A changed copy of a float [0, 1] image, clipped to [0, 1]."""
        c = rng.uniform(*self.contrast)
        b = rng.uniform(-self.brightness, self.brightness)
        return np.clip((image - 0.5) * c + 0.5 + b, 0.0, 1.0).astype(np.float32)


def box_targets(
    rows: pd.DataFrame, boxes: pd.DataFrame, classes: Sequence[str]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row of the index: boxes (n, 4) x, y, w, h in file pixels and class indices (n,) into ``classes``.

    Boxes of other labels are left out, so an image whose only boxes are of other findings is a
    negative for these classes.
    """
    wanted = boxes[boxes["label"].isin(list(classes))]
    lookup = {name: i for i, name in enumerate(classes)}
    grouped = {k: g for k, g in wanted.groupby("image_id", sort=False)}
    out = []
    for image_id in rows["image_id"]:
        g = grouped.get(image_id)
        if g is None:
            out.append((np.zeros((0, 4), np.float32), np.zeros(0, np.int64)))
            continue
        xywh = g[["x", "y", "w", "h"]].to_numpy(np.float32)
        out.append((xywh, g["label"].map(lookup).to_numpy(np.int64)))
    return out


def _to_input(xywh: np.ndarray, path: str, cache: PreprocessCache) -> np.ndarray:
    """Boxes of one file moved onto its prepared square, as x1, y1, x2, y2."""
    if len(xywh) == 0:
        return np.zeros((0, 4), np.float32)
    width, height = image_size(path)
    frame = pd.DataFrame(xywh, columns=["x", "y", "w", "h"])
    moved = boxes_to_input(frame, width, height, cache.cfg)
    if moved is None:
        raise ValueError("detectors cannot train with a lung crop: it moves boxes by the image's content")
    a = moved[["x", "y", "w", "h"]].to_numpy(np.float32)
    return np.column_stack([a[:, :2], a[:, :2] + a[:, 2:]])


class BoxDataset(Dataset):
    """(image (1, S, S) float in [0, 1], target {"boxes" x1 y1 x2 y2, "labels", ["masks"]}) pairs."""

    def __init__(
        self,
        paths: Sequence[str],
        targets: Sequence[tuple[np.ndarray, np.ndarray]],
        cache: PreprocessCache,
        augment: Augment | None = None,
        seed: int = 0,
        masks: bool = False,
    ) -> None:
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} paths but {len(targets)} target entries")
        self.paths = list(paths)
        self.cache = cache
        self.boxes = [_to_input(xywh, p, cache) for (xywh, _), p in zip(targets, self.paths, strict=True)]
        self.classes = [labels for _, labels in targets]
        self.augment = augment
        self.jitter = Jitter() if augment is not None else None
        self.seed, self.epoch = seed, 0
        self.masks = masks

    def set_epoch(self, epoch: int) -> None:
        """Augmentations depend on (seed, epoch, item) only."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def n_boxes(self) -> int:
        """Boxes over all images."""
        return int(sum(len(b) for b in self.boxes))

    def __getitem__(self, item: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        u8 = self.cache.get(self.paths[item])
        boxes, labels = self.boxes[item], self.classes[item]
        if self.augment is not None:
            rng = np.random.default_rng((self.seed, self.epoch, item))
            matrix = self.augment.matrix(u8.shape, rng)
            u8 = warp(u8, matrix)
            boxes = warp_boxes(boxes, matrix, u8.shape)
            keep = keep_boxes(boxes)
            boxes, labels = boxes[keep], labels[keep]
            image = self.jitter(u8.astype(np.float32) / 255.0, rng)
        else:
            image = u8.astype(np.float32) / 255.0
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
        }
        if self.masks:
            target["masks"] = box_masks(target["boxes"], u8.shape)
        return torch.from_numpy(image)[None], target


def box_masks(boxes: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Box-filled masks (n, H, W) uint8: what Mask R-CNN learns from a dataset that only has boxes."""
    out = torch.zeros((len(boxes), *shape), dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.round().to(torch.int64).tolist()):
        out[i, y1:y2, x1:x2] = 1
    return out


def collate(batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[list, list]:
    """Lists of images and targets (detectors take lists, not stacked batches)."""
    return [b[0] for b in batch], [b[1] for b in batch]
