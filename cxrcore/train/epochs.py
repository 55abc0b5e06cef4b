"""What every training run shares, classifier or detector: the run folder, the epoch loop, checkpoints
and resume.

``EpochLoop.run()`` trains the remaining epochs: each one is trained (``_batch_loss`` per batch, with
gradient accumulation and the mixed-precision scaler), validated (``_validate``), scored (``score``),
stepped through the learning-rate schedule, and saved: ``last.safetensors``, ``best.safetensors``
when the score improved, and ``resume.pt``. State needed to resume (weights, optimiser, schedule,
scaler, history) is written with ``torch.save`` and read back with ``torch.load(weights_only=True)``,
which accepts tensors and plain containers only and never runs code. Subclasses build the model,
data and loaders (``cxrcore.train.loop.Trainer``, ``cxrcore.train.detect_loop.DetectTrainer``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from cxrcore import jsonsafe
from cxrcore.atomic import atomic_path, write_bytes_atomic, write_error
from cxrcore.models import save_checkpoint
from cxrcore.models.card import CheckpointError
from cxrcore.models.model_card import ModelCard
from cxrcore.store import Workspace
from cxrcore.train.config import TrainConfig
from cxrcore.train.distributed import DistInfo, shutdown_distributed, train_sampler
from cxrcore.train.progress import Reporter

log = logging.getLogger(__name__)

RESUME_FILE = "resume.pt"


@dataclass
class RunResult:
    """Where a finished run left its files, and its per-epoch history."""

    run_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    best_metric: float
    epochs_completed: int
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""  # "", "early stopping" or "cancelled"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "run_dir": str(self.run_dir),
            "best_checkpoint": str(self.best_checkpoint) if self.best_checkpoint else None,
            "last_checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
            "best_metric": self.best_metric,
            "epochs_completed": self.epochs_completed,
            "history": self.history,
            "stopped": self.stopped,
        }


def default_run_name(cfg: TrainConfig) -> str:
    """model-dataset-timestamp."""
    return f"{cfg.model}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def atomic_torch_save(obj: dict[str, Any], target: Path) -> None:
    """``torch.save`` through a temporary file beside ``target``; a full disk raises WriteError."""
    with atomic_path(target) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:  # PyTorch's writer reports a full disk as a RuntimeError
            raise write_error(target, exc) from exc


class EpochLoop:
    """The epoch loop of one run; a subclass sets the attributes below (``_train_loader`` sets the
    loader's), then calls ``_open_run``.

    Subclasses provide ``card``, ``score``, ``_validate`` and ``_batch_loss``, and may extend
    ``_info``, ``_before_step`` and ``_finish``.
    """

    selected_by: str  # the record's key that selects best.safetensors
    cfg: TrainConfig
    ws: Workspace
    reporter: Reporter
    device: torch.device
    dist: DistInfo
    model: torch.nn.Module
    net: torch.nn.Module  # the model, or DDP over it
    optimizer: torch.optim.Optimizer
    schedule: Any
    scaler: torch.amp.GradScaler
    sampler: Any
    loader: DataLoader
    train_set: Any  # the training dataset (its augmentation is seeded per epoch)

    def _train_loader(self, dataset: Any, collate_fn: Any = None) -> None:
        """The training loader over ``dataset``: each process's share of a batch, shuffled per epoch."""
        if self.cfg.batch_size % self.dist.world_size:
            raise ValueError(
                f"batch size {self.cfg.batch_size} is not divisible by {self.dist.world_size} processes"
            )
        self.train_set = dataset
        self.sampler = train_sampler(len(dataset), self.cfg.seed, self.dist)
        self.loader = DataLoader(
            dataset,
            batch_size=self.cfg.batch_size // self.dist.world_size,
            sampler=self.sampler,
            num_workers=self.cfg.workers,
            collate_fn=collate_fn,
            persistent_workers=self.cfg.workers > 0,
        )

    def _open_run(self, resume: bool) -> None:
        """The run folder, history and best score; the resume state when asked; the run's config.json."""
        self.run_dir = self.ws.home / "runs" / self.cfg.run_name
        self.history: list[dict[str, Any]] = []
        self.best = -math.inf
        self.start_epoch = 1
        self.started_at = time.time()
        if resume:
            self._load_resume_state()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            settings = jsonsafe.dumps(self.cfg.to_dict(), indent=2).encode()
            write_bytes_atomic(self.run_dir / "config.json", settings)

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch (after the optional cap)."""
        batches = len(self.loader) // self.cfg.accumulate
        return min(batches, self.cfg.max_steps_per_epoch) if self.cfg.max_steps_per_epoch else batches

    # ------------------------------------------------------------------ what a subclass provides

    def card(self, epoch: int, record: dict[str, Any]) -> ModelCard:
        """The model card of the weights after ``epoch``."""
        raise NotImplementedError

    def score(self, record: dict[str, Any]) -> float:
        """The model-selection score of an epoch's record (higher is better, always finite)."""
        raise NotImplementedError

    def _validate(self) -> dict[str, Any]:
        """The validation figures of the current weights (keys starting with ``val_``)."""
        raise NotImplementedError

    def _batch_loss(self, batch: Any) -> torch.Tensor:
        """The training loss of one batch from the loader."""
        raise NotImplementedError

    def _info(self) -> dict[str, Any]:
        """What the reporter is told when the run starts."""
        return {
            "device": str(self.device),
            "train_images": len(self.train_set),
            "start_epoch": self.start_epoch,
            "run_dir": str(self.run_dir),
        }

    def _before_step(self) -> None:
        """Called before each optimiser step, gradients in place (e.g. to clip them)."""

    def _finish(self, checkpoints: list[Path]) -> None:
        """Called with the final checkpoints of a run that was not cancelled."""

    # ------------------------------------------------------------------ resume and checkpoints

    def _load_resume_state(self) -> None:
        path = self.run_dir / RESUME_FILE
        if not path.exists():
            raise FileNotFoundError(f"no resumable state in {self.run_dir} (nothing finished an epoch yet)")
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # UnpicklingError for refused objects, others for damaged files
            first = str(exc).splitlines()[0][:160] if str(exc) else ""
            raise CheckpointError(
                f"cannot resume from {path}: only tensors and plain containers are read "
                f"(torch.load weights_only=True), and this file is not one ({type(exc).__name__}: {first})"
            ) from exc
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.schedule is not None:
            self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.history = json.loads(state["history"])
        self.best = float(state["best"])
        self.start_epoch = int(state["epoch"]) + 1
        log.info("resuming %s after epoch %d", self.cfg.run_name, self.start_epoch - 1)

    def _save_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        card = self.card(epoch, record)
        save_checkpoint(self.run_dir / "last.safetensors", self.model, card)
        if self.score(record) > self.best:
            self.best = self.score(record)
            save_checkpoint(
                self.run_dir / "best.safetensors", self.model, card.replace(selected_by=self.selected_by)
            )
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule is not None else {},
            "scaler": self.scaler.state_dict(),
            "history": json.dumps(self.history),
            "best": self.best,
            "epoch": epoch,
        }
        atomic_torch_save(state, self.run_dir / RESUME_FILE)

    # ------------------------------------------------------------------ the loop

    def _train_epoch(self, epoch: int) -> float:
        self.net.train()
        self.sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)
        torch.manual_seed(self.cfg.seed * 100_003 + epoch)  # dropout masks, per epoch
        losses: list[float] = []
        self.optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(self.loader):
            step = i // self.cfg.accumulate + 1
            if step > self.steps_per_epoch:
                break
            loss = self._batch_loss(batch) / self.cfg.accumulate
            self.scaler.scale(loss).backward()
            losses.append(loss.item() * self.cfg.accumulate)
            if (i + 1) % self.cfg.accumulate == 0:
                self._before_step()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                if self.dist.is_main:
                    self.reporter.step(epoch, step, float(np.mean(losses[-self.cfg.accumulate :])))
                if self.reporter.should_stop():
                    break
        return float(np.mean(losses)) if losses else float("nan")

    def _epoch(self, epoch: int, result: RunResult) -> bool:
        """Train, validate, step the schedule and save one epoch; whether the score improved."""
        started = time.perf_counter()
        record = {"epoch": epoch, "train_loss": self._train_epoch(epoch)}
        if self.reporter.should_stop():
            result.stopped = "cancelled"
            return False
        record.update(self._validate())
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        improved = self.score(record) > self.best
        if isinstance(self.schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.schedule.step(self.score(record))
        elif self.schedule is not None:
            self.schedule.step()
        record["seconds"] = round(time.perf_counter() - started, 3)
        self.history.append(record)
        if self.dist.is_main:
            self._save_epoch(epoch, record)
            self.reporter.epoch_end(epoch, record)
        result.epochs_completed = epoch
        return improved

    def run(self) -> RunResult:
        """Train the remaining epochs; returns where the checkpoints are."""
        result = RunResult(self.run_dir, None, None, self.best, self.start_epoch - 1, self.history)
        if self.dist.is_main:
            self.reporter.started(self.cfg.epochs, self.steps_per_epoch, self._info())
        stale = 0
        try:
            for epoch in range(self.start_epoch, self.cfg.epochs + 1):
                improved = self._epoch(epoch, result)
                if result.stopped:
                    break
                stale = 0 if improved else stale + 1
                if self.cfg.early_stop_patience and stale >= self.cfg.early_stop_patience:
                    result.stopped = "early stopping"
                    break
        finally:
            shutdown_distributed(self.dist)
        result.best_metric = self.best
        best, last = self.run_dir / "best.safetensors", self.run_dir / "last.safetensors"
        result.best_checkpoint = best if best.exists() else None
        result.last_checkpoint = last if last.exists() else None
        if self.dist.is_main and result.stopped != "cancelled":
            self._finish([p for p in (best, last) if p.exists()])
        return result
