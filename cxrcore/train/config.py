"""The training configuration: one frozen dataclass, readable from TOML or JSON and stored with the run.

This module holds every training choice's vocabulary and, through the dataclass, every default; the
CLI and the Train page read them from here. It does not import PyTorch, so the CLI can build its
parser without it.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cxrcore.hints import unknown_choice
from cxrcore.models.model_card import TASKS
from cxrcore.models.readout import AUTO_METHOD, CALIBRATION_CHOICES
from cxrcore.preprocess import FIT_MODES

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "plateau", "none")
AMP_MODES = ("auto", "off", "bf16", "fp16")
LOSSES: tuple[str, ...] = ("weighted_bce", "bce", "pos_weight_bce")  # see cxrcore.train.losses
LABEL_MODES = ("multi", "any")  # any: one label "Any finding" = 1 when any selected label is positive
LABEL_MODE_NAMES = {"multi": "Multi-label (one output per label)", "any": "Any finding (one output)"}
INIT_RANDOM = "random"  # the other value of ``init`` is the path of a checkpoint to repurpose


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; two runs with equal configs and data give equal weights."""

    dataset: str
    model: str = "resnet18"  # with task "detect", a backbone name means its Faster R-CNN
    task: str = "classify"  # or "detect": a box detector (cxrcore.train.detect_loop)
    labels: tuple[str, ...] = ()  # empty: every label of the dataset
    label_mode: str = "multi"
    input_size: int = 0  # 0: the model's default input size (or the repurposed checkpoint's)
    fit: str = "pad"
    clahe: bool = False
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    momentum: float = 0.9
    schedule: str = "cosine"
    plateau_patience: int = 2  # epochs without improvement before the rate is divided by 10
    early_stop_patience: int = 0  # 0: never stop early
    loss: str = "weighted_bce"
    augment: bool = True
    hflip: bool = False  # anatomy is lateralised (heart on the left), so flipping is off by default
    accumulate: int = 1
    amp: str = "auto"
    seed: int = 0
    workers: int = 0
    max_steps_per_epoch: int = 0  # 0: the whole training split each epoch
    init: str = INIT_RANDOM  # INIT_RANDOM or the path of a checkpoint to repurpose
    freeze_backbone: bool = False
    backbone_lr_scale: float = 1.0
    run_name: str = ""
    device: str = "auto"
    # Fitted on the validation split at the end, with per-label operating points (CALIBRATION_CHOICES).
    calibrate: str = AUTO_METHOD
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value, options in (
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("schedule", self.schedule, SCHEDULES),
            ("amp", self.amp, AMP_MODES),
            ("loss", self.loss, LOSSES),
            ("label_mode", self.label_mode, LABEL_MODES),
            ("fit", self.fit, FIT_MODES),
            ("task", self.task, TASKS),
            ("calibrate", self.calibrate, CALIBRATION_CHOICES),
        ):
            if value not in options:
                raise ValueError(unknown_choice(name, value, options))
        for name in ("epochs", "batch_size", "accumulate"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        object.__setattr__(self, "labels", tuple(self.labels))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        out = dataclasses.asdict(self)
        out["labels"] = list(self.labels)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys are an error that lists the valid ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        if "image_size" in values and "input_size" not in values:  # the name used before version 2 cards
            values = {("input_size" if k == "image_size" else k): v for k, v in values.items()}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown training setting(s) {unknown}; valid settings: {', '.join(sorted(known))}"
            )
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a .toml or .json file (a [train] table in TOML is also accepted), then apply overrides."""
        path = Path(path)
        text = path.read_text()
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        values = values.get("train", values)
        return cls.from_dict({**values, **{k: v for k, v in overrides.items() if v is not None}})

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)


# Each setting's default value (``dataset`` has none), for forms and help texts.
TRAIN_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
)

# A detector run's settings where they differ from TRAIN_DEFAULTS (the Train form starts there): the
# proposal and box heads train more steadily at 3e-4 than at the classifiers' 1e-3, and a batch of
# detector-size images (512 px by default) weighs far more than a batch of classifier inputs.
DETECT_DEFAULTS: Mapping[str, Any] = MappingProxyType({"lr": 3e-4, "batch_size": 4})
