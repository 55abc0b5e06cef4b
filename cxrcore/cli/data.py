"""Commands for image files, datasets and the synthetic demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from cxrcore.cli.output import emit
from cxrcore.data.adapters import ADAPTERS
from cxrcore.data.index import SPLITS
from cxrcore.data.leakage import leakage_against, leakage_by_split
from cxrcore.data.split import DEFAULT_FRACTIONS
from cxrcore.data.stats import dataset_statistics
from cxrcore.io import assess_image, read_image
from cxrcore.store import Workspace
from cxrcore.workflows.datasets import (
    comma_names,
    merge_datasets,
    merged_line,
    register_source,
    registered_line,
    split_dataset,
    split_table,
)


def cmd_image_info(args: argparse.Namespace) -> int:
    """Describe one image file (size, range, photometric interpretation, format, quality verdict)."""
    pixels, meta = read_image(args.file)
    quality = assess_image(pixels, meta, Path(args.file).name)
    info = {
        **meta,
        "shape": list(pixels.shape),
        "min": float(pixels.min()),
        "max": float(pixels.max()),
        "mean": float(pixels.mean()),
        "quality": quality.to_dict(),
    }
    for problem in ([quality.refusal] if quality.refused else []) + list(quality.warnings):
        print(f"warning: {problem}", file=sys.stderr)
    emit(info, args.json, lambda: "\n".join(f"{k:>20}: {v}" for k, v in info.items()))
    return 0


def cmd_data_register(args: argparse.Namespace) -> int:
    """Index a source with its adapter and store it in the workspace."""
    spec = ADAPTERS[args.source]
    arguments = {
        p.name: getattr(args, p.name) for p in spec.params if getattr(args, p.name, None) is not None
    }
    record = register_source(Workspace(), args.name, args.source, arguments, replace=args.replace)
    print(registered_line(record))
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
    emit(
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

    emit(stats, args.json, text)
    return 0


def cmd_data_split(args: argparse.Namespace) -> int:
    """Build a label-stratified patient-level split and store it."""
    split = split_dataset(
        Workspace(), args.name, args.fractions, seed=args.seed, stratify=not args.no_stratify
    )
    print(split_table(split))
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
    emit(
        report.to_dict(), args.json, lambda: report.verdict + "\n" + report.to_frame().to_string(index=False)
    )
    return 1 if (report.leaks and args.fail_on_leak) else 0


def cmd_demo_models(args: argparse.Namespace) -> int:
    """Train the demo models (a few seconds each) and write them to the bundled checkpoint folder."""
    from cxrcore.cli.training import ConsoleReporter
    from cxrcore.workflows.demo import train_demo_models

    for path in train_demo_models(Workspace(), args.out, ConsoleReporter(), only=tuple(args.only)):
        print(f"wrote {path}")
    return 0


def cmd_demo_prepare(args: argparse.Namespace) -> int:
    """Generate and register the synthetic demo dataset (idempotent)."""
    from cxrcore.workflows.demo import prepare_demo
    from cxrcore.workflows.realdata import REAL_DATASET, real_data_dir, register_real_datasets

    ws = Workspace()
    record = prepare_demo(ws, progress=lambda msg: print(msg, flush=True))
    print(f"demo dataset {record.name!r} ready: {record.n_images} synthetic phantom images")
    data = real_data_dir()
    if data is not None and REAL_DATASET not in {r.name for r in ws.list_datasets()}:
        print(f"real data found in {data}: registering it as the bundled model's recipe does", flush=True)
        register_real_datasets(data, report=print)
    if REAL_DATASET in {r.name for r in ws.list_datasets()}:
        _start_first_predictions(ws, REAL_DATASET)
    return 0


# `make run` starts the dashboard right after `demo prepare`: the prediction workers wait this long, so
# the server's start and the first page drawn do not share the machine with PyTorch's loading.
FIRST_PREDICTIONS_DELAY_S = 8.0


def _start_first_predictions(ws: Workspace, dataset: str) -> None:
    """Start the predictions the Evaluate and Ensembles pages open with, in the background; never waits."""
    from cxrcore.workflows.first_visit import start_first_predictions

    for checkpoint, name, split, status in start_first_predictions(ws, dataset, FIRST_PREDICTIONS_DELAY_S):
        what = f"{Path(checkpoint).stem} on {name}/{split}"
        if status.state == "ready":
            print(f"predictions of {what}: stored")
        elif status.state == "failed":
            print(f"predictions of {what} failed: {status.error} (the Evaluate page offers to try again)")
        else:
            print(f"predicting {what} in the background ({status.total} images, starting in a few seconds)")
    print("the Evaluate and Ensembles pages show their progress and the results when ready")


def cmd_demo_real_data(args: argparse.Namespace) -> int:
    """Register the real public X-rays of $CXR_DATA_DIR as the bundled real-data model's recipe does."""
    from cxrcore.workflows.realdata import register_real_datasets

    register_real_datasets(say=lambda line: print(line, flush=True), report=print)
    return 0


_FRACTIONS = ",".join(f"{f:g}" for f in DEFAULT_FRACTIONS)  # the patient split's default, as typed


def _add_adapter_options(parser: argparse.ArgumentParser) -> None:
    """One option per adapter parameter name, shared by the sources that take it."""
    seen: dict[str, list[str]] = {}
    params = {}
    for spec in ADAPTERS.values():
        for p in spec.params:
            seen.setdefault(p.name, []).append(spec.name)
            params.setdefault(p.name, p)
    for name, sources in seen.items():
        p = params[name]
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            choices=p.choices or None,
            help=f"{p.help} [{', '.join(sources)}]" + (f" (default {p.default})" if p.choices else ""),
        )


def add_data_commands(groups: Any) -> None:
    """The image, data and demo command groups."""
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
    split.add_argument("--fractions", default=_FRACTIONS, help=f"{','.join(SPLITS)} (default {_FRACTIONS})")
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
    add_merge_command(data)

    demo = groups.add_parser("demo", help="the synthetic demo").add_subparsers(dest="command", required=True)
    prepare = demo.add_parser("prepare", help="generate and register the synthetic demo dataset")
    prepare.set_defaults(func=cmd_demo_prepare)
    real = demo.add_parser(
        "real-data", help="register the real X-rays of $CXR_DATA_DIR (NIH, RSNA, Kermany, TBX11K, merged)"
    )
    real.set_defaults(func=cmd_demo_real_data)
    models = demo.add_parser("models", help="train the bundled demo models on the demo phantoms")
    models.add_argument("--out", default="checkpoints", help="folder to write them to")
    models.add_argument("--only", nargs="+", default=(), metavar="NAME", help="train only these demo models")
    models.set_defaults(func=cmd_demo_models)


def cmd_data_merge(args: argparse.Namespace) -> int:
    """Register several datasets as one (labels aligned, NaN where unknown), optionally on the proxy task."""
    record = merge_datasets(
        Workspace(),
        args.name,
        comma_names(args.sources),
        boxes_from=comma_names(args.boxes_from or ""),
        proxy=args.proxy,
        normals_negative=args.normals_negative,
        source_task=args.source_task,
        fractions=args.fractions,
        seed=args.seed,
        replace=args.replace,
    )
    print(merged_line(record))
    return 0


def add_merge_command(data: Any) -> None:
    """data merge: one dataset from several registered ones."""
    merge = data.add_parser("merge", help="register several datasets as one (with a patient split)")
    merge.add_argument("name")
    merge.add_argument("--from", dest="sources", required=True, help="comma-separated registered datasets")
    merge.add_argument(
        "--proxy", action="store_true", help="one label 'Abnormal' (any finding) for pretraining"
    )
    merge.add_argument(
        "--normals-negative",
        action="store_true",
        help="images their own source reads as normal are negative for the other sources' labels too",
    )
    merge.add_argument(
        "--source-task",
        action="store_true",
        help="one label per source instead of the findings (a shortcut check: can a model tell them apart?)",
    )
    merge.add_argument(
        "--boxes-from",
        help="registered datasets whose boxes are drawn on the same image files, optionally relabelled: "
        "rsna=Pneumonia",
    )
    merge.add_argument("--fractions", default=_FRACTIONS, help=f"{','.join(SPLITS)} (default {_FRACTIONS})")
    merge.add_argument("--seed", type=int, default=0)
    merge.add_argument("--replace", action="store_true")
    merge.set_defaults(func=cmd_data_merge)
