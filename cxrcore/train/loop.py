"""The training loop: epochs, validation AUROC, best/last checkpoints, resume, early stopping, DDP.

Everything a run does is fixed by its TrainConfig and data: the shuffle of epoch e comes from
seed + e, each image's augmentation from (seed, epoch, item), dropout from a seed per epoch. So a run
killed at any moment and resumed from its last completed epoch ends with the same weights as a run
that was never interrupted (with workers=0; worker processes do not change the data, only timing).

State needed to resume (optimiser, schedule, scaler, history) is written after every epoch to
``resume.pt`` with ``torch.save`` and read back with ``torch.load(weights_only=True)``, which
accepts tensors and plain containers only and never runs code.
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
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from cxrcore import jsonsafe
from cxrcore.atomic import atomic_path, write_bytes_atomic, write_error
from cxrcore.data.torch_dataset import CXRDataset
from cxrcore.evaluate.metrics import auroc_per_label, macro_mean
from cxrcore.models import CXRModel, save_checkpoint
from cxrcore.models.card import CheckpointError
from cxrcore.models.guard import fit_checkpoint_guard
from cxrcore.models.model_card import DatasetRecord, ModelCard
from cxrcore.store import Workspace
from cxrcore.train import setup
from cxrcore.train.config import TrainConfig
from cxrcore.train.distributed import DistInfo, init_distributed, shutdown_distributed, train_sampler
from cxrcore.train.losses import MaskedLoss
from cxrcore.train.progress import Reporter

log = logging.getLogger(__name__)


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


def _atomic_torch_save(obj: dict[str, Any], target: Path) -> None:
    with atomic_path(target) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:  # PyTorch's writer reports a full disk as a RuntimeError
            raise write_error(target, exc) from exc


def _score(record: dict[str, Any]) -> float:
    """Model selection score: validation macro AUROC, or minus the validation loss when AUROC is undefined."""
    auroc = record["val_auroc"]
    return auroc if math.isfinite(auroc) else -record["val_loss"]


@torch.no_grad()
def validate(
    model: CXRModel, loader: DataLoader, loss_fn: MaskedLoss, labels: list[str], device: torch.device
) -> dict:
    """Validation loss and per-label AUROC over a whole loader."""
    model.eval()
    logits, targets = [], []
    for x, y in loader:
        logits.append(model(x.to(device)).float().cpu())
        targets.append(y)
    z, t = torch.cat(logits), torch.cat(targets)
    per_label = auroc_per_label(t.numpy(), torch.sigmoid(z).numpy(), labels)
    return {
        "val_loss": float(loss_fn(z, t)),
        "val_auroc": macro_mean(per_label),
        "val_auroc_per_label": per_label,
    }


class Trainer:
    """One training run; ``run()`` goes through the remaining epochs."""

    def __init__(self, cfg: TrainConfig, ws: Workspace, reporter: Reporter, resume: bool = False) -> None:
        self.cfg = cfg if cfg.run_name else cfg.replace(run_name=default_run_name(cfg))
        self.ws, self.reporter = ws, reporter
        self.device = setup.pick_device(self.cfg)
        self.dist: DistInfo = init_distributed(self.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        torch.manual_seed(self.cfg.seed)
        size = setup.resolve_input_size(self.cfg)
        self.data = setup.build_data(self.cfg, ws, size)
        self.model = setup.build_model(self.cfg, self.data.labels, size, self.data.norm).to(self.device)
        self.loss_fn = MaskedLoss(self.cfg.loss, self.data.freq_pos).to(self.device)
        self.optimizer = setup.build_optimizer(self.cfg, self.model)
        self.schedule = setup.build_schedule(self.cfg, self.optimizer)
        self.amp = setup.autocast_dtype(self.cfg, self.device)
        self.scaler = torch.amp.GradScaler(enabled=self.amp == torch.float16)
        self.net = self._wrap_distributed() if self.dist.enabled else self.model
        if self.cfg.batch_size % self.dist.world_size:
            raise ValueError(
                f"batch size {self.cfg.batch_size} is not divisible by {self.dist.world_size} processes"
            )
        self.sampler = train_sampler(len(self.data.train), self.cfg.seed, self.dist)
        self.loader = DataLoader(
            self.data.train,
            batch_size=self.cfg.batch_size // self.dist.world_size,
            sampler=self.sampler,
            num_workers=self.cfg.workers,
            persistent_workers=self.cfg.workers > 0,
        )
        self.valid_loader = DataLoader(
            self.data.valid, batch_size=self.cfg.batch_size, num_workers=self.cfg.workers
        )
        self.run_dir = ws.home / "runs" / self.cfg.run_name
        self.history: list[dict[str, Any]] = []
        self.best = -math.inf
        self.start_epoch = 1
        if resume:
            self._load_resume_state()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            settings = jsonsafe.dumps(self.cfg.to_dict(), indent=2).encode()
            write_bytes_atomic(self.run_dir / "config.json", settings)

    def _wrap_distributed(self) -> DistributedDataParallel:
        """DDP over the model; on GPUs batch norm statistics are synchronised across processes.

        PyTorch synchronises batch norm on GPUs only: on CPU each process normalises with its own
        share of the batch, so CPU runs of batch-norm models differ slightly from one-process runs.
        """
        if self.device.type == "cuda":
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            return DistributedDataParallel(self.model, device_ids=[self.dist.local_rank])
        return DistributedDataParallel(self.model)

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch (after the optional cap)."""
        batches = len(self.loader) // self.cfg.accumulate
        return min(batches, self.cfg.max_steps_per_epoch) if self.cfg.max_steps_per_epoch else batches

    def _load_resume_state(self) -> None:
        path = self.run_dir / "resume.pt"
        if not path.exists():
            raise FileNotFoundError(f"no resumable state in {self.run_dir} (nothing finished an epoch yet)")
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # UnpicklingError for refused objects, others for damaged files
            raise CheckpointError(
                f"cannot resume from {path}: only tensors and plain containers are read "
                f"(torch.load weights_only=True), and this file is not one ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:160] if str(exc) else ''})"
            ) from exc
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.schedule is not None:
            self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        self.history = json.loads(state["history"])
        self.best = float(state["best"])
        self.start_epoch = int(state["epoch"]) + 1
        log.info("resuming %s after epoch %d", self.cfg.run_name, self.start_epoch - 1)

    def _save_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        card = ModelCard(
            spec=self.model.spec,
            preprocess=self.data.preprocess,
            norm_images=self.data.norm.n_images,
            dataset=DatasetRecord(
                self.cfg.dataset, self.data.fingerprint, dict(self.data.split or {}), self.data.synthetic
            ),
            training_config=self.cfg.to_dict(),
            history=tuple(self.history),
            epoch=epoch,
            metrics={k: record[k] for k in ("val_loss", "val_auroc", "val_auroc_per_label")},
        )
        save_checkpoint(self.run_dir / "last.safetensors", self.model, card)
        if _score(record) > self.best:
            self.best = _score(record)
            save_checkpoint(
                self.run_dir / "best.safetensors", self.model, card.replace(selected_by="val_auroc")
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
        _atomic_torch_save(state, self.run_dir / "resume.pt")

    def _train_epoch(self, epoch: int) -> float:
        self.net.train()
        self.sampler.set_epoch(epoch)
        self.data.train.set_epoch(epoch)
        torch.manual_seed(self.cfg.seed * 100_003 + epoch)  # dropout masks, per epoch
        losses: list[float] = []
        self.optimizer.zero_grad(set_to_none=True)
        for i, (x, y) in enumerate(self.loader):
            step = i // self.cfg.accumulate + 1
            if step > self.steps_per_epoch:
                break
            with torch.autocast(
                self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None
            ):
                loss = self.loss_fn(self.net(x.to(self.device)), y.to(self.device)) / self.cfg.accumulate
            self.scaler.scale(loss).backward()
            losses.append(loss.item() * self.cfg.accumulate)
            if (i + 1) % self.cfg.accumulate == 0:
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                if self.dist.is_main:
                    self.reporter.step(epoch, step, float(np.mean(losses[-self.cfg.accumulate :])))
                if self.reporter.should_stop():
                    break
        return float(np.mean(losses)) if losses else float("nan")

    def run(self) -> RunResult:
        """Train the remaining epochs; returns where the checkpoints are."""
        result = RunResult(self.run_dir, None, None, self.best, self.start_epoch - 1, self.history)
        info = {
            "device": str(self.device),
            "train_images": len(self.data.train),
            "valid_images": len(self.data.valid),
            "labels": self.data.labels,
            "start_epoch": self.start_epoch,
            "run_dir": str(self.run_dir),
        }
        if self.dist.is_main:
            self.reporter.started(self.cfg.epochs, self.steps_per_epoch, info)
        stale = 0
        try:
            for epoch in range(self.start_epoch, self.cfg.epochs + 1):
                started = time.perf_counter()
                train_loss = self._train_epoch(epoch)
                if self.reporter.should_stop():
                    result.stopped = "cancelled"
                    break
                record = {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    **validate(self.model, self.valid_loader, self.loss_fn, self.data.labels, self.device),
                    "lr": self.optimizer.param_groups[0]["lr"],
                }
                improved = _score(record) > self.best
                if isinstance(self.schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    self.schedule.step(_score(record))
                elif self.schedule is not None:
                    self.schedule.step()
                record["seconds"] = round(time.perf_counter() - started, 3)
                self.history.append(record)
                if self.dist.is_main:
                    self._save_epoch(epoch, record)
                    self.reporter.epoch_end(epoch, record)
                result.epochs_completed = epoch
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
            finished = [p for p in (best, last) if p.exists()]
            self._fit_guards(finished)
            self._calibrate(finished)
        return result

    def _calibrate(self, checkpoints: list[Path]) -> None:
        """Fit each final checkpoint's calibration and operating points on the validation split."""
        from cxrcore.evaluate.recalibrate import calibrate_checkpoint

        for checkpoint in checkpoints:
            try:
                calibrate_checkpoint(
                    checkpoint, self.ws, self.cfg.dataset, method=self.cfg.calibrate, score_test=False
                )
            except ValueError as exc:  # e.g. no label with both classes on validation
                log.warning("%s is not calibrated: %s", checkpoint, exc)

    def _fit_guards(self, checkpoints: list[Path]) -> None:
        """Store the upload guard (training-feature statistics) beside each final checkpoint."""
        plain = CXRDataset(
            self.data.train.paths,
            self.data.train.targets.numpy(),
            self.data.train.cache,
            self.data.train.mean,
            self.data.train.std,
        )
        for checkpoint in checkpoints:
            try:
                fit_checkpoint_guard(checkpoint, plain, self.data.valid, seed=self.cfg.seed)
            except (ValueError, np.linalg.LinAlgError) as exc:  # tiny splits: the app works without it
                log.warning("no upload guard for %s: %s", checkpoint, exc)


def run_training(cfg: TrainConfig, ws: Workspace, reporter: Reporter, resume: bool = False) -> RunResult:
    """Train a classifier, or a detector when ``task="detect"``, and return where its checkpoints are."""
    if cfg.task == "detect":
        from cxrcore.train.detect_loop import DetectTrainer

        return DetectTrainer(setup.resolve_model(cfg), ws, reporter, resume=resume).run()
    return Trainer(setup.resolve_model(cfg), ws, reporter, resume=resume).run()
