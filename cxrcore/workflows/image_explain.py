"""One image file through one checkpoint: the quality check, the upload guard, probabilities and maps.

``explain_file`` is what ``python -m cxrcore explain CHECKPOINT IMAGE`` runs: the image is read, an
image with nothing to see (constant, NaN or infinite pixels; ``cxrcore.io.quality``) is refused before
the model is even loaded, and every warning (the quality check's, the upload guard's) travels with the
probabilities, so no caller can show a probability without them. ``write_outputs`` saves the panel
PNG and the JSON summary atomically; neither holds anything read from a DICOM header.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrcore import jsonsafe
from cxrcore.atomic import write_bytes_atomic
from cxrcore.explain.engine import DEFAULT_METHODS, Explanation, explain
from cxrcore.explain.panel import panel_png, panel_tiles
from cxrcore.io import ImageQuality, assess_image, read_image
from cxrcore.models.checkpoint import load_checkpoint
from cxrcore.models.guard import Verdict, assess

TOP_LABELS = 4  # labels drawn in the panel when none are named


@dataclass(frozen=True)
class FileExplanation:
    """The verdicts on one image file and, for an image that was not refused, its explanation."""

    name: str
    checkpoint: str
    quality: ImageQuality
    guard: Verdict
    explanation: Explanation
    labels: tuple[str, ...]  # those drawn in the panel

    @property
    def warnings(self) -> list[str]:
        """Everything that says the probabilities may mean little (guard reasons include quality's)."""
        return list(dict.fromkeys([*self.quality.warnings, *self.guard.reasons]))

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary: the file's base name, warnings, probabilities, guard score."""
        return {
            "image": self.name,
            "checkpoint": self.checkpoint,
            "warnings": self.warnings,
            "probabilities": self.explanation.probabilities,
            "guard": {"score": self.guard.score, "threshold": self.guard.threshold},
            "explained_labels": list(self.labels),
            "methods": list(self.explanation.methods),
        }


def explain_file(
    checkpoint: str | Path,
    image: str | Path,
    labels: Sequence[str] | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
) -> FileExplanation:
    """Read, check and explain one image file with one checkpoint.

    Raises:
        ImageReadError: the file cannot be read, or ``DegenerateImageError`` (a subclass) when the
            quality check refuses it; CheckpointError or ExplainError for a bad checkpoint, label or
            method.
    """
    name = Path(image).name
    pixels, meta = read_image(image)
    quality = assess_image(pixels, meta, name).check()
    loaded = load_checkpoint(checkpoint)
    verdict = assess(loaded, pixels)
    result = explain(loaded, pixels, list(labels) if labels else None, methods)
    ranked = sorted(result.probabilities, key=result.probabilities.get, reverse=True)
    shown = tuple(labels) if labels else tuple(ranked[:TOP_LABELS])
    return FileExplanation(name, str(loaded.path), quality, verdict, result, shown)


def write_outputs(result: FileExplanation, folder: str | Path) -> list[Path]:
    """Write ``<stem>-explained.png`` (the panel) and ``<stem>-explained.json`` (the summary) atomically."""
    folder = Path(folder)
    stem = Path(result.name).stem
    rows = panel_tiles(result.explanation, result.labels, result.explanation.methods)
    png, summary = folder / f"{stem}-explained.png", folder / f"{stem}-explained.json"
    write_bytes_atomic(png, panel_png(rows))
    write_bytes_atomic(summary, (jsonsafe.dumps(result.summary(), indent=2) + "\n").encode())
    return [png, summary]
