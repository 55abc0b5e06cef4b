"""The Explain page's panel: a row of tiles per label, boxes at the chosen fraction of each map's peak."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from cxrcore.data.phantoms import render_phantom
from cxrcore.explain.engine import Explanation, explain
from cxrcore.explain.panel import PanelOptions, panel_png, panel_tiles
from cxrcore.models.checkpoint import load_checkpoint

LOCALISER = Path(__file__).resolve().parents[1] / "checkpoints" / "demo-localiser.safetensors"
LABELS = ("Effusion", "Nodule", "Opacity")


@cache
def _explanation() -> Explanation:
    """The bundled localiser's maps of a phantom with all three lesions."""
    image, _ = render_phantom(np.random.default_rng(3), 256, list(LABELS))
    return explain(load_checkpoint(LOCALISER), image, LABELS, ("cam", "crm"))


def _inside(inner: np.ndarray, outers: np.ndarray) -> bool:
    x, y, w, h = inner
    return bool(
        np.any(
            (outers[:, 0] <= x)
            & (outers[:, 1] <= y)
            & (outers[:, 0] + outers[:, 2] >= x + w)
            & (outers[:, 1] + outers[:, 3] >= y + h)
        )
    )


def test_a_row_per_label_with_the_image_then_each_method() -> None:
    rows = panel_tiles(_explanation(), ["Nodule", "Opacity"], ["cam", "crm"], PanelOptions(tile=96))
    assert [[t.method for t in row] for row in rows] == [["image", "cam", "crm"]] * 2
    assert [row[0].label for row in rows] == ["Nodule", "Opacity"]
    assert all(t.rgb.shape == (96, 96, 3) for row in rows for t in row)
    png = Image.open(io.BytesIO(panel_png(rows, gap=4)))
    assert png.size == (3 * (96 + 4), 2 * (96 + 4))


def test_a_higher_box_threshold_draws_boxes_inside_the_lower_ones() -> None:
    explanation = _explanation()
    low = panel_tiles(explanation, LABELS, ["cam", "crm"], PanelOptions(box_threshold=0.5))
    high = panel_tiles(explanation, LABELS, ["cam", "crm"], PanelOptions(box_threshold=0.8))
    changed = 0
    for row_low, row_high in zip(low, high, strict=True):
        for a, b in zip(row_low[1:], row_high[1:], strict=True):
            assert len(a.boxes) and len(b.boxes)
            outers = a.boxes[["x", "y", "w", "h"]].to_numpy(float)
            for inner in b.boxes[["x", "y", "w", "h"]].to_numpy(float):
                assert _inside(inner, outers)
            if not a.boxes[["x", "y", "w", "h"]].equals(b.boxes[["x", "y", "w", "h"]]):
                changed += 1
                assert not np.array_equal(a.rgb, b.rgb)  # the drawn boxes differ too
    assert changed >= len(LABELS)


def test_boxes_can_be_turned_off() -> None:
    rows = panel_tiles(_explanation(), LABELS, ["cam"], PanelOptions(show_boxes=False))
    assert all(len(t.boxes) == 0 for row in rows for t in row)
