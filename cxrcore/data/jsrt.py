"""The JSRT chest X-rays with their SCR organ masks: listing, reading, and a fixed split by image.

Layout (``$CXR_DATA_DIR/jsrt``): ``images/<name>.png`` (512 x 512, 8-bit grey) and
``masks/{left_lung,right_lung,heart,left_clavicle,right_clavicle}/<name>.png`` (0 / 255). Left and
right are the patient's: the left lung lies on the image's right. The lung segmenter learns the
organs of ``ORGANS``; both clavicles make one class. JSRT has one image per patient, so splitting by
image is splitting by patient.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from cxrcore.data.index import DatasetError
from cxrcore.data.split import DEFAULT_FRACTIONS, parse_fractions
from cxrcore.io import ImageReadError, read_image

# The segmenter's classes (the patient's right and left) and the SCR mask folders each one unites.
ORGANS: tuple[str, ...] = ("right_lung", "left_lung", "heart", "clavicles")
ORGAN_NAMES: dict[str, str] = {
    "right_lung": "right lung",
    "left_lung": "left lung",
    "heart": "heart",
    "clavicles": "clavicles",
}
MASK_FOLDERS: dict[str, tuple[str, ...]] = {
    "right_lung": ("right_lung",),
    "left_lung": ("left_lung",),
    "heart": ("heart",),
    "clavicles": ("left_clavicle", "right_clavicle"),
}
JSRT_SPLITS: tuple[str, ...] = ("train", "valid", "test")


def jsrt_root(data_dir: str | Path) -> Path:
    """The JSRT folder under a data folder (or that folder itself); DatasetError naming what is missing."""
    base = Path(data_dir)
    root = base if (base / "images").is_dir() and (base / "masks").is_dir() else base / "jsrt"
    for part in ("images", *(f"masks/{f}" for folders in MASK_FOLDERS.values() for f in folders)):
        if not (root / part).is_dir():
            raise DatasetError(
                f"JSRT folder {str(root)!r} lacks {part}/ (expected images/ and masks/<organ>/)"
            )
    return root


def list_cases(root: str | Path) -> list[str]:
    """The image names (file stems) that have an image and every organ mask, sorted."""
    root = jsrt_root(root)
    names = sorted(p.stem for p in (root / "images").glob("*.png"))
    folders = [f for group in MASK_FOLDERS.values() for f in group]
    complete = [n for n in names if all((root / "masks" / f / f"{n}.png").is_file() for f in folders)]
    if not complete:
        raise DatasetError(f"no JSRT image in {str(root / 'images')!r} has all of its organ masks")
    return complete


def cases_fingerprint(names: Sequence[str]) -> str:
    """A short sha256 of the sorted image names: which images a segmenter was trained and tested on."""
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]


def _read_mask(path: Path) -> np.ndarray:
    """A 0 / 255 mask file as booleans; DatasetError naming the file when it cannot be read."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise DatasetError(f"cannot read the mask {str(path)!r}")
    return mask > 127


def read_case(root: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One JSRT image (float32 (H, W) in [0, 1]) and its masks (bool (len(ORGANS), H, W)).

    Raises:
        DatasetError: the image or a mask cannot be read, or their sizes differ.
    """
    root = Path(root)
    try:
        pixels, _ = read_image(root / "images" / f"{name}.png")
    except ImageReadError as exc:
        raise DatasetError(f"cannot read JSRT image {name}: {exc}") from None
    masks = np.zeros((len(ORGANS), *pixels.shape), dtype=bool)
    for i, organ in enumerate(ORGANS):
        for folder in MASK_FOLDERS[organ]:
            part = _read_mask(root / "masks" / folder / f"{name}.png")
            if part.shape != pixels.shape:
                raise DatasetError(f"mask {folder}/{name}.png is {part.shape}, its image {pixels.shape}")
            masks[i] |= part
    return pixels, masks


def split_cases(
    names: Sequence[str], seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, list[str]]:
    """A fixed random split of the images into train / valid / test (sorted within each part)."""
    train_f, valid_f, _ = parse_fractions(fractions)
    order = sorted(names)
    perm = np.random.default_rng(seed).permutation(len(order))
    n_train, n_valid = round(train_f * len(order)), round(valid_f * len(order))
    parts = (perm[:n_train], perm[n_train : n_train + n_valid], perm[n_train + n_valid :])
    return {split: sorted(order[i] for i in part) for split, part in zip(JSRT_SPLITS, parts, strict=True)}
