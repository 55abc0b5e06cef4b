"""Shipping a trained checkpoint with the project: float16 weights, its upload guard, and a model card
that says how it was made, how its probabilities are calibrated and what it scores on its test split.

The calibration and operating points are fitted again on the written (float16) file, by the call
``python -m cxrcore checkpoint calibrate`` makes; the test figures in the card are computed by
``evaluate_checkpoint`` on that file, the same call ``python -m cxrcore evaluate`` makes, so the card and
the command print the same numbers.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cxrcore.models.card import guard_path, read_card

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
    calibrate_on: tuple[Any, str] | None = None,
) -> Path:
    """Write ``source`` as a float16 checkpoint at ``target`` with its guard and ``how_made`` in the card.

    ``calibrate_on``: ``(workspace, dataset)`` whose validation split the written file's calibration
    and operating points are fitted on (``evaluate_on``'s dataset when not given).
    ``evaluate_on``: ``{"workspace": ws, "dataset": name, "split": "test", "by": "source" or None,
    "n_boot": 1000}``; the metrics of the written file are then added to its card (``evaluation``).
    """
    from cxrcore.evaluate.recalibrate import calibrate_checkpoint
    from cxrcore.models.checkpoint import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(source)
    model, card = loaded.model, loaded.card.replace(how_made=dict(how_made), evaluation=None)
    written = save_checkpoint(target, model, card, half=True)
    if guard_path(source).is_file():
        shutil.copyfile(guard_path(source), guard_path(written))
    if calibrate_on is None and evaluate_on is not None:
        calibrate_on = (evaluate_on["workspace"], evaluate_on["dataset"])
    if calibrate_on is not None:
        calibrate_checkpoint(written, calibrate_on[0], calibrate_on[1])
    if evaluate_on is None:
        return written
    return evaluate_into_card(written, evaluate_on)


def evaluate_into_card(checkpoint: str | Path, evaluate_on: Mapping[str, Any]) -> Path:
    """Store a checkpoint's test-split figures (``evaluate_on`` as for ``bundle_checkpoint``) in its card.

    Run again after anything that changes the probabilities (a new calibration moves the pooled
    "micro" row, never a label's own AUROC), so the card keeps printing what the command prints.
    """
    from cxrcore.evaluate.report import evaluate_checkpoint
    from cxrcore.models.checkpoint import write_card

    written = Path(checkpoint)
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
    # The card is rewritten with the tensors copied as stored, so the figures stay those of this file.
    return write_card(written, read_card(written).replace(evaluation=evaluation))


def target_display(path: Path) -> str:
    """The path as a user would type it from the project folder (relative when inside it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
