"""Reviewing a set of chest X-rays with one checkpoint: per image readings, guard verdict, boxes and panel.

``review_batch(checkpoint, sources)`` reads every image (files, or bytes kept in memory as the Explain
page has them), runs the upload guard, explains it once (CAM and CRM for every label from one forward
pass), reads each label against its threshold and its trust (``cxrcore.evaluate.trust``), draws the
explanation panel of the labels called positive (or the most probable ones), and keeps a file it
cannot read as a failure with the reader's message. ``batch_table`` is the set as one CSV-ready
table; ``write_batch`` writes the panels, the CSV and the HTML and PDF reports
(``cxrcore.workflows.report_render``) into a folder.

Only pixels and the reader's technical metadata are used: the DICOM reader never parses patient
identifiers, so none can reach a table, a picture or a report.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrcore.atomic import write_bytes_atomic
from cxrcore.evaluate.trust import label_readings
from cxrcore.explain.boxes import BOX_THRESHOLD
from cxrcore.explain.engine import DEFAULT_METHODS, Explanation, explain
from cxrcore.explain.heatmap import to_png_bytes
from cxrcore.explain.overlay import thumbnail, to_rgb
from cxrcore.explain.panel import PanelOptions, panel_png, panel_tiles, predicted_boxes
from cxrcore.io import UPLOAD_TYPES, ImageReadError, assess_image, read_image
from cxrcore.models.checkpoint import Checkpoint
from cxrcore.models.guard import Verdict, assess
from cxrcore.preprocess import PreprocessConfig, fit_geometry

log = logging.getLogger(__name__)

PANEL_LABELS = 4  # labels drawn per image: those called positive first, then the most probable
THUMBNAIL_SIDE = 160
REPORT_PANEL = PanelOptions(tile=256)  # how the reports draw each image's panel
Source = tuple[str, "bytes | Path"]  # (name shown in the reports, file contents or path)


@dataclass(frozen=True)
class ImageReview:
    """One image of a batch: its readings, guard verdict, top box per label and pictures, or its error."""

    name: str
    error: str | None = None
    format: str | None = None
    size: tuple[int, int] | None = None  # (width, height) as read
    readings: pd.DataFrame | None = None  # cxrcore.evaluate.trust.label_readings
    verdict: Verdict | None = None
    boxes: dict[str, dict[str, float]] = field(default_factory=dict)  # label -> x, y, w, h, score
    box_frame: str = "image"  # "image": the file's pixels; "input": the model's square (lung crop)
    panel_labels: tuple[str, ...] = ()
    panel: bytes | None = None  # PNG
    thumbnail: bytes | None = None  # PNG

    @property
    def ok(self) -> bool:
        """Whether the image was read and explained."""
        return self.error is None

    @property
    def warnings(self) -> tuple[str, ...]:
        """What says the probabilities may mean little: the guard's reasons (quality warnings included)."""
        return () if self.verdict is None else tuple(self.verdict.reasons)


@dataclass(frozen=True)
class BatchReview:
    """Every image of a batch reviewed by one checkpoint."""

    checkpoint: str  # its name (file stem)
    card: Any  # the checkpoint's ModelCard
    images: tuple[ImageReview, ...]
    created_at: str

    @property
    def failed(self) -> list[ImageReview]:
        """The images that could not be read or explained."""
        return [r for r in self.images if not r.ok]

    @property
    def reviewed(self) -> list[ImageReview]:
        """The images read and explained."""
        return [r for r in self.images if r.ok]


def collect_files(paths: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """The files to review, each with the name the reports give it: (name, path), sorted within folders.

    A file given is named by its file name; a folder's files (recursively) by their path inside the
    folder, so no directory above it (which may name a patient) reaches a report. In a folder, a file
    counts when its extension is an image type the reader knows or it has none (DICOM files often
    have none); hidden files are skipped. A path that does not exist raises FileNotFoundError.
    """
    found: list[tuple[str, Path]] = []
    for item in map(Path, paths):
        if item.is_dir():
            for path in sorted(p for p in item.rglob("*") if p.is_file()):
                inside = path.relative_to(item)
                hidden = any(part.startswith(".") for part in inside.parts)
                if not hidden and (path.suffix == "" or path.suffix.lower().lstrip(".") in UPLOAD_TYPES):
                    found.append((inside.as_posix(), path))
        elif item.is_file():
            found.append((item.name, item))
        else:
            raise FileNotFoundError(f"no such file or folder: {item}")
    return found


def _to_image_frame(box: dict[str, float], size: tuple[int, int], pcfg: PreprocessConfig) -> dict[str, float]:
    """A box on the model's input square moved back onto the image's own pixels (undoing pad or crop)."""
    width, height = size
    rw, rh, x0, y0 = fit_geometry(width, height, pcfg.input_size, pcfg.fit)
    sx, sy = rw / width, rh / height
    x, y = (box["x"] - x0) / sx, (box["y"] - y0) / sy
    w, h = box["w"] / sx, box["h"] / sy
    left, top = max(0.0, x), max(0.0, y)
    right, bottom = min(float(width), x + w), min(float(height), y + h)
    return {
        "x": left,
        "y": top,
        "w": max(0.0, right - left),
        "h": max(0.0, bottom - top),
        "score": box["score"],
    }


def _top_boxes(
    explanation: Explanation, checkpoint: Checkpoint, size: tuple[int, int], threshold: float
) -> tuple[dict[str, dict[str, float]], str]:
    """The highest-scoring box drawn from each label's CAM, in the image's pixels when they can be."""
    pcfg = checkpoint.preprocess
    frame = "input" if pcfg.lung_crop else "image"
    out: dict[str, dict[str, float]] = {}
    for label in explanation.labels:
        if explanation.get("cam", label).no_positive_evidence:
            continue
        boxes = predicted_boxes(explanation, "cam", label, threshold)
        if boxes.empty:
            continue
        best = boxes.sort_values("score", ascending=False).iloc[0]
        box = {k: float(best[k]) for k in ("x", "y", "w", "h", "score")}
        out[label] = box if frame == "input" else _to_image_frame(box, size, pcfg)
    return out, frame


def _panel_labels(readings: pd.DataFrame, count: int) -> tuple[str, ...]:
    """The labels called positive (most probable first), topped up with the next most probable."""
    return tuple(readings["label"].head(count))


def review_image(
    checkpoint: Checkpoint,
    name: str,
    source: bytes | Path,
    *,
    panel_labels: int = PANEL_LABELS,
    box_threshold: float = BOX_THRESHOLD,
    options: PanelOptions = REPORT_PANEL,
) -> ImageReview:
    """Read, guard and explain one image; an unreadable file gives a review holding the reader's message."""
    try:
        data = Path(source).read_bytes() if isinstance(source, Path) else source
        pixels, meta = read_image(data)
        assess_image(pixels, meta, name).check()  # nothing to see: refused before the model runs
    except (ImageReadError, OSError) as exc:
        return ImageReview(name, error=str(exc))
    size = (int(pixels.shape[1]), int(pixels.shape[0]))
    explanation = explain(checkpoint, pixels, methods=DEFAULT_METHODS)
    verdict = assess(checkpoint, pixels, data, features=explanation.pooled_features)  # the same pass
    readings = label_readings(checkpoint.card, explanation.probabilities)
    boxes, frame = _top_boxes(explanation, checkpoint, size, box_threshold)
    shown = _panel_labels(readings, panel_labels)
    rows = panel_tiles(explanation, shown, DEFAULT_METHODS, options)
    small, _ = thumbnail(pixels, THUMBNAIL_SIDE)
    return ImageReview(
        name,
        format=meta.get("format"),
        size=size,
        readings=readings,
        verdict=verdict,
        boxes=boxes,
        box_frame=frame,
        panel_labels=shown,
        panel=panel_png(rows),
        thumbnail=to_png_bytes(to_rgb(np.clip(small, 0.0, 1.0))),
    )


def review_batch(
    checkpoint: Checkpoint,
    sources: Sequence[Source],
    *,
    progress: Callable[[int, int, str], None] | None = None,
    **options: Any,
) -> BatchReview:
    """Review every (name, bytes or path) in order; ``progress(done, total, name)`` after each one.

    ``options`` go to ``review_image`` (panel labels, box threshold, panel options).
    """
    reviews = []
    for i, (name, source) in enumerate(sources, start=1):
        review = review_image(checkpoint, name, source, **options)
        if not review.ok:
            log.info("cannot review %s: %s", name, review.error)
        reviews.append(review)
        if progress is not None:
            progress(i, len(sources), name)
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return BatchReview(checkpoint.name, checkpoint.card, tuple(reviews), created)


def guard_text(image: ImageReview) -> str:
    """The guard's verdict in words."""
    verdict = image.verdict
    if verdict is None:
        return "not run"
    word = "FLAGGED: " + "; ".join(verdict.reasons) if verdict.suspicious else "passed"
    if verdict.score is None:
        return f"{word} (cheap checks only; no feature statistics stored)"
    return f"{word} (distance {verdict.score:.1f}, threshold {verdict.threshold:.1f})"


def called_text(image: ImageReview, most: int | None = None) -> str:
    """The labels called positive with their probabilities (the ``most`` most probable), or "none"."""
    rows = image.readings[image.readings["call"] == "above"]
    shown = ", ".join(f"{r.label} {r.probability:.2f}" for r in rows.head(most).itertuples()) or "none"
    return shown + (f" and {len(rows) - most} more" if most is not None and len(rows) > most else "")


def gallery_table(review: BatchReview, sort_by: str) -> pd.DataFrame:
    """The reviewed images, most probable for ``sort_by`` first: thumbnail (PNG), file, findings, guard."""
    rows = []
    for position, image in enumerate(review.images):
        if not image.ok:
            continue
        reading = image.readings.set_index("label").loc[sort_by]
        rows.append(
            {
                "position": position,
                "thumbnail": image.thumbnail,
                "file": image.name,
                f"{sort_by} probability": round(float(reading["probability"]), 3),
                f"{sort_by} call": reading["call"],
                "called positive": called_text(image, most=3),
                "guard": guard_text(image),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values(f"{sort_by} probability", ascending=False, kind="stable").reset_index(drop=True)


def _box_text(box: dict[str, float] | None) -> str:
    """x, y, w, h rounded to whole pixels, or empty."""
    return "" if box is None else " ".join(str(round(box[k])) for k in ("x", "y", "w", "h"))


def batch_table(review: BatchReview) -> pd.DataFrame:
    """One row per image: file, status, guard, then per label probability, threshold, call and top box.

    Columns per label: ``<label> probability`` (calibrated), ``<label> threshold``, ``<label> call``
    (above / below / no threshold), ``<label> box`` ("x y w h" in the image's pixels) and
    ``<label> box score``; ``unreliable labels`` lists the labels whose figures should not be trusted.
    """
    labels = list(review.card.labels)
    rows = []
    for image in review.images:
        row: dict[str, Any] = {"file": image.name, "status": "ok" if image.ok else f"error: {image.error}"}
        if image.ok:
            verdict = image.verdict
            row.update(
                guard_distance=None if verdict.score is None else round(verdict.score, 3),
                guard_threshold=None if verdict.threshold is None else round(verdict.threshold, 3),
                guard_flagged=verdict.suspicious,
                box_frame=image.box_frame,
                called_positive=" ".join(image.readings.loc[image.readings["call"] == "above", "label"]),
                unreliable_labels=" ".join(image.readings.loc[~image.readings["reliable"], "label"]),
            )
            by_label = image.readings.set_index("label")
            for label in labels:
                reading = by_label.loc[label]
                box = image.boxes.get(label)
                row[f"{label} probability"] = round(float(reading["probability"]), 4)
                row[f"{label} threshold"] = (
                    None if np.isnan(reading["threshold"]) else round(reading["threshold"], 4)
                )
                row[f"{label} call"] = reading["call"]
                row[f"{label} box"] = _box_text(box)
                row[f"{label} box score"] = None if box is None else round(box["score"], 4)
        rows.append(row)
    return pd.DataFrame(rows)


def _unique_stems(names: Sequence[str]) -> list[str]:
    """File-system-safe stems, one per name, with a number added where two would clash."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).stem) or "image"
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        out.append(stem if count == 0 else f"{stem}-{count + 1}")
    return out


def write_batch(review: BatchReview, out_dir: str | Path) -> dict[str, Any]:
    """Write ``panels/<image>.png``, ``review.csv``, ``report.html`` and ``report.pdf``; returns the paths.

    Each file is written atomically: a full disk or a read-only folder raises ``WriteError`` and leaves
    any earlier report in place.
    """
    from cxrcore.workflows.report_render import html_report, pdf_report

    out = Path(out_dir)
    (out / "panels").mkdir(parents=True, exist_ok=True)
    panels = []
    for image, stem in zip(review.images, _unique_stems([i.name for i in review.images]), strict=True):
        if image.ok and image.panel is not None:
            path = out / "panels" / f"{stem}.png"
            write_bytes_atomic(path, image.panel)
            panels.append(path)
    csv = out / "review.csv"
    write_bytes_atomic(csv, batch_table(review).to_csv(index=False).encode("utf-8"))
    html = out / "report.html"
    write_bytes_atomic(html, html_report(review).encode("utf-8"))
    pdf = out / "report.pdf"
    write_bytes_atomic(pdf, pdf_report(review))
    return {"panels": panels, "csv": csv, "html": html, "pdf": pdf}
