"""The ``cxr`` command line: ``python -m cxrcore <group> <command> ...``.

Examples::

    python -m cxrcore image info scan.dcm --json
    python -m cxrcore data register nih --source nih14 \
        --labels-csv Data_Entry_2017_v2020.csv.gz --images-dir images/
    python -m cxrcore data stats nih --json
    python -m cxrcore data split nih --fractions 0.7,0.1,0.2 --seed 0
    python -m cxrcore data leakage nih --by-split
    python -m cxrcore demo prepare

Errors print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cxrcore.data.adapters import ADAPTERS, load_source
from cxrcore.data.index import DatasetError
from cxrcore.data.leakage import leakage_against, leakage_by_split
from cxrcore.data.split import parse_fractions, patient_split, split_summary
from cxrcore.data.stats import dataset_statistics
from cxrcore.io import ImageReadError, read_image
from cxrcore.labels import LabelError
from cxrcore.store import Workspace, WorkspaceError

EXIT_ERROR = 2


def _jsonable(value: Any) -> Any:
    if isinstance(value, pd.DataFrame):
        return json.loads(value.to_json(orient="index"))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _emit(payload: Any, as_json: bool, text: Callable[[], str]) -> None:
    print(json.dumps(_jsonable(payload), indent=2) if as_json else text())


def cmd_image_info(args: argparse.Namespace) -> int:
    """Describe one image file (size, range, photometric interpretation, format)."""
    pixels, meta = read_image(args.file)
    info = {
        **meta,
        "shape": list(pixels.shape),
        "min": float(pixels.min()),
        "max": float(pixels.max()),
        "mean": float(pixels.mean()),
    }
    _emit(info, args.json, lambda: "\n".join(f"{k:>20}: {v}" for k, v in info.items()))
    return 0


def cmd_data_register(args: argparse.Namespace) -> int:
    """Index a source with its adapter and store it in the workspace."""
    spec = ADAPTERS[args.source]
    arguments = {
        p.name: getattr(args, p.name) for p in spec.params if getattr(args, p.name, None) is not None
    }
    dataset = load_source(args.source, **arguments)
    record = Workspace().register_dataset(args.name, args.source, arguments, dataset, replace=args.replace)
    print(
        f"registered {record.name!r}: {record.n_images} images, {record.n_patients} patients, "
        f"{len(record.labels)} labels; notes: {json.dumps(record.notes, default=str)}"
    )
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    """List registered datasets."""
    records = Workspace().list_datasets()
    rows = [
        {
            "name": r.name,
            "source": r.adapter,
            "images": r.n_images,
            "patients": r.n_patients,
            "labels": len(r.labels),
            "split": (r.split or {}).get("counts"),
            "fingerprint": r.fingerprint,
        }
        for r in records
    ]
    _emit(
        rows,
        args.json,
        lambda: pd.DataFrame(rows).to_string(index=False) if rows else "no datasets registered",
    )
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    """Print label frequencies, loss contributions, co-occurrence and demographics."""
    index = Workspace().load_dataset(args.name).index
    stats = dataset_statistics(index)

    def text() -> str:
        parts = [f"{k}: {v}" for k, v in stats["overview"].items() if k != "labels"]
        for key in ("frequencies", "loss_contributions", "images_per_patient", "view", "sex", "age"):
            parts.append(f"\n== {key} ==\n{stats[key].round(4).to_string()}")
        return "\n".join(parts)

    _emit(stats, args.json, text)
    return 0


def cmd_data_split(args: argparse.Namespace) -> int:
    """Build a label-stratified patient-level split and store it."""
    ws = Workspace()
    index = ws.load_dataset(args.name).index
    fractions = parse_fractions(args.fractions)
    split = patient_split(index, fractions, seed=args.seed, stratify=not args.no_stratify)
    ws.save_split(
        args.name, split, fractions=list(fractions), seed=args.seed, stratified=not args.no_stratify
    )
    print(split_summary(split).to_string())
    return 0


def cmd_data_leakage(args: argparse.Namespace) -> int:
    """Report patients and identical files shared between splits or with another dataset."""
    ws = Workspace()
    index = ws.load_dataset(args.name).index
    if args.against:
        report = leakage_against(
            index, ws.load_dataset(args.against).index, args.name, args.against, check_bytes=not args.no_bytes
        )
    else:
        report = leakage_by_split(index, check_bytes=not args.no_bytes)
    _emit(
        report.to_dict(), args.json, lambda: report.verdict + "\n" + report.to_frame().to_string(index=False)
    )
    return 1 if (report.leaks and args.fail_on_leak) else 0


def cmd_demo_prepare(args: argparse.Namespace) -> int:
    """Generate and register the synthetic demo dataset (idempotent)."""
    from cxrcore.demo import prepare_demo

    record = prepare_demo(Workspace(), progress=lambda msg: print(msg, flush=True))
    print(f"demo dataset {record.name!r} ready: {record.n_images} synthetic phantom images")
    return 0


def _add_adapter_options(parser: argparse.ArgumentParser) -> None:
    """One option per adapter parameter name, shared by the sources that take it."""
    seen: dict[str, list[str]] = {}
    helps: dict[str, str] = {}
    for spec in ADAPTERS.values():
        for p in spec.params:
            seen.setdefault(p.name, []).append(spec.name)
            helps.setdefault(p.name, p.help)
    for name, sources in seen.items():
        parser.add_argument(
            "--" + name.replace("_", "-"), dest=name, help=f"{helps[name]} [{', '.join(sources)}]"
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = argparse.ArgumentParser(
        prog="cxr", description="Chest X-ray dataset, training and explanation tools."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    groups = parser.add_subparsers(dest="group", required=True)

    image = groups.add_parser("image", help="image files").add_subparsers(dest="command", required=True)
    info = image.add_parser("info", help="describe an image file")
    info.add_argument("file")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_image_info)

    data = groups.add_parser("data", help="datasets").add_subparsers(dest="command", required=True)
    register = data.add_parser("register", help="index a dataset and store it in the workspace")
    register.add_argument("name")
    register.add_argument("--source", required=True, choices=sorted(ADAPTERS))
    register.add_argument("--replace", action="store_true", help="overwrite a dataset with the same name")
    _add_adapter_options(register)
    register.set_defaults(func=cmd_data_register)

    listing = data.add_parser("list", help="registered datasets")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_data_list)

    stats = data.add_parser(
        "stats", help="label frequencies, loss contributions, co-occurrence, demographics"
    )
    stats.add_argument("name")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=cmd_data_stats)

    split = data.add_parser("split", help="patient-level split, label-stratified, deterministic by seed")
    split.add_argument("name")
    split.add_argument("--fractions", default="0.7,0.1,0.2", help="train,valid,test (default 0.7,0.1,0.2)")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--no-stratify", action="store_true")
    split.set_defaults(func=cmd_data_split)

    leak = data.add_parser("leakage", help="patients and identical images shared between splits or datasets")
    leak.add_argument("name")
    how = leak.add_mutually_exclusive_group()
    how.add_argument("--by-split", action="store_true", help="between the splits of NAME (default)")
    how.add_argument("--against", metavar="OTHER", help="between NAME and another registered dataset")
    leak.add_argument("--no-bytes", action="store_true", help="skip the byte-identical file check")
    leak.add_argument("--fail-on-leak", action="store_true", help="exit with status 1 when anything leaks")
    leak.add_argument("--json", action="store_true")
    leak.set_defaults(func=cmd_data_leakage)

    demo = groups.add_parser("demo", help="the synthetic demo").add_subparsers(dest="command", required=True)
    prepare = demo.add_parser("prepare", help="generate and register the synthetic demo dataset")
    prepare.set_defaults(func=cmd_demo_prepare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors a user can fix print one line and return 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.func(args))
    except (ImageReadError, DatasetError, LabelError, WorkspaceError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stderr.close()
        return 0
