"""Building the pieces of a training run: data, model (random or repurposed), optimiser, schedule."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cxrcore.data.augment import Augment
from cxrcore.data.cache import PreprocessCache
from cxrcore.data.split import split_rows
from cxrcore.data.torch_dataset import ANY_FINDING, CXRDataset, target_matrix
from cxrcore.models import CXRModel, create_model, list_models, load_checkpoint, model_info, read_card
from cxrcore.preprocess import NormStats, PreprocessConfig, compute_norm_stats
from cxrcore.store import Workspace
from cxrcore.train.config import TrainConfig

log = logging.getLogger(__name__)

NORM_SAMPLE = 1000  # training images used for the normalisation statistics


@dataclass
class RunData:
    """The datasets of a run and what was derived from the training split."""

    train: CXRDataset
    valid: CXRDataset
    labels: list[str]
    freq_pos: np.ndarray
    norm: NormStats
    preprocess: PreprocessConfig
    fingerprint: str
    split: dict | None
    synthetic: bool = False  # the dataset is synthetic demo data (recorded in the model card)


def build_data(cfg: TrainConfig, ws: Workspace, input_size: int) -> RunData:
    """Training and validation datasets, label frequencies and normalisation from the training split."""
    record = ws.get_dataset(cfg.dataset)
    index = ws.load_dataset(cfg.dataset).index
    labels = list(cfg.labels) or record.labels
    train_rows, valid_rows = split_rows(index, "train"), split_rows(index, "valid")
    y_train = target_matrix(train_rows, labels, cfg.label_mode)
    y_valid = target_matrix(valid_rows, labels, cfg.label_mode)
    names = labels if cfg.label_mode == "multi" else [ANY_FINDING]
    known = ~np.isnan(y_train)
    freq_pos = np.nansum(y_train, axis=0) / np.maximum(known.sum(axis=0), 1)
    pcfg = PreprocessConfig(input_size=input_size, fit=cfg.fit, clahe=cfg.clahe)
    cache = PreprocessCache(ws.cache_dir / "preprocessed", pcfg)
    paths = train_rows["path"].tolist()
    sample = np.random.default_rng(cfg.seed).permutation(len(paths))[:NORM_SAMPLE]
    norm = compute_norm_stats(cache.get(paths[i]) for i in sorted(sample))
    augment = Augment(hflip=cfg.hflip) if cfg.augment else None
    train = CXRDataset(paths, y_train, cache, norm.mean, norm.std, augment, cfg.seed)
    valid = CXRDataset(valid_rows["path"].tolist(), y_valid, cache, norm.mean, norm.std)
    synthetic = bool(record.notes.get("synthetic"))
    return RunData(train, valid, names, freq_pos, norm, pcfg, record.fingerprint, record.split, synthetic)


def build_model(cfg: TrainConfig, labels: list[str], input_size: int, norm: NormStats) -> CXRModel:
    """A new model, or one whose backbone comes from a checkpoint (repurposing), with a new head if needed."""
    if cfg.init == "random":
        return create_model(cfg.model, labels=labels, input_size=input_size, mean=norm.mean, std=norm.std)
    model = load_checkpoint(Path(cfg.init)).model
    if model.spec.architecture != cfg.model:
        log.info("repurposing a %s checkpoint (config asked for %s)", model.spec.architecture, cfg.model)
    if list(model.spec.labels) != list(labels):
        model.reset_head(labels)
    # The new run's statistics and input size: the card then describes the images the run trained on.
    model.spec = dataclasses.replace(model.spec, input_size=input_size, mean=norm.mean, std=norm.std)
    return model


def resolve_model(cfg: TrainConfig) -> TrainConfig:
    """The config with a registry name that fits its task: a detector run may name just its backbone.

    Raises:
        ValueError: the model's task is not the run's (e.g. a detector asked to classify).
    """
    from cxrcore.models.detector_names import DEFAULT_KIND, DETECTOR_BACKBONES, detector_name
    from cxrcore.models.registry import model_task

    if cfg.task == "detect" and cfg.model in DETECTOR_BACKBONES:
        cfg = cfg.replace(model=detector_name(DEFAULT_KIND, cfg.model))
    task = model_task(cfg.model)
    if task != cfg.task:
        valid = ", ".join(list_models(task=cfg.task))
        raise ValueError(f"{cfg.model!r} is a {task} model, not a {cfg.task} one; valid options: {valid}")
    return cfg


def resolve_input_size(cfg: TrainConfig) -> int:
    """The configured size, else the checkpoint's (repurposing), else the model's default."""
    if cfg.input_size:
        return cfg.input_size
    if cfg.init != "random":
        card = read_card(cfg.init)
        if card.task == cfg.task:  # a classifier's input size says nothing about a detector's
            return card.input_size
    return int(model_info(cfg.model)["input_size"])


def build_optimizer(cfg: TrainConfig, model: CXRModel) -> torch.optim.Optimizer:
    """AdamW or SGD with the backbone frozen or at a lower learning rate when asked."""
    backbone = list(model.backbone_parameters())
    head = list(model.head_parameters())
    for p in backbone:
        p.requires_grad_(not cfg.freeze_backbone)
    groups = [{"params": head, "lr": cfg.lr}]
    if not cfg.freeze_backbone:
        groups.append({"params": backbone, "lr": cfg.lr * cfg.backbone_lr_scale})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_schedule(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Cosine over the epochs, divide-by-10 on a validation plateau, or constant."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=0.1, patience=cfg.plateau_patience
        )
    return None


def pick_device(cfg: TrainConfig) -> torch.device:
    """CUDA when asked or available under "auto", else CPU."""
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 (or fp16) autocast on GPUs that support it; off on CPU under "auto" (slower there, not faster)."""
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    if cfg.amp == "fp16":
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16
