"""The ``cxr`` command line: ``python -m cxrcore <group> <command> ...``.

Examples::

    python -m cxrcore image info scan.dcm --json
    python -m cxrcore data register nih --source nih14 \
        --labels-csv Data_Entry_2017_v2020.csv.gz --images-dir images/
    python -m cxrcore data stats nih --json
    python -m cxrcore data split nih --fractions 0.7,0.1,0.2 --seed 0
    python -m cxrcore data leakage nih --by-split
    python -m cxrcore demo prepare
    python -m cxrcore train --dataset demo-phantoms --model tiny --epochs 2 [--background]
    python -m cxrcore jobs list | show ID | cancel ID
    python -m cxrcore predict CHECKPOINT --dataset demo-phantoms --split test
    python -m cxrcore evaluate CHECKPOINT --dataset demo-phantoms --split test [--json]
    python -m cxrcore ensemble CKPT_A CKPT_B --dataset demo-phantoms --methods vote,mean,weighted,stack
    python -m cxrcore checkpoint calibrate CHECKPOINT --dataset demo-phantoms
    python -m cxrcore explain scans/ --checkpoint CHECKPOINT --out review/ [--json]
    python -m cxrcore segmenter train --out checkpoints/lung-segmenter.safetensors
    python -m cxrcore segmenter evaluate checkpoints/lung-segmenter.safetensors [--json]

Errors print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from cxrcore.cli.data import add_data_commands
from cxrcore.cli.evaluation import add_evaluation_commands
from cxrcore.cli.explain import add_explain_commands
from cxrcore.cli.models import add_model_commands
from cxrcore.cli.output import EXIT_ERROR
from cxrcore.cli.segmenter import add_segmenter_commands
from cxrcore.cli.training import add_jobs_commands, add_train_commands
from cxrcore.errors import is_user_error


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = argparse.ArgumentParser(
        prog="cxr", description="Chest X-ray dataset, training and explanation tools."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    groups = parser.add_subparsers(dest="group", required=True)
    add_data_commands(groups)
    add_train_commands(groups)
    add_jobs_commands(groups)
    add_model_commands(groups)
    add_evaluation_commands(groups)
    add_explain_commands(groups)
    add_segmenter_commands(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors a user can fix print one line and return 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.func(args))
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stderr.close()
        return 0
    except Exception as exc:
        if not is_user_error(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
