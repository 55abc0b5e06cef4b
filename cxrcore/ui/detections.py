"""Lesion detectors on the Explain page: a detector's boxes beside the maps, with their table and CSV.

The Explain page runs a detector once per (image as shown, detector weights) in a session and keeps
every box it returns (``cxrcore.models.detection``); the score threshold only filters those boxes, so
moving it never runs the network again. The threshold starts at the detector's default (its card's cut
chosen on validation, else 0.5), and again at the new one's when another detector is picked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import streamlit as st

from cxrcore.data.detections import DEFAULT_SCORE_THRESHOLD, DETECTION_COLUMNS
from cxrcore.digest import array_digest
from cxrcore.explain.heatmap import to_jpeg_bytes
from cxrcore.explain.panel import Tile, beside_first_row, detection_tile
from cxrcore.models.card import read_card
from cxrcore.models.catalog import CheckpointEntry, list_checkpoints
from cxrcore.models.detector_names import KIND_NAMES, parse_name
from cxrcore.models.readout import default_score_threshold, score_threshold_source
from cxrcore.store import Workspace
from cxrcore.ui import state
from cxrcore.ui.data import csv_download
from cxrcore.ui.explain import ImageChoice, model_key, session_memo, show_panel
from cxrcore.ui.models import load_model
from cxrcore.ui.page import compute_turn, guarded
from cxrcore.ui.tables import static_table, styled
from cxrcore.ui.turns import LATER

if TYPE_CHECKING:  # PyTorch loads when a detector first runs
    from cxrcore.models.checkpoint import Checkpoint

DETECTOR_WIDGET = "explain_detector"
THRESHOLD_WIDGET = "explain_detector_threshold"
NO_DETECTOR = "none"
HINT = (
    "No lesion detector yet: train one on the Train page (task *Lesion detector*, on a dataset with "
    "boxes such as the demo phantoms), or `python -m cxrcore train --task detect --dataset NAME`."
)


@dataclass(frozen=True)
class DetectorView:
    """What the Explain page shows of a detector: its checkpoint, the threshold, the boxes above it."""

    checkpoint: Checkpoint
    threshold: float
    boxes: pd.DataFrame  # DETECTION_COLUMNS, in the image's own pixels, best first

    @property
    def kind(self) -> str:
        """The detector's kind in words (Faster R-CNN, ...)."""
        return KIND_NAMES[parse_name(self.checkpoint.spec.architecture)[0]]


def detector_checkpoints(ws_home: str | Path) -> list[CheckpointEntry]:
    """The checkpoints of lesion detectors (bundled first, then the workspace's runs, newest first)."""
    return [e for e in list_checkpoints(ws_home) if e.info.get("task") == "detect"]


def cached_detections(checkpoint: Checkpoint, pixels: np.ndarray) -> pd.DataFrame:
    """Every box ``detect`` keeps, once per (image as shown, detector weights) in this session."""
    from cxrcore.models.detection import detect

    key = (model_key(checkpoint), array_digest(pixels))
    return session_memo(state.DETECTIONS, key, lambda: detect(checkpoint, pixels))


def threshold_key(path: str | None) -> str:
    """The score slider's widget key for one detector: picking another starts it at that one's default."""
    return f"{THRESHOLD_WIDGET}:{path or NO_DETECTOR}"


def _default(path: str | None) -> tuple[float, str]:
    """A detector's default score threshold and where it comes from (its card's cut, else 0.5)."""
    if path is None:
        return DEFAULT_SCORE_THRESHOLD, ""
    card = read_card(path)
    return default_score_threshold(card), score_threshold_source(card)


def _controls(ws: Workspace) -> tuple[str | None, float]:
    """The detector picker ("none" or a detector checkpoint) and the score threshold."""
    entries = detector_checkpoints(ws.home)
    if not entries:
        st.caption(HINT)
        return None, DEFAULT_SCORE_THRESHOLD
    titles = {NO_DETECTOR: "none", **{str(e.path): e.title for e in entries}}
    left, right = st.columns(2)
    chosen = left.selectbox(
        "Lesion detector",
        list(titles),
        index=1,
        format_func=titles.__getitem__,
        key=DETECTOR_WIDGET,
        help="Boxes from a detector trained on boxes, drawn beside the classifier's maps.",
    )
    path = None if chosen == NO_DETECTOR else chosen
    default, source = _default(path)
    threshold = right.slider(
        "Detector score threshold",
        0.0,
        1.0,
        default,
        0.05,
        key=threshold_key(path),
        disabled=path is None,
        help="Boxes scoring at least this are drawn and listed; moving it does not run the detector again.",
    )
    if path is not None:
        right.caption(f"Starts at {default:.2f}: {source}.")
    return path, float(threshold)


def _boxes_view(path: str, threshold: float, pixels: np.ndarray) -> DetectorView:
    """Run (or reuse) the detector at ``path`` on the image and keep the boxes above ``threshold``."""
    checkpoint = load_model(path)
    with st.spinner("Running the lesion detector..."), compute_turn(LATER):  # after waiting maps
        found = cached_detections(checkpoint, pixels)
    shown = found[found["score"] >= threshold].reset_index(drop=True)
    return DetectorView(checkpoint, threshold, shown)


def detector_tile(view: DetectorView, pixels: np.ndarray, tile: int) -> Tile:
    """The image with the detector's boxes above the threshold, for the panel and its PNG."""
    caption = f"{view.kind}: {len(view.boxes)} box(es) scoring {view.threshold:.2f} or more"
    return detection_tile(pixels, view.boxes, view.checkpoint.labels, tile, caption)


def boxes_table(view: DetectorView, image_name: str) -> None:
    """The shown boxes (class, score, x, y, w, h in the image's pixels) and their CSV."""
    if view.boxes.empty:
        st.caption(f"No box scores {view.threshold:.2f} or more; lower the threshold to see weaker ones.")
        return
    table = view.boxes.rename(columns={"label": "class"})[["class", "score", "x", "y", "w", "h"]]
    static_table(styled(table).format(precision=1).format(precision=3, subset=["score"]))
    frame = view.boxes.assign(image_id=image_name)[list(DETECTION_COLUMNS)]
    name = f"{Path(image_name).stem}-detections"
    csv_download(frame.set_index("image_id"), name, "Download the boxes (CSV)")


def detector_panel(
    ws: Workspace, choice: ImageChoice, pixels: np.ndarray, rows: list[list[Tile]], tile: int
) -> list[list[Tile]]:
    """The panel with a detector's boxes beside the maps, and its boxes table; the rows to download.

    The maps are drawn before the detector runs, so they are on screen while it works. Without a
    detector (none trained, or "none" picked) the panel is shown as it is; a detector that fails says so
    in one line and leaves the maps in place.
    """
    path, threshold = None, 0.0
    with guarded("run the lesion detector"):
        path, threshold = _controls(ws)
    if path is None:
        show_panel(rows)
        return rows
    maps, right = st.columns([max(len(r) for r in rows), 1])
    with maps:
        show_panel(rows)
    view, side = None, None
    with right:
        st.markdown("**Lesion detector**")
        with guarded("run the lesion detector"):
            view = _boxes_view(path, threshold, pixels)
            side = detector_tile(view, pixels, tile)
            st.image(to_jpeg_bytes(side.rgb), caption=side.caption, width="stretch")
    if view is None or side is None:
        return rows
    boxes_table(view, choice.name)
    return beside_first_row(rows, side)
