"""Commands for the model registry and checkpoint files."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import pandas as pd

from cxrcore.cli.output import EXIT_ERROR, ImageBar, emit
from cxrcore.evaluate.operating_points import DEFAULT_RULE, DETECTOR_RULE, DETECTOR_RULE_NAMES, STORED_RULES
from cxrcore.models.readout import AUTO_METHOD, CALIBRATION_CHOICES
from cxrcore.store import Workspace


def cmd_models_list(args: argparse.Namespace) -> int:
    """Registered architectures with input size, parameter count and head type."""
    from cxrcore.models import list_models, model_info

    rows = [model_info(name) for name in list_models()]
    emit(rows, args.json, lambda: pd.DataFrame(rows).to_string(index=False))
    return 0


def cmd_checkpoint_info(args: argparse.Namespace) -> int:
    """What a checkpoint holds, read from its model card (the weights are not loaded)."""
    from cxrcore.models import CheckpointError, describe_checkpoint

    try:
        info = describe_checkpoint(args.file)
    except CheckpointError as exc:  # imported lazily (PyTorch), so handled here rather than in main()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    emit(info, args.json, lambda: "\n".join(f"{k:>22}: {v}" for k, v in info.items()))
    return 0


def cmd_checkpoint_migrate(args: argparse.Namespace) -> int:
    """Rewrite checkpoints' model cards in the current card version (the weights are copied as stored)."""
    from cxrcore.models import CARD_VERSION, CheckpointError, migrate_checkpoint

    failed = 0
    for name in args.files:
        try:
            changed = migrate_checkpoint(name)
        except CheckpointError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: {'migrated to' if changed else 'already'} card version {CARD_VERSION}")
    return EXIT_ERROR if failed else 0


class NoteGiven(argparse.Action):
    """Store an option's value and note that it was given on the line (``args.given``, a set of dests)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        """Store the value as argparse's own "store" does, and add the option's dest to ``given``."""
        setattr(namespace, self.dest, values)
        namespace.given = {*getattr(namespace, "given", set()), self.dest}


def cmd_checkpoint_calibrate(args: argparse.Namespace) -> int:
    """Fit calibration and operating points on a dataset's validation split and store them in the card.

    A detector gets its box score threshold instead (``cxrcore.evaluate.detector_threshold``).
    """
    from cxrcore.models.card import read_card

    if read_card(args.file).task == "detect":
        return calibrate_detector(args)
    from cxrcore.evaluate.recalibrate import calibrate_checkpoint

    with ImageBar("predicting") as bar:
        result = calibrate_checkpoint(
            args.file,
            Workspace(),
            args.dataset,
            method=args.method,
            rule=args.threshold,
            target=args.target,
            progress=bar,
        )
    payload = {
        "checkpoint": str(result.path),
        "dataset": args.dataset,
        "method": result.method,
        "operating_points": result.operating_points,
        "valid": result.valid,
        "test": result.test,
    }

    def text() -> str:
        points = result.operating_points
        lines = [
            f"{result.path}: {result.method} calibration and operating points ({points['description']}) "
            f"fitted on {args.dataset}/valid and stored in the model card",
        ]
        for split, table in (("valid", result.valid), ("test", result.test)):
            if table is not None:
                lines += [f"\n{split} split: ECE and Brier score before -> after", _scores_text(table)]
        if points["skipped"]:
            lines.append("\nno threshold (one class on validation): " + ", ".join(points["skipped"]))
        return "\n".join(lines)

    emit(payload, args.json, text)
    return 0


def calibrate_detector(args: argparse.Namespace) -> int:
    """Choose a detector's box score threshold on the validation split and store it in the card."""
    given = [f"--{dest}" for dest in ("method", "threshold", "target") if dest in getattr(args, "given", ())]
    if given:
        print(
            f"error: {', '.join(given)}: only for classifiers; {args.file} is a detector, whose box "
            f"score threshold is chosen by {DETECTOR_RULE} (its options: --dataset, --json)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    from cxrcore.evaluate.detector_threshold import choose_detector_threshold

    with ImageBar("detecting") as bar:
        result = choose_detector_threshold(args.file, Workspace(), args.dataset, progress=bar)
    fitted = result.operating_points["fitted_on"]
    payload = {
        "checkpoint": str(result.path),
        "dataset": args.dataset,
        "task": "detect",
        "score_threshold": result.threshold,
        "operating_points": result.operating_points,
        "valid": {"at_default": result.at_default, "at_threshold": result.at_threshold},
        "sweep": result.sweep.reset_index().to_dict(orient="records"),
    }

    def text() -> str:
        rows = pd.DataFrame(
            [result.at_default, result.at_threshold], index=["default", "chosen"]
        ).drop_duplicates()
        return "\n".join(
            [
                f"{result.path}: box score threshold {result.threshold:.2f} "
                f"({result.operating_points['description']}) chosen on {args.dataset}/valid "
                f"({fitted['n_images']} images, {fitted['n_boxes']} boxes) and stored in the model card",
                "\nvalidation split, overall (mAR and F1 at IoU 0.5, RSNA score):",
                rows.to_string(float_format=lambda v: f"{v:.3f}"),
            ]
        )

    emit(payload, args.json, text)
    return 0


def _scores_text(table: pd.DataFrame) -> str:
    """A before/after table with the thresholds' labels as rows, three decimals."""
    shown = table[["positives", "ece_before", "ece_after", "brier_before", "brier_after"]]
    return shown.to_string(float_format=lambda v: f"{v:.3f}")


def add_model_commands(groups: Any) -> None:
    """The models and checkpoint command groups."""
    models = groups.add_parser("models", help="the model registry").add_subparsers(
        dest="command", required=True
    )
    listing = models.add_parser("list", help="registered architectures")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_models_list)
    ckpt = groups.add_parser("checkpoint", help="checkpoint files").add_subparsers(
        dest="command", required=True
    )
    info = ckpt.add_parser("info", help="describe a checkpoint from its model card")
    info.add_argument("file")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_checkpoint_info)
    migrate = ckpt.add_parser("migrate", help="rewrite model cards in the current card version")
    migrate.add_argument("files", nargs="+", metavar="file")
    migrate.set_defaults(func=cmd_checkpoint_migrate)
    cal = ckpt.add_parser(
        "calibrate",
        help="fit calibration and per-label operating points on a dataset's validation split (into the "
        "card); for a detector, choose its box score threshold there",
    )
    cal.add_argument("file")
    cal.add_argument("--dataset", required=True, help="a registered dataset with a validation split")
    cal.add_argument(
        "--method",
        default=AUTO_METHOD,
        choices=CALIBRATION_CHOICES,
        action=NoteGiven,
        help="classifiers: auto = Platt scaling after a class-reweighting loss (weighted BCE), temperature "
        "scaling otherwise; none removes the calibration",
    )
    cal.add_argument(
        "--threshold",
        default=DEFAULT_RULE,
        choices=STORED_RULES,
        action=NoteGiven,
        help="classifiers: how each label's threshold is chosen. A detector's box score threshold is "
        f"chosen by {DETECTOR_RULE}: {DETECTOR_RULE_NAMES[DETECTOR_RULE]}",
    )
    cal.add_argument(
        "--target",
        type=float,
        action=NoteGiven,
        help="classifiers: target sensitivity or specificity for those rules",
    )
    cal.add_argument("--json", action="store_true")
    cal.set_defaults(func=cmd_checkpoint_calibrate)
