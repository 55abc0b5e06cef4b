"""The explain command: review a set of chest X-rays with one checkpoint and write the reports."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tqdm import tqdm

from cxrcore.cli.output import EXIT_ERROR, emit


def _default_checkpoint() -> str | None:
    """The dashboard's default model: the first checkpoint listed (bundled real-data ones first)."""
    from cxrcore.models.catalog import list_checkpoints
    from cxrcore.store import Workspace

    entries = list_checkpoints(Workspace().home)
    return str(entries[0].path) if entries else None


def cmd_explain(args: argparse.Namespace) -> int:
    """Review files and folders: a panel per image, and a CSV, an HTML and a PDF report for the set."""
    from cxrcore.models import load_checkpoint
    from cxrcore.workflows.batch_report import collect_files, review_batch, write_batch

    files = collect_files(args.paths)
    if not files:
        print("error: no image files found in " + ", ".join(args.paths), file=sys.stderr)
        return EXIT_ERROR
    path = args.checkpoint or _default_checkpoint()
    if path is None:
        print("error: no checkpoint given and none found (--checkpoint FILE)", file=sys.stderr)
        return EXIT_ERROR
    checkpoint = load_checkpoint(path)
    options = {} if args.labels is None else {"panel_labels": args.labels}
    with tqdm(total=len(files), desc="explaining", unit="img", disable=args.json) as bar:
        review = review_batch(
            checkpoint,
            files,
            progress=lambda done, total, name: bar.update(1),
            **options,
        )
    written = write_batch(review, args.out)
    for image in review.failed:
        print(f"error: {image.name}: {image.error}", file=sys.stderr)
    payload: dict[str, Any] = {
        "checkpoint": str(checkpoint.path),
        "files": len(review.images),
        "reviewed": len(review.reviewed),
        "failed": [{"file": i.name, "error": i.error} for i in review.failed],
        "csv": str(written["csv"]),
        "html": str(written["html"]),
        "pdf": str(written["pdf"]),
        "panels": [str(p) for p in written["panels"]],
        "called_positive": {
            i.name: i.readings.loc[i.readings["call"] == "above", "label"].tolist() for i in review.reviewed
        },
    }

    def text() -> str:
        lines = [f"{len(review.reviewed)} of {len(review.images)} image(s) reviewed with {checkpoint.name}"]
        for image in review.reviewed:
            called = payload["called_positive"][image.name]
            lines.append(f"  {image.name}: {', '.join(called) if called else 'nothing called positive'}")
        panels = len(written["panels"])
        lines.append(f"written: {written['csv']}, {written['html']}, {written['pdf']}, {panels} panel(s)")
        return "\n".join(lines)

    emit(payload, args.json, text)
    return EXIT_ERROR if review.failed else 0


def add_explain_commands(groups: Any) -> None:
    """The explain command."""
    ex = groups.add_parser(
        "explain",
        help="review chest X-rays (files or folders): panels, a CSV and HTML / PDF reports",
        description="Explain every image with one checkpoint. Exit status 2 when any file could not be read "
        "(the others are written).",
    )
    ex.add_argument("paths", nargs="+", metavar="FILE_OR_FOLDER")
    ex.add_argument("--checkpoint", help="a checkpoint file (default: the dashboard's default model)")
    ex.add_argument("--out", required=True, help="folder for panels/, review.csv, report.html and report.pdf")
    ex.add_argument("--labels", type=int, help="labels per panel, those called positive first (default: 4)")
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func=cmd_explain)
