"""Commands for the model registry and checkpoint files."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import pandas as pd

from cxrcore.cli.output import EXIT_ERROR, emit


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
