"""Heat inside the lungs over a dataset split: per label, the mean share of a classifier's maps on the lungs.

For the first ``max_images`` images of a split (in index order), one forward pass gives every label's
CAM and the CRM (``explain``), the lung segmenter gives the lung fields (``segment_lungs``), and
``heat_in_lungs`` the share of each map's heat inside them. Per label: the mean CAM share over every
image and over the images where the label is present, the same for the CRM (one map summed over
every output, so its share over all images is the same for each label), and the mean lung area share
(what an evenly spread map would score). The per-image rows are stored as Parquet under
``$CXR_HOME/predictions/`` beside a JSON record, keyed by the classifier's weights, the segmenter's
weights, the dataset's index and split, the cap and the smoothing, and read back instead of running
the models again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cxrcore import jsonsafe
from cxrcore.atomic import atomic_path
from cxrcore.data.index import DatasetError
from cxrcore.data.split import split_rows
from cxrcore.evaluate.predict import truth_for
from cxrcore.io import ImageReadError, read_image
from cxrcore.models.card import CheckpointError, read_card, weights_fingerprint
from cxrcore.models.segmenter_card import LUNG_HEAT_MAX_IMAGES, default_segmenter_path
from cxrcore.store import Workspace
from cxrcore.stored_files import StoredFileError, read_stored_frame

if TYPE_CHECKING:  # the maps and the segmenter need PyTorch: imported where they run
    from cxrcore.models.checkpoint import Checkpoint

log = logging.getLogger(__name__)

LUNG_HEAT_VERSION = 1  # bump when the rows or the way they are made change
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LungHeatReport:
    """Per-label means (``table``), the per-image shares they come from (``rows``), and what made them."""

    table: pd.DataFrame
    rows: pd.DataFrame
    meta: dict[str, Any]
    from_cache: bool = False


def _key(
    checkpoint: Path, segmenter: Path, ws: Workspace, dataset: str, split: str, cap: int, smooth: float
) -> str:
    """The content key of a stored set of lung shares."""
    record = ws.get_dataset(dataset)
    payload = {
        "v": LUNG_HEAT_VERSION,
        "weights": weights_fingerprint(checkpoint),
        "segmenter": weights_fingerprint(segmenter),
        "index": record.fingerprint,
        "split_info": record.split,
        "split": split,
        "max_images": cap,
        "smooth": smooth,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _image_row(loaded: Checkpoint, segmenter: Any, image_id: str, pixels: np.ndarray, smooth: float) -> dict:
    """One image's lung area share and each label's CAM share and the CRM share."""
    from cxrcore.explain.engine import explain
    from cxrcore.explain.lungs import LUNG_SHARE_METHODS, heat_in_lungs, lungs_on_input
    from cxrcore.models.segmenter import segment_lungs

    lungs = lungs_on_input(loaded, pixels, segment_lungs(pixels, segmenter))
    result = explain(loaded, pixels, None, LUNG_SHARE_METHODS, smooth=smooth)
    row: dict[str, Any] = {"image_id": image_id, "lung_area": float(lungs.mean())}
    for label in result.labels:
        row[f"cam:{label}"] = heat_in_lungs(result.get("cam", label).display, lungs)
    row["crm"] = heat_in_lungs(result.get("crm", result.labels[0]).display, lungs)  # one map for all labels
    return row


def summarise(rows: pd.DataFrame, labels: tuple[str, ...]) -> pd.DataFrame:
    """Per label: images, positives, mean CAM share (95% CI) over all images and over positives; CRM alike."""
    from cxrcore.evaluate.segmentation import bootstrap_mean_ci

    table = []
    for label in labels:
        cam, crm = rows[f"cam:{label}"], rows["crm"]
        positive = rows[f"true:{label}"] == 1
        mean, low, high = bootstrap_mean_ci(cam)
        table.append(
            {
                "label": label,
                "images": int(cam.notna().sum()),
                "positives": int(positive.sum()),
                "cam": mean,
                "cam_lo": low,
                "cam_hi": high,
                "cam_positives": float(cam[positive].mean()) if positive.any() else float("nan"),
                "crm": float(crm.mean()),
                "crm_positives": float(crm[positive].mean()) if positive.any() else float("nan"),
                "lung_area": float(rows["lung_area"].mean()),
            }
        )
    return pd.DataFrame(table).set_index("label")


def _score_images(
    loaded: Checkpoint,
    segmenter: Any,
    rows: pd.DataFrame,
    truth: np.ndarray,
    smooth: float,
    progress: Progress | None,
) -> pd.DataFrame:
    """One row per readable image of ``rows``: its shares and its truth per label (unreadable ones logged)."""
    out = []
    for done, (image_id, file) in enumerate(zip(rows["image_id"], rows["path"], strict=True), start=1):
        try:
            pixels, _ = read_image(file)
        except ImageReadError as exc:
            log.warning("skipping %s: %s", image_id, exc)
        else:
            row = _image_row(loaded, segmenter, str(image_id), pixels, smooth)
            row.update({f"true:{label}": truth[done - 1, j] for j, label in enumerate(loaded.labels)})
            out.append(row)
        if progress is not None:
            progress(done, len(rows))
    return pd.DataFrame(out)


def _write(target: Path, frame: pd.DataFrame, meta: dict[str, Any]) -> None:
    """Store the rows as Parquet and what made them as JSON beside it, each written atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)
    with atomic_path(target.with_suffix(".json")) as tmp:
        Path(tmp).write_text(jsonsafe.dumps(meta, indent=1))


def _stored(target: Path, labels: tuple[str, ...]) -> LungHeatReport | None:
    """The stored shares at ``target`` when present and whole; None otherwise (a damaged file is logged)."""
    sidecar = target.with_suffix(".json")
    if not (target.exists() and sidecar.exists()):
        return None
    remedy = "it is not used, and computing again replaces it"
    try:
        rows = read_stored_frame(target, "lung heat table", remedy)
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (StoredFileError, OSError, ValueError) as exc:
        log.warning("%s", exc)
        return None
    if [c for c in (f"cam:{label}" for label in labels) if c not in rows.columns]:
        return None
    return LungHeatReport(summarise(rows, labels), rows, meta, from_cache=True)


def _target(checkpoint: Path, ws: Workspace, dataset: str, split: str, cap: int, smooth: float) -> Path:
    """Where the shares of these settings are stored."""
    key = _key(checkpoint, default_segmenter_path(), ws, dataset, split, cap, smooth)
    return ws.predictions_dir / f"{key}.lungheat.parquet"


def stored_lung_heat(
    checkpoint: str | Path,
    ws: Workspace,
    dataset: str,
    split: str = "test",
    *,
    max_images: int = LUNG_HEAT_MAX_IMAGES,
) -> LungHeatReport | None:
    """The stored shares of these settings (default smoothing), or None when not made yet; nothing runs."""
    from cxrcore.explain.engine import DEFAULT_SMOOTH

    path = Path(checkpoint)
    return _stored(_target(path, ws, dataset, split, max_images, DEFAULT_SMOOTH), read_card(path).labels)


def lung_heat(
    checkpoint: str | Path,
    ws: Workspace,
    dataset: str,
    split: str = "test",
    *,
    max_images: int = LUNG_HEAT_MAX_IMAGES,
    smooth: float | None = None,
    refresh: bool = False,
    progress: Progress | None = None,
) -> LungHeatReport:
    """Heat-in-lungs shares of a classifier's CAM and CRM over the first ``max_images`` images of a split.

    Read from the workspace when already made (see the module docstring). Needs the bundled lung
    segmenter (``CheckpointError`` saying how to train one otherwise). ``smooth`` None: the maps' default.
    """
    from cxrcore.explain.engine import DEFAULT_SMOOTH, check_smooth
    from cxrcore.models.checkpoint import load_checkpoint
    from cxrcore.models.segmenter import load_segmenter

    smooth = check_smooth(DEFAULT_SMOOTH if smooth is None else smooth)
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images!r}")
    path = Path(checkpoint)
    card = read_card(path)
    if card.task != "classify":
        raise CheckpointError(f"{path.name} is a {card.task} model; heat maps come from classifiers")
    segmenter = load_segmenter()
    target = _target(path, ws, dataset, split, max_images, smooth)
    if not refresh and (found := _stored(target, card.labels)) is not None:
        return found
    start = time.perf_counter()
    loaded = load_checkpoint(path)
    in_split = split_rows(ws.load_dataset(dataset).index, split)
    rows_index = in_split.head(max_images)
    truth = truth_for(rows_index, card.labels, card)
    frame = _score_images(loaded, segmenter, rows_index, truth, smooth, progress)
    if frame.empty:
        raise DatasetError(f"no image of {dataset}/{split} could be read")
    meta = {
        "checkpoint": str(path.resolve()),
        "segmenter": str(segmenter.path),
        "dataset": dataset,
        "split": split,
        "max_images": max_images,
        "n_images": len(frame),
        "of_split": len(in_split),
        "smooth": smooth,
        "seconds": round(time.perf_counter() - start, 1),
    }
    _write(target, frame, meta)
    return LungHeatReport(summarise(frame, card.labels), frame, meta)
