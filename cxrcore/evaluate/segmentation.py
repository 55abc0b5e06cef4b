"""How well the lung segmenter segments, and how well each lung crop method finds the lungs.

On the JSRT images of a split, per image and organ: the Dice coefficient of the segmenter's mask (in
the image's own 512 px, after the largest-region clean-up) against the SCR mask; the mean over images
with a percentile bootstrap 95% interval (resampling images). Crop boxes: the intersection over union
of each lung crop method's box with the box of the true lung masks, tight (no margin on either) and as
the crop uses it (5% margin on the method's box and on the true box alike); and how often the
threshold heuristic falls back to the whole image.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrcore.data.jsrt import ORGANS, read_case
from cxrcore.lung_crop import LUNG_MARGIN, Box, threshold_lung_box
from cxrcore.models.segmenter import Segmenter, mask_box
from cxrcore.models.segmenter_card import DICE_BOOTSTRAP

log = logging.getLogger(__name__)

N_BOOT = DICE_BOOTSTRAP  # bootstrap resamples of the images for a 95% interval
CROP_METHODS: tuple[str, ...] = ("threshold", "segmenter")
Progress = Callable[[int, int], None]


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """The Dice coefficient 2|A & B| / (|A| + |B|) of two boolean masks; 1 when both are empty."""
    a, b = np.asarray(pred, bool), np.asarray(truth, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1, exclusive ends)."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def bootstrap_mean_ci(
    values: Sequence[float], n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """The mean of ``values`` and its percentile bootstrap interval, resampling the values themselves."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


@dataclass(frozen=True)
class SegmentationReport:
    """Per-image rows (Dice per organ, crop-box IoUs) and their summary for a card or a README."""

    rows: pd.DataFrame
    summary: dict[str, Any]


def _case_row(segmenter: Segmenter, root: Path, name: str) -> dict[str, Any]:
    """One image's Dice per organ and each crop method's box IoU with the true lung box."""
    pixels, truth = read_case(root, name)
    found = segmenter.segment(pixels)
    row: dict[str, Any] = {"image": name}
    for organ, true_mask in zip(ORGANS, truth, strict=True):
        row[f"dice_{organ}"] = dice(getattr(found, organ), true_mask)
    true_lungs = truth[ORGANS.index("right_lung")] | truth[ORGANS.index("left_lung")]
    height, width = pixels.shape
    whole = (0, 0, width, height)
    for margin, tag in ((0.0, "tight"), (LUNG_MARGIN, "crop")):
        target = mask_box(true_lungs, margin) or whole
        heuristic = threshold_lung_box(pixels, margin=margin)
        learned = mask_box(found.lungs, margin) or whole
        row[f"iou_threshold_{tag}"] = box_iou(heuristic, target)
        row[f"iou_segmenter_{tag}"] = box_iou(learned, target)
        if margin == LUNG_MARGIN:
            row["threshold_fallback"] = heuristic == whole
    return row


def _ci_dict(values: tuple[float, float, float]) -> dict[str, float]:
    """A mean and its interval as a mapping for JSON."""
    return dict(zip(("mean", "ci_low", "ci_high"), values, strict=True))


def evaluate_segmenter(
    segmenter: Segmenter,
    root: str | Path,
    names: Sequence[str],
    *,
    n_boot: int = N_BOOT,
    progress: Progress | None = None,
) -> SegmentationReport:
    """Dice per organ (mean, 95% CI) and crop-box IoU of both lung crop methods on the named JSRT images."""
    rows = []
    for done, name in enumerate(names, start=1):
        rows.append(_case_row(segmenter, Path(root), name))
        if progress is not None:
            progress(done, len(names))
    frame = pd.DataFrame(rows)
    summary: dict[str, Any] = {"n_images": len(frame), "bootstrap": n_boot, "dice": {}, "crop_box_iou": {}}
    for organ in ORGANS:
        summary["dice"][organ] = _ci_dict(bootstrap_mean_ci(frame[f"dice_{organ}"], n_boot))
    for method in CROP_METHODS:
        summary["crop_box_iou"][method] = {
            tag: _ci_dict(bootstrap_mean_ci(frame[f"iou_{method}_{tag}"], n_boot))
            for tag in ("tight", "crop")
        }
    summary["crop_box_iou"]["threshold"]["fallbacks"] = int(frame["threshold_fallback"].sum())
    return SegmentationReport(frame, summary)
