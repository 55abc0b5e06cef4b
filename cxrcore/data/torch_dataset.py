"""A torch Dataset over an index: cached prepared pixels, optional augmentation, training-set normalisation.

Grey images enter every model as ONE channel (see cxrcore.models.spec), normalised with the mean and
standard deviation of the training split that are stored with the model, at training, evaluation
and upload time alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cxrcore.data.augment import Augment
from cxrcore.data.cache import PreprocessCache
from cxrcore.data.index import DatasetError

ANY_FINDING = "Any finding"


def target_matrix(index: pd.DataFrame, labels: Sequence[str], mode: str = "multi") -> np.ndarray:
    """Targets: the chosen label columns, or one 'any finding' column (NaN only when all are unknown)."""
    missing = [name for name in labels if name not in index.columns]
    if missing:
        raise DatasetError(f"label(s) {missing} are not in the dataset")
    values = index[list(labels)].to_numpy(dtype=np.float32)
    if mode == "multi":
        return values
    if mode == "any":
        anyv = np.where(np.isnan(values).all(axis=1), np.nan, np.nan_to_num(values, nan=0.0).max(axis=1))
        return anyv.astype(np.float32)[:, None]
    raise ValueError(f"unknown label mode {mode!r}; valid options: multi, any")


class CXRDataset(Dataset):
    """(image tensor (1, S, S) normalised, target vector with NaN for unknown) pairs from an index."""

    def __init__(
        self,
        paths: Sequence[str],
        targets: np.ndarray,
        cache: PreprocessCache,
        mean: float,
        std: float,
        augment: Augment | None = None,
        seed: int = 0,
    ) -> None:
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} paths but {len(targets)} target rows")
        self.paths = list(paths)
        self.targets = torch.tensor(np.asarray(targets), dtype=torch.float32)
        self.cache = cache
        self.mean, self.std = float(mean), float(std)
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Augmentations depend on (seed, epoch, item) only, so runs repeat with or without workers."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self.cache.get(self.paths[item])
        if self.augment is not None:
            pixels = self.augment(pixels, np.random.default_rng((self.seed, self.epoch, item)))
        x = torch.from_numpy(pixels).to(torch.float32).div_(255.0).sub_(self.mean).div_(self.std)
        return x.unsqueeze(0), self.targets[item]
