"""Box-table adapter: ``image,label,x,y,w,h`` over a folder of images (TBX11K and similar)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from cxrcore.data.adapters.files import scan_images
from cxrcore.data.index import DatasetError, IndexedDataset, build_index, validate_boxes


def parse_assignments(text: str | Mapping[str, float] | None) -> dict[str, float]:
    """Parse 'Name=1,Other=0' (or pass a mapping through) into label values."""
    if text is None:
        return {}
    if isinstance(text, Mapping):
        return {str(k): float(v) for k, v in text.items()}
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or value.strip() not in {"0", "1"}:
            raise DatasetError(f"label assignment {part!r} must look like Name=1 or Name=0")
        out[name.strip()] = float(value)
    return out


def load_boxes_csv(
    boxes_csv: str | Path,
    images_dir: str | Path,
    set_labels: str | Mapping[str, float] | None = None,
) -> IndexedDataset:
    """Index every image in a folder; a label is 1 where the image has a box of it, else 0.

    The table's image column may give file names with or without extension. ``set_labels`` adds
    labels every image carries (TBX11K: every image is tuberculosis-positive). Patient ids are not
    part of such tables, so each image counts as its own patient.
    """
    try:
        raw = pd.read_csv(boxes_csv)
    except FileNotFoundError:
        raise DatasetError(f"box table not found: {boxes_csv}") from None
    raw.columns = [c.strip().lower() for c in raw.columns]
    image_col = next((c for c in ("image", "image_id", "filename", "file") if c in raw.columns), None)
    if image_col is None or not {"label", "x", "y", "w", "h"} <= set(raw.columns):
        raise DatasetError(
            f"{Path(boxes_csv).name} needs columns image,label,x,y,w,h; it has {list(raw.columns)}"
        )
    files = scan_images(images_dir)
    if not files:
        raise DatasetError(f"no images in {images_dir}")
    by_stem = {Path(name).stem: name for name in files}
    names = raw[image_col].astype(str)
    raw["image_id"] = names.map(lambda n: n if n in files else by_stem.get(n))
    unmatched = int(raw["image_id"].isna().sum())
    raw = raw.dropna(subset=["image_id"])
    box_labels = sorted(raw["label"].astype(str).unique())
    ids = sorted(files)
    meta = pd.DataFrame(
        {"image_id": ids, "path": [str(files[i]) for i in ids], "patient_id": [Path(i).stem for i in ids]}
    )
    meta["source"] = Path(images_dir).resolve().parent.name
    has = raw.groupby("label")["image_id"].agg(set)
    labels = pd.DataFrame({name: meta["image_id"].isin(has[name]).astype("float64") for name in box_labels})
    for name, value in parse_assignments(set_labels).items():
        labels[name] = value
    index = build_index(meta, labels)
    boxes = validate_boxes(raw.assign(label=raw["label"].astype(str)), index)
    notes = {"boxes": len(boxes), "boxes_without_image": unmatched, "patient_ids": "unknown: one per image"}
    return IndexedDataset(index=index, boxes=boxes, notes=notes)
