"""Shipping a trained checkpoint with the project: float16 weights, its upload guard, and a model card
that says how it was made and what it scores on its test split.

The test figures in the card are computed by ``evaluate_checkpoint`` on the written (float16) file, the
same call ``python -m cxrcore evaluate`` makes, so the card and the command print the same numbers.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cxrcore.models.card import guard_path

CARD_METRICS = ("n", "positives", "auroc", "auroc_lo", "auroc_hi", "ap")


def hardware() -> str:
    """A one-line description of the machine, for model cards."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} CPU cores, {gpu}"


def metrics_for_card(summary: Any) -> dict[str, dict[str, float | int | None]]:
    """A summary table's per-label rows as plain numbers (NaN as None), for JSON."""
    out: dict[str, dict[str, float | int | None]] = {}
    for label, row in summary.iterrows():
        values: dict[str, float | int | None] = {}
        for key in CARD_METRICS:
            if key not in row:
                continue
            value = row[key]
            if value != value:  # NaN
                values[key] = None
            elif key in ("n", "positives"):
                values[key] = int(value)
            else:
                values[key] = round(float(value), 6)
        out[str(label)] = values
    return out


def bundle_checkpoint(
    source: str | Path,
    target: str | Path,
    how_made: Mapping[str, Any],
    *,
    evaluate_on: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``source`` as a float16 checkpoint at ``target`` with its guard and ``how_made`` in the card.

    ``evaluate_on``: ``{"workspace": ws, "dataset": name, "split": "test", "by": "source" or None,
    "n_boot": 1000}``; the metrics of the written file are then added to its card (``evaluation``).
    """
    from cxrcore.models.checkpoint import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(source)
    model, card = loaded.model, loaded.card.replace(how_made=dict(how_made), evaluation=None)
    written = save_checkpoint(target, model, card, half=True)
    if guard_path(source).is_file():
        shutil.copyfile(guard_path(source), guard_path(written))
    if evaluate_on is None:
        return written
    from cxrcore.evaluate.report import evaluate_checkpoint

    opts = dict(evaluate_on)
    ws, dataset = opts.pop("workspace"), opts.pop("dataset")
    split, by, n_boot = opts.get("split", "test"), opts.get("by"), int(opts.get("n_boot", 1000))
    result = evaluate_checkpoint(written, ws, dataset, split, n_boot=n_boot, by=by)
    command = f"python -m cxrcore evaluate {target_display(written)} --dataset {dataset} --split {split}"
    if by:
        command += f" --by {by}"
    if n_boot != 1000:
        command += f" --bootstrap {n_boot}"
    evaluation = {
        "command": command,
        "dataset": dataset,
        "split": split,
        "n_images": len(result.predictions.table),
        "threshold_rule": result.threshold_rule,
        "bootstrap": n_boot,
        "metrics": metrics_for_card(result.summary),
        "by": {"column": by, "groups": {k: metrics_for_card(v) for k, v in result.groups.items()}}
        if by
        else None,
    }
    # The same float32 model rounds to the same float16 weights, so the figures stay those of this file.
    return save_checkpoint(written, model, card.replace(evaluation=evaluation), half=True)


def target_display(path: Path) -> str:
    """The path as a user would type it from the project folder (relative when inside it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
