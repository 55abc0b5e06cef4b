"""Commands for training runs and background jobs."""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType
from typing import Any

import pandas as pd
from tqdm import tqdm

from cxrcore.cli.output import EXIT_ERROR, emit
from cxrcore.models.model_card import TASKS
from cxrcore.models.readout import CALIBRATION_CHOICES
from cxrcore.preprocess import FIT_MODES
from cxrcore.store import Workspace
from cxrcore.train import jobs  # light: no PyTorch until a training command needs it
from cxrcore.train.config import (
    AMP_MODES,
    INIT_RANDOM,
    LABEL_MODE_NAMES,
    LABEL_MODES,
    LOSSES,
    OPTIMIZERS,
    SCHEDULES,
    TRAIN_DEFAULTS,
    TrainConfig,
)


class ConsoleReporter:
    """Training progress in the terminal: a progress bar per epoch and one line per validated epoch."""

    def __init__(self) -> None:
        self.total_epochs, self.steps_per_epoch = 0, 0
        self.bar: Any = None
        self.stop = False  # set by the first Ctrl-C

    def started(self, total_epochs: int, steps_per_epoch: int, info: dict[str, Any]) -> None:
        """Say what is being trained where."""
        self.total_epochs, self.steps_per_epoch = total_epochs, steps_per_epoch
        tqdm.write(
            f"training on {info.get('device')}: {info.get('train_images')} training and "
            f"{info.get('valid_images')} validation images, {total_epochs} epochs x {steps_per_epoch} steps; "
            f"run folder {info.get('run_dir')}"
        )

    def step(self, epoch: int, step: int, loss: float) -> None:
        """Advance the epoch's bar and show the latest loss."""
        if self.bar is None:
            desc = f"epoch {epoch}/{self.total_epochs}"
            self.bar = tqdm(total=self.steps_per_epoch, desc=desc, unit="step", leave=False)
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self.bar.update(step - self.bar.n)

    def epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        """Close the bar and print the epoch's losses and validation AUROC."""
        self.close()
        tqdm.write(f"epoch {epoch}/{self.total_epochs}: {epoch_line(record)}")

    def should_stop(self) -> bool:
        """Whether Ctrl-C was pressed once."""
        return self.stop

    def close(self) -> None:
        """Close a bar left open by a run stopped mid-epoch."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# What an epoch's line shows, when the record has it: key, words, format.
_EPOCH_FIGURES = (
    ("train_loss", "train loss", ".4f"),
    ("val_loss", "val loss", ".4f"),
    ("val_map50", "val mAP@0.5", ".3f"),
    ("val_auroc", "val AUROC", ".3f"),
)


def epoch_line(record: dict[str, Any]) -> str:
    """One validated epoch in words: the losses and scores the run recorded, and its duration."""
    parts = [
        f"{words} {record[key]:{fmt}}" for key, words, fmt in _EPOCH_FIGURES if record.get(key) is not None
    ]
    return ", ".join(parts) + f" ({record.get('seconds', float('nan')):.1f} s)"


def _train_config(args: argparse.Namespace, ws: Workspace) -> TrainConfig:
    """The TrainConfig from a resumed run's config, a --config file or defaults, then the options given."""
    flags = {"augment": False if args.no_augment else None, "freeze_backbone": args.freeze_backbone or None}
    labels = tuple(x.strip() for x in args.labels.split(",") if x.strip()) if args.labels else None
    overrides = {
        **{k: getattr(args, k) for k in (*_TRAIN_OPTIONS, *_CHOICES)},
        **flags,
        "labels": labels,
        "max_steps_per_epoch": args.steps_per_epoch,
    }
    if args.resume:
        base = ws.home / "runs" / args.resume / "config.json"
        if not base.is_file():
            raise FileNotFoundError(f"no run named {args.resume!r} to resume (looked for {base})")
        return TrainConfig.from_file(base, **{**overrides, "run_name": args.resume})
    if args.config:
        return TrainConfig.from_file(args.config, **overrides)
    if not args.dataset:
        raise ValueError("give --dataset NAME (or a --config file that names one)")
    return TrainConfig(**{k: v for k, v in overrides.items() if v is not None})


def cmd_train(args: argparse.Namespace) -> int:
    """Train a model in this process with a progress bar, or queue it as a background job."""
    ws = Workspace()
    try:
        cfg = _train_config(args, ws)
    except ValueError as exc:  # a bad setting: say which and what is allowed
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    cfg = jobs.check_config(ws, cfg, resume=bool(args.resume))
    if args.background:
        job_id = jobs.submit(ws, cfg, resume=bool(args.resume))
        job = jobs.get_job(ws, job_id)
        print(f"job {job_id} {job.status}; follow it with: python -m cxrcore jobs show {job_id}")
        return 0
    from cxrcore.train.loop import run_training

    reporter = ConsoleReporter()

    def on_interrupt(_signum: int, _frame: FrameType | None) -> None:
        reporter.stop = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C aborts at once
        print("\nstopping after the current step (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        result = run_training(cfg, ws, reporter, resume=bool(args.resume))
    finally:
        signal.signal(signal.SIGINT, previous)
        reporter.close()
    name = result.run_dir.name
    if result.stopped == "cancelled":
        print(f"stopped after epoch {result.epochs_completed}; continue with: --resume {name}")
    print(f"run folder: {result.run_dir}\nbest checkpoint: {result.best_checkpoint}")
    return 0


def cmd_jobs_list(args: argparse.Namespace) -> int:
    """List jobs, newest first (finding dead ones and starting queued ones first)."""
    ws = Workspace()
    jobs.schedule(ws)
    records = jobs.list_jobs(ws)
    rows = [j.summary() for j in records]
    emit(
        [j.to_dict() for j in records],
        args.json,
        lambda: pd.DataFrame(rows).fillna("").to_string(index=False) if rows else "no jobs",
    )
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    """One job's status, progress, metrics, checkpoint and log tail."""
    ws = Workspace()
    jobs.schedule(ws)
    job = jobs.get_job(ws, args.id)
    tail = jobs.log_tail(ws, args.id, args.lines)
    text = job.describe() + (f"\n--- last lines of the log ---\n{tail}" if tail else "")
    emit({**job.to_dict(), "log_tail": tail}, args.json, lambda: text)
    return 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    """Cancel a queued job, or ask a running one to stop after its current step."""
    ws = Workspace()
    job = jobs.cancel(ws, args.id)
    if job.status == "cancelled":
        print(f"job {job.id} cancelled")
    else:
        print(f"job {job.id}: cancel requested; it stops after its current step")
    return 0


# Options copied as they are into TrainConfig (None: not given, keep the config's value).
_TRAIN_OPTIONS = (
    "dataset", "model", "epochs", "batch_size", "lr", "input_size", "label_mode", "loss", "init",
    "backbone_lr_scale", "seed", "device", "workers", "run_name",
)  # fmt: skip


# Settings with a fixed vocabulary, given as --name VALUE (None: keep the config's value).
_CHOICES = {
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "amp": AMP_MODES,
    "fit": FIT_MODES,
    "task": TASKS,
    "calibrate": CALIBRATION_CHOICES,  # fitted on the validation split when training ends
}


def _default(name: str) -> str:
    return f"default {TRAIN_DEFAULTS[name]}"


def add_train_commands(groups: Any) -> None:
    """The train command."""
    train = groups.add_parser(
        "train", help="train a classifier or a lesion detector (in the foreground, or as a background job)"
    )
    train.add_argument("--dataset", help="registered dataset (its train and valid splits are used)")
    train.add_argument(
        "--model",
        help=f"registered model name ({_default('model')}); with --task detect a detector such as "
        "faster_rcnn_resnet18, or just a backbone (its Faster R-CNN)",
    )
    train.add_argument("--config", help="a .toml or .json file of training settings; options override it")
    for name, kind in (("epochs", int), ("batch-size", int), ("lr", float)):
        train.add_argument(f"--{name}", type=kind)
    train.add_argument(
        "--input-size",
        "--image-size",
        type=int,
        dest="input_size",
        help="input side in px (0: model default)",
    )
    train.add_argument("--steps-per-epoch", type=int, help="cap on steps per epoch (0: the whole split)")
    train.add_argument(
        "--labels",
        help="comma-separated labels to train (default: all of the dataset's; a detector: all box labels)",
    )
    train.add_argument(
        "--label-mode",
        choices=LABEL_MODES,
        help="; ".join(f"{mode}: {name}" for mode, name in LABEL_MODE_NAMES.items())
        + f" ({_default('label_mode')})",
    )
    train.add_argument("--loss", choices=LOSSES, help=f"training loss ({_default('loss')})")
    for name, options in _CHOICES.items():
        train.add_argument(f"--{name}", choices=options, help=f"{name} ({_default(name)})")
    train.add_argument("--no-augment", action="store_true", help="no random augmentation")
    train.add_argument(
        "--init", help=f"{INIT_RANDOM!r} or a checkpoint file to repurpose ({_default('init')})"
    )
    train.add_argument(
        "--freeze-backbone",
        action="store_true",
        help="train only the head (with --init); for a detector: pyramid, proposals and box head",
    )
    train.add_argument("--backbone-lr-scale", type=float, help="backbone learning rate = lr x this")
    train.add_argument("--seed", type=int)
    train.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    train.add_argument("--workers", type=int, help="data-loading worker processes")
    train.add_argument("--run-name", help="folder name under $CXR_HOME/runs (default model-dataset-time)")
    train.add_argument("--resume", metavar="RUN_NAME", help="continue a run from its last finished epoch")
    train.add_argument("--background", action="store_true", help="queue as a background job, print its id")
    train.set_defaults(func=cmd_train)


def add_jobs_commands(groups: Any) -> None:
    """The jobs command group."""
    job_cmds = groups.add_parser("jobs", help="background jobs").add_subparsers(dest="command", required=True)
    listing = job_cmds.add_parser("list", help="every job, newest first")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_jobs_list)
    show = job_cmds.add_parser("show", help="one job's progress, metrics, checkpoint and log tail")
    show.add_argument("id", type=int)
    show.add_argument("--lines", type=int, default=20, help="log lines to show (default 20)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_jobs_show)
    cancel = job_cmds.add_parser("cancel", help="cancel a queued job or stop a running one")
    cancel.add_argument("id", type=int)
    cancel.set_defaults(func=cmd_jobs_cancel)
