"""Finding image files on disk and bringing boxes into the pixel space of those files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from cxrcore.io import ImageReadError, image_size

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom"}
)


def scan_images(root: str | Path, *, recursive: bool = True) -> dict[str, Path]:
    """Map file name -> path for every image file under a folder (first one wins on repeated names)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.setdefault(name, Path(dirpath) / name)
        if not recursive:
            break
    return found


def rescale_boxes(
    boxes: pd.DataFrame, paths: pd.Series, reference: tuple[int, int] = (1024, 1024)
) -> tuple[pd.DataFrame, int]:
    """Scale boxes given in a reference pixel space to the size of each image file on disk.

    Args:
        boxes: box frame (image_id, label, x, y, w, h) in the reference space.
        paths: image_id -> file path, for the images the boxes refer to.
        reference: (width, height) of the space the boxes were drawn in.

    Returns:
        The rescaled boxes of readable images and the number of boxes dropped because their
        image could not be read.
    """
    sizes: dict[str, tuple[int, int]] = {}
    for image_id in boxes["image_id"].unique():
        path = paths.get(image_id)
        if path is None or pd.isna(path):
            continue
        try:
            sizes[image_id] = image_size(path)
        except ImageReadError as exc:
            log.warning("box image %s unreadable: %s", Path(str(path)).name, exc)
    keep = boxes["image_id"].isin(sizes.keys())
    out = boxes[keep].copy()
    sx = out["image_id"].map(lambda i: sizes[i][0] / reference[0]).astype("float64")
    sy = out["image_id"].map(lambda i: sizes[i][1] / reference[1]).astype("float64")
    out["x"] *= sx
    out["w"] *= sx
    out["y"] *= sy
    out["h"] *= sy
    return out.reset_index(drop=True), int((~keep).sum())
