"""Training a lesion detector: the classifier runs' machinery (config, jobs, resume, DDP) with boxes.

A run with ``task="detect"`` trains the registry's Faster R-CNN or Mask R-CNN (``cxrcore.models.detector``)
on every training-split image of a dataset, boxes or not (images without boxes are negatives). The
trunk starts random, from a classifier checkpoint's trunk (``init=PATH`` of a classifier), or from a
detector checkpoint (fine-tuning); ``freeze_backbone`` trains the head only (pyramid, proposals, box
head), as the "head only" runs of the RSNA Mask R-CNN work did.

Each epoch is validated on the validation split: AP at IoU 0.5 per class (their mean selects the best
checkpoint) and image-level AUROC from each image's highest box score per class, so a detector can be
compared with a classifier. The epoch loop, checkpoints and resume state are
``cxrcore.train.epochs.EpochLoop``'s, as the classifiers' are.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from cxrcore.data.augment import Augment
from cxrcore.data.box_dataset import BoxDataset, box_targets, collate
from cxrcore.data.cache import PreprocessCache
from cxrcore.data.split import split_rows
from cxrcore.evaluate.localisation import average_precision
from cxrcore.evaluate.metrics import auroc_per_label, macro_mean
from cxrcore.models import create_model, load_checkpoint
from cxrcore.models.detector import BOX_FORMAT, CXRDetector, load_trunk_weights, parse_name
from cxrcore.models.model_card import DatasetRecord, ModelCard
from cxrcore.preprocess import PreprocessConfig, compute_norm_stats
from cxrcore.store import Workspace
from cxrcore.train import setup
from cxrcore.train.config import INIT_RANDOM, TrainConfig
from cxrcore.train.distributed import init_distributed
from cxrcore.train.epochs import EpochLoop, default_run_name
from cxrcore.train.progress import Reporter

log = logging.getLogger(__name__)

NORM_SAMPLE = setup.NORM_SAMPLE
SELECTED_BY = "val_map50"


@dataclass
class BoxData:
    """The training and validation images of a detector run and what was derived from them."""

    train: BoxDataset
    valid: BoxDataset
    classes: list[str]
    preprocess: PreprocessConfig
    mean: float
    std: float
    norm_images: int
    fingerprint: str
    split: dict | None
    synthetic: bool


def dataset_classes(ws: Workspace, name: str) -> list[str]:
    """The finding names that have boxes in a registered dataset, sorted."""
    return ws.box_labels(name)


def build_box_data(cfg: TrainConfig, ws: Workspace, input_size: int, masks: bool) -> BoxData:
    """Training / validation images with boxes of the configured classes; every image of a split is used."""
    record = ws.get_dataset(cfg.dataset)
    loaded = ws.load_dataset(cfg.dataset)
    classes = list(cfg.labels) or dataset_classes(ws, cfg.dataset)
    if not classes:
        raise ValueError(f"dataset {cfg.dataset!r} has no boxes: a detector needs boxes to learn from")
    unknown = sorted(set(classes) - set(loaded.boxes["label"].astype(str)))
    if unknown:
        raise ValueError(
            f"no boxes of {unknown} in {cfg.dataset!r}; box labels: {dataset_classes(ws, cfg.dataset)}"
        )
    pcfg = PreprocessConfig(input_size=input_size, fit=cfg.fit, clahe=cfg.clahe)
    cache = PreprocessCache(ws.cache_dir / "preprocessed", pcfg)
    parts = {}
    for split in ("train", "valid"):
        rows = split_rows(loaded.index, split)
        parts[split] = (rows["path"].tolist(), box_targets(rows, loaded.boxes, classes))
    paths = parts["train"][0]
    sample = np.random.default_rng(cfg.seed).permutation(len(paths))[:NORM_SAMPLE]
    norm = compute_norm_stats(cache.get(paths[i]) for i in sorted(sample))
    augment = Augment(hflip=cfg.hflip) if cfg.augment else None
    train = BoxDataset(*parts["train"], cache, augment, cfg.seed, masks=masks)
    valid = BoxDataset(*parts["valid"], cache, masks=False)
    synthetic = bool(record.notes.get("synthetic"))
    return BoxData(
        train,
        valid,
        classes,
        pcfg,
        norm.mean,
        norm.std,
        norm.n_images,
        record.fingerprint,
        record.split,
        synthetic,
    )


def build_detector(cfg: TrainConfig, data: BoxData, input_size: int) -> tuple[CXRDetector, str]:
    """A new detector (random, or its trunk from a classifier) or a detector checkpoint to fine-tune."""
    if cfg.init == INIT_RANDOM:
        model = create_model(
            cfg.model, labels=data.classes, input_size=input_size, mean=data.mean, std=data.std
        )
        return model, "random"
    source = load_checkpoint(Path(cfg.init))
    if source.task == "detect":
        if list(source.labels) != data.classes or source.input_size != input_size:
            raise ValueError(
                f"{source.name} detects {list(source.labels)} at {source.input_size} px; this run asks for "
                f"{data.classes} at {input_size} px: start from its classifier or at random instead"
            )
        source.model.set_norm(data.mean, data.std)
        return source.model, f"detector {source.name}"
    model = create_model(cfg.model, labels=data.classes, input_size=input_size, mean=data.mean, std=data.std)
    loaded = load_trunk_weights(model, source.model.state_dict())
    return model, f"classifier {source.name} ({loaded} trunk tensors)"


@torch.no_grad()
def validate_detector(model: CXRDetector, data: BoxDataset, classes: list[str]) -> dict[str, Any]:
    """AP at IoU 0.5 per class and image-level AUROC (highest box score per class) over a dataset."""
    model.eval()
    dets: list[dict[str, np.ndarray]] = []
    for i in range(len(data)):
        image, _ = data[i]
        out = model([image])[0]
        dets.append({k: out[k].numpy() for k in ("boxes", "scores", "labels")})
    ap, truth, score = {}, np.zeros((len(data), len(classes))), np.zeros((len(data), len(classes)))
    for c, name in enumerate(classes):
        preds, gts = [], []
        for i, d in enumerate(dets):
            mine = d["labels"] == c
            xyxy = d["boxes"][mine]
            preds.append((np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]]), d["scores"][mine]))
            gt = data.boxes[i][data.classes[i] == c]
            gts.append(np.column_stack([gt[:, :2], gt[:, 2:] - gt[:, :2]]))
            truth[i, c] = float(len(gt) > 0)
            score[i, c] = float(d["scores"][mine].max()) if mine.any() else 0.0
        ap[name] = average_precision(preds, gts, 0.5) if truth[:, c].any() else float("nan")
    auroc = auroc_per_label(truth, score, classes)
    return {
        "val_map50": macro_mean(ap),
        "val_ap50_per_label": ap,
        "val_auroc": macro_mean(auroc),
        "val_auroc_per_label": auroc,
    }


class DetectTrainer(EpochLoop):
    """One detector training run; ``run()`` goes through the remaining epochs."""

    selected_by = SELECTED_BY

    def __init__(self, cfg: TrainConfig, ws: Workspace, reporter: Reporter, resume: bool = False) -> None:
        self.cfg = cfg if cfg.run_name else cfg.replace(run_name=default_run_name(cfg))
        self.ws, self.reporter = ws, reporter
        self.device = setup.pick_device(self.cfg)
        self.dist = init_distributed(self.device)
        torch.manual_seed(self.cfg.seed)
        self.kind = parse_name(self.cfg.model)[0]
        self.size = setup.resolve_input_size(self.cfg)
        self.data = build_box_data(self.cfg, ws, self.size, masks=self.kind == "mask_rcnn")
        self.model, self.init = build_detector(self.cfg, self.data, self.size)
        self.model.to(self.device)
        self.optimizer = setup.build_optimizer(self.cfg, self.model)
        self.schedule = setup.build_schedule(self.cfg, self.optimizer)
        # Proposals without a box of some class leave parts of the heads unused in a step.
        self.net = (
            DistributedDataParallel(self.model, find_unused_parameters=True)
            if self.dist.enabled
            else self.model
        )
        self.scaler = torch.amp.GradScaler(enabled=False)  # detectors train in full precision
        self._train_loader(self.data.train, collate_fn=collate)
        self._open_run(resume)

    def card(self, epoch: int, record: dict[str, Any]) -> ModelCard:
        """The model card of the weights after ``epoch``."""
        return ModelCard(
            spec=self.model.spec,
            task="detect",
            preprocess=self.data.preprocess,
            norm_images=self.data.norm_images,
            dataset=DatasetRecord(
                self.cfg.dataset, self.data.fingerprint, dict(self.data.split or {}), self.data.synthetic
            ),
            training_config=self.cfg.to_dict(),
            history=tuple(self.history),
            epoch=epoch,
            metrics={k: v for k, v in record.items() if k.startswith("val_")},
            detector={
                "kind": self.kind,
                "backbone": self.model.backbone,
                "classes": list(self.data.classes),
                "box_format": BOX_FORMAT,
                "input_size": self.size,
                "training": "head only" if self.cfg.freeze_backbone else "complete",
                "init": self.init,
                "augment": self.cfg.augment,
                "train_images": len(self.data.train),
                "train_boxes": self.data.train.n_boxes,
                "seconds": round(time.time() - self.started_at, 1),
            },
        )

    def score(self, record: dict[str, Any]) -> float:
        """Validation mAP@0.5, or minus the training loss when it is undefined (no validation boxes)."""
        return record[SELECTED_BY] if math.isfinite(record[SELECTED_BY]) else -record["train_loss"]

    def _validate(self) -> dict[str, Any]:
        return validate_detector(self.model, self.data.valid, self.data.classes)

    def _batch_loss(self, batch: tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]) -> torch.Tensor:
        images = [x.to(self.device) for x in batch[0]]
        targets = [{k: v.to(self.device) for k, v in t.items()} for t in batch[1]]
        return sum(self.net(images, targets).values())

    def _before_step(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)  # early RPN steps can spike

    def _info(self) -> dict[str, Any]:
        return {
            **super()._info(),
            "task": "detect",
            "train_boxes": self.data.train.n_boxes,
            "valid_images": len(self.data.valid),
            "labels": self.data.classes,
            "init": self.init,
        }
