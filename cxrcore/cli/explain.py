"""The explain command: one chest X-ray or a set of them with one checkpoint, and the reports.

``python -m cxrcore explain FILES_OR_FOLDERS --checkpoint CKPT [--out DIR]`` reads every file, refuses
the ones with nothing to see (``cxrcore.io.quality``), runs the upload guard and the explanation, and
prints each image's calibrated probabilities with their calls and warnings. With ``--out`` it also
writes a panel per image, ``review.csv``, ``report.html`` and ``report.pdf``
(``cxrcore.workflows.batch_report``). ``explain CKPT IMAGE`` (the checkpoint first) is accepted too.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tqdm import tqdm

from cxrcore.cli.output import EXIT_ERROR, emit

CHECKPOINT_SUFFIX = ".safetensors"


def _default_checkpoint() -> str | None:
    """The dashboard's default model: the first checkpoint listed (bundled real-data ones first)."""
    from cxrcore.models.catalog import list_checkpoints
    from cxrcore.store import Workspace

    entries = list_checkpoints(Workspace().home)
    return str(entries[0].path) if entries else None


def _checkpoint_and_paths(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """``--checkpoint``, else a leading ``.safetensors`` path, else the default model; and the images."""
    paths = list(args.paths)
    if args.checkpoint:
        return args.checkpoint, paths
    if len(paths) > 1 and paths[0].endswith(CHECKPOINT_SUFFIX):
        return paths[0], paths[1:]
    return _default_checkpoint(), paths


def _image_payload(image: Any) -> dict[str, Any]:
    """One reviewed image for ``--json``: probabilities, calls, warnings and the guard's figures."""
    readings = image.readings
    verdict = image.verdict
    return {
        "probabilities": {r.label: round(float(r.probability), 6) for r in readings.itertuples()},
        "called_positive": readings.loc[readings["call"] == "above", "label"].tolist(),
        "unreliable_labels": readings.loc[~readings["reliable"], "label"].tolist(),
        "warnings": list(image.warnings),
        "guard": {"score": verdict.score, "threshold": verdict.threshold, "flagged": verdict.suspicious},
    }


def cmd_explain(args: argparse.Namespace) -> int:
    """Review files and folders; with --out, a panel per image and a CSV, an HTML and a PDF report."""
    from cxrcore.models import load_checkpoint
    from cxrcore.workflows.batch_report import collect_files, review_batch, write_batch

    path, paths = _checkpoint_and_paths(args)
    files = collect_files(paths)
    if not files:
        print("error: no image files found in " + ", ".join(paths), file=sys.stderr)
        return EXIT_ERROR
    if path is None:
        print("error: no checkpoint given and none found (--checkpoint FILE)", file=sys.stderr)
        return EXIT_ERROR
    checkpoint = load_checkpoint(path)
    options = {} if args.labels is None else {"panel_labels": args.labels}
    with tqdm(total=len(files), desc="explaining", unit="img", disable=args.json or len(files) == 1) as bar:
        review = review_batch(checkpoint, files, progress=lambda done, total, name: bar.update(1), **options)
    for image in review.failed:
        print(f"error: {image.name}: {image.error}", file=sys.stderr)
    for image in review.reviewed:  # on stderr too, so a script reading --json cannot miss them
        for warning in image.warnings:
            print(f"warning: {image.name}: {warning}", file=sys.stderr)
    payload: dict[str, Any] = {
        "checkpoint": str(checkpoint.path),
        "files": len(review.images),
        "reviewed": len(review.reviewed),
        "failed": [{"file": i.name, "error": i.error} for i in review.failed],
        "images": {i.name: _image_payload(i) for i in review.reviewed},
    }
    if args.out and review.reviewed:  # nothing to report when every file was refused
        written = write_batch(review, args.out)
        payload.update(
            csv=str(written["csv"]),
            html=str(written["html"]),
            pdf=str(written["pdf"]),
            panels=[str(p) for p in written["panels"]],
        )

    def text() -> str:
        lines = [f"{len(review.reviewed)} of {len(review.images)} image(s) reviewed with {checkpoint.name}"]
        for image in review.reviewed:
            called = payload["images"][image.name]["called_positive"]
            lines.append(f"  {image.name}: {', '.join(called) if called else 'nothing called positive'}")
            lines += [f"    warning: {w}" for w in image.warnings]
            if len(review.images) == 1:
                lines += [
                    f"{r.label:>24}: {r.probability:.3f}  ({r.call})" for r in image.readings.itertuples()
                ]
        if "csv" in payload:
            panels = len(payload["panels"])
            lines.append(f"written: {payload['csv']}, {payload['html']}, {payload['pdf']}, {panels} panel(s)")
        return "\n".join(lines)

    emit(payload, args.json, text)
    return EXIT_ERROR if review.failed else 0


def add_explain_commands(groups: Any) -> None:
    """The explain command."""
    ex = groups.add_parser(
        "explain",
        help="explain chest X-rays (files or folders): calibrated readings, panels, CSV / HTML / PDF reports",
        description="Explain every image with one checkpoint. Images with nothing to see (constant, NaN or "
        "infinite pixels) are refused. Exit status 2 when any file could not be read or was refused "
        "(the others are written).",
    )
    ex.add_argument("paths", nargs="+", metavar="FILE_OR_FOLDER")
    ex.add_argument("--checkpoint", help="a checkpoint file (default: the dashboard's default model)")
    ex.add_argument("--out", help="folder for panels/, review.csv, report.html and report.pdf")
    ex.add_argument("--labels", type=int, help="labels per panel, those called positive first (default: 4)")
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func=cmd_explain)
