"""The command that explains one image file: ``python -m cxrcore explain CHECKPOINT IMAGE``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cxrcore.cli.output import emit
from cxrcore.workflows.datasets import comma_names


def cmd_explain(args: argparse.Namespace) -> int:
    """Probabilities (with every warning) and heat maps of one image; a degenerate image is refused."""
    from cxrcore.explain.engine import DEFAULT_METHODS
    from cxrcore.workflows.image_explain import explain_file, write_outputs

    methods = comma_names(args.methods) if args.methods else list(DEFAULT_METHODS)
    labels = comma_names(args.labels) if args.labels else None
    result = explain_file(args.checkpoint, args.image, labels, methods)
    for warning in result.warnings:  # on stderr too, so a script reading --json cannot miss them
        print(f"warning: {result.name}: {warning}", file=sys.stderr)
    payload = result.summary()
    if args.out:
        payload["files"] = [str(p) for p in write_outputs(result, args.out)]

    def text() -> str:
        probs = sorted(payload["probabilities"].items(), key=lambda kv: kv[1], reverse=True)
        lines = [f"{result.name} with {result.checkpoint}:"]
        lines += [f"  warning: {w}" for w in payload["warnings"]]
        lines += [f"{label:>24}: {p:.3f}" for label, p in probs]
        lines += [f"wrote {f}" for f in payload.get("files", [])]
        return "\n".join(lines)

    emit(payload, args.json, text)
    return 0


def add_explain_command(groups: Any) -> None:
    """The explain command."""
    cmd = groups.add_parser(
        "explain", help="probabilities and heat maps of one image file (degenerate images are refused)"
    )
    cmd.add_argument("checkpoint", help="a checkpoint file (.safetensors)")
    cmd.add_argument("image", help="a PNG, JPEG, TIFF, BMP or DICOM file")
    cmd.add_argument("--labels", help="comma-separated labels to draw (default: the 4 most probable)")
    cmd.add_argument("--methods", help="comma-separated map methods (default: cam,crm)")
    cmd.add_argument("--out", help="folder for <image>-explained.png and .json")
    cmd.add_argument("--json", action="store_true")
    cmd.set_defaults(func=cmd_explain)
