"""torchrun / DDP plumbing: rank and world size from the environment, process group set-up, samplers.

``torchrun --nproc-per-node N -m cxrcore.train --config RUN.json`` starts N processes; each reads
RANK / WORLD_SIZE / LOCAL_RANK, joins a process group (NCCL on GPUs, gloo on CPU) and trains on its
share of every global batch. Only rank 0 writes checkpoints and reports progress.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a distributed run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and reports progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when started by torchrun; a plain single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info


def shutdown_distributed(info: DistInfo) -> None:
    """Leave the process group."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


class EpochShuffle(Sampler[int]):
    """The same permutation DistributedSampler draws (seed + epoch), for one process.

    With it, a single-process run and an N-process run see the same images in each global batch,
    so their updates agree.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation to draw."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def train_sampler(n: int, seed: int, info: DistInfo) -> EpochShuffle | DistributedSampler:
    """The training sampler for this process."""
    if not info.enabled:
        return EpochShuffle(n, seed)
    return DistributedSampler(range(n), num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed)
