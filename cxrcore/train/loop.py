"""The training loop: epochs, validation AUROC, best/last checkpoints, resume, early stopping, DDP.

Everything a run does is fixed by its TrainConfig and data: the shuffle of epoch e comes from
seed + e, each image's augmentation from (seed, epoch, item), dropout from a seed per epoch. So a run
killed at any moment and resumed from its last completed epoch ends with the same weights as a run
that was never interrupted (with workers=0; worker processes do not change the data, only timing).

The epoch loop, checkpoints and resume state are ``cxrcore.train.epochs.EpochLoop``'s, shared with
the detectors' runs.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from cxrcore.data.torch_dataset import CXRDataset
from cxrcore.evaluate.metrics import auroc_per_label, macro_mean
from cxrcore.models import CXRModel
from cxrcore.models.guard import fit_checkpoint_guard
from cxrcore.models.model_card import DatasetRecord, ModelCard
from cxrcore.store import Workspace
from cxrcore.train import setup
from cxrcore.train.config import TrainConfig
from cxrcore.train.distributed import DistInfo, init_distributed
from cxrcore.train.epochs import EpochLoop, RunResult, default_run_name
from cxrcore.train.losses import MaskedLoss
from cxrcore.train.progress import Reporter

log = logging.getLogger(__name__)


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


class Trainer(EpochLoop):
    """One classifier training run; ``run()`` goes through the remaining epochs."""

    selected_by = "val_auroc"

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
        self._train_loader(self.data.train)
        self.valid_loader = DataLoader(
            self.data.valid, batch_size=self.cfg.batch_size, num_workers=self.cfg.workers
        )
        self._open_run(resume)

    def _wrap_distributed(self) -> DistributedDataParallel:
        """DDP over the model; on GPUs batch norm statistics are synchronised across processes.

        PyTorch synchronises batch norm on GPUs only: on CPU each process normalises with its own
        share of the batch, so CPU runs of batch-norm models differ slightly from one-process runs.
        """
        if self.device.type == "cuda":
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            return DistributedDataParallel(self.model, device_ids=[self.dist.local_rank])
        return DistributedDataParallel(self.model)

    def card(self, epoch: int, record: dict[str, Any]) -> ModelCard:
        """The model card of the weights after ``epoch``."""
        return ModelCard(
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

    def score(self, record: dict[str, Any]) -> float:
        """Validation macro AUROC, or minus the validation loss when AUROC is undefined."""
        return _score(record)

    def _validate(self) -> dict[str, Any]:
        return validate(self.model, self.valid_loader, self.loss_fn, self.data.labels, self.device)

    def _batch_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            return self.loss_fn(self.net(x.to(self.device)), y.to(self.device))

    def _info(self) -> dict[str, Any]:
        return {
            **super()._info(),
            "valid_images": len(self.data.valid),
            "labels": self.data.labels,
        }

    def _finish(self, checkpoints: list[Path]) -> None:
        self._fit_guards(checkpoints)
        self._calibrate(checkpoints)

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
