"""Heat inside the lungs on the pages: per shown label on Explain, and averaged over a split on Evaluate.

Explain segments the image once per session (``state.LUNG_MASKS``, keyed by the segmenter's weights and
the image as shown), so moving a display control only re-reads the shares. Evaluate reads stored
shares, or computes them for the split's first images when asked, with a progress bar; its section
stays closed until asked for, so the page's first draw neither loads PyTorch nor reads the shares.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import streamlit as st

from cxrcore.digest import array_digest
from cxrcore.evaluate.lung_heat import lung_heat, stored_lung_heat
from cxrcore.explain.heatmap import to_jpeg_bytes
from cxrcore.models.card import file_fingerprint
from cxrcore.models.segmenter_card import LUNG_HEAT_MAX_IMAGES, default_segmenter_path
from cxrcore.store import Workspace
from cxrcore.ui import state
from cxrcore.ui.page import PageProgress
from cxrcore.ui.tables import static_table

if TYPE_CHECKING:  # the maps and the segmenter need PyTorch: imported where they run
    from cxrcore.explain.engine import Explanation
    from cxrcore.models.checkpoint import Checkpoint
    from cxrcore.models.segmenter import LungMasks

DEFINITION = (
    "Share of a map's heat inside the lung fields: the map is scaled to 0-1 by its own range (its coolest "
    "pixel 0, its hottest 1) and the lungs' part of its sum is given. A low share: the model looks at "
    "borders, markers, text or devices rather than the lungs; a high one says where it looks, not that "
    "it is right. CRM sums every output, so it is one map for all labels."
)


def _percent(value: float) -> str:
    """A share as a whole percentage, or a dash when there is no heat to share."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.0%}"


def _missing_segmenter() -> Path | None:
    """The bundled segmenter's path when it is missing (after saying so on the page); None when present."""
    path = default_segmenter_path()
    if path.is_file():
        return None
    st.caption(
        f"Heat inside the lungs needs the lung segmenter ({path.name}); "
        f"`python -m cxrcore segmenter train --out {path}` trains one in about 15 minutes."
    )
    return path


def segment_lungs(pixels: np.ndarray, segmenter: Path) -> LungMasks:
    """The lung fields of an image by the segmenter at ``segmenter`` (PyTorch is loaded on first use)."""
    from cxrcore.models.segmenter import segment_lungs as segment

    return segment(pixels, segmenter)


def explain_lung_section(
    checkpoint: Checkpoint, pixels: np.ndarray, result: Explanation, labels: list[str]
) -> None:
    """Per shown label, the share of its CAM's and the CRM's heat inside the lungs, beside their outline."""
    from cxrcore.explain.lungs import lung_outline, lung_shares, lungs_on_input, share_reading
    from cxrcore.ui.explain import session_memo

    st.markdown("**Heat inside the lungs**")
    if _missing_segmenter() is not None:
        return
    path = default_segmenter_path()
    key = (file_fingerprint(path), array_digest(pixels))
    masks = session_memo(state.LUNG_MASKS, key, lambda: segment_lungs(pixels, path))
    lungs = lungs_on_input(checkpoint, pixels, masks)
    shares = lung_shares(result, lungs, labels)
    table = shares.map(_percent)
    area = float(lungs.mean())
    table["reading"] = [share_reading(value, area) for value in shares.iloc[:, 0]]  # the CAM's
    left, right = st.columns([1, 3])
    outline = to_jpeg_bytes(lung_outline(result.image01, lungs))
    left.image(outline, caption="Lung fields (segmenter)", width="stretch")
    with right:
        static_table(table)
    even = f"An evenly spread map would score {area:.0%}, the lungs' share of the image; reading: the CAM's."
    right.caption(f"{DEFINITION} {even}")


def _report_table(table: pd.DataFrame) -> pd.DataFrame:
    """The per-label means as percentages, with readable column names."""
    shown = pd.DataFrame(index=table.index)
    shown["images"] = table["images"]
    shown["positives"] = table["positives"]
    shown["CAM, all images"] = [
        f"{_percent(m)} ({_percent(lo)}-{_percent(hi)})"
        for m, lo, hi in zip(table["cam"], table["cam_lo"], table["cam_hi"], strict=True)
    ]
    shown["CAM, positives"] = table["cam_positives"].map(_percent)
    shown["CRM, all images"] = table["crm"].map(_percent)
    shown["CRM, positives"] = table["crm_positives"].map(_percent)
    return shown


def evaluate_lung_section(ws: Workspace, checkpoint: Path, dataset: str, split: str) -> None:
    """Mean heat-in-lungs share per label over the split's first images: stored, or computed on request."""
    shown = st.toggle(
        "Show the heat inside the lungs",
        key="eval_lung_show",
        help="The share of the model's maps inside the lung fields, averaged over the split's first images.",
    )
    if not shown or _missing_segmenter() is not None:
        return
    cap = int(
        st.number_input(
            "Images (the split's first N)", 10, 2000, LUNG_HEAT_MAX_IMAGES, 10, key="eval_lung_images"
        )
    )
    report = stored_lung_heat(checkpoint, ws, dataset, split, max_images=cap)
    if report is None:
        st.caption(
            f"Not computed yet for this model, split and number of images: the maps and the lungs of "
            f"up to {cap} images, about a second each on 2 CPU cores."
        )
        if not st.button("Compute heat inside the lungs", key="eval_lung_run"):
            return
        with PageProgress(f"Maps and lungs on the {split} split") as bar:
            report = lung_heat(checkpoint, ws, dataset, split, max_images=cap, progress=bar)
    meta = report.meta
    st.caption(
        f"{meta['n_images']} images: the first {min(cap, meta['of_split'])} of the {meta['of_split']} in the "
        f"{split} split. Mean share per label (CAM over all images with its bootstrap 95% CI; over the "
        f"images where the label is present); an evenly spread map would score "
        f"{report.table['lung_area'].iloc[0]:.0%}, the lungs' mean share of the input."
        + (" Reused from the workspace." if report.from_cache else "")
    )
    st.dataframe(_report_table(report.table), width="stretch", key="eval_lung_table")
    st.caption(DEFINITION)
