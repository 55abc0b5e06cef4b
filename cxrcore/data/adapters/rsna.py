"""RSNA Pneumonia Detection Challenge adapter: one 'Lung Opacity' label with its boxes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrcore.data.adapters.files import rescale_boxes, scan_images
from cxrcore.data.index import DatasetError, IndexedDataset, build_index, validate_boxes

LABEL = "Lung Opacity"


def load_rsna(
    labels_csv: str | Path, images_dir: str | Path, mapping_csv: str | Path | None = None
) -> IndexedDataset:
    """Index the RSNA labels over ``<patientId>.dcm`` files, or over other files through a mapping.

    The challenge's ``patientId`` names one image. With a mapping table (``patientId`` -> image file
    name, e.g. the NIH file each RSNA image came from) the index uses those files, and the patient id is
    taken from NIH-style names (``PPPPPPPP_FFF.png``) when they have that form. Boxes are drawn in the
    1024 px space of the challenge images and are rescaled to each file on disk.
    """
    try:
        raw = pd.read_csv(labels_csv)
    except FileNotFoundError:
        raise DatasetError(f"label file not found: {labels_csv}") from None
    needed = {"patientId", "x", "y", "width", "height", "Target"}
    if not needed <= set(raw.columns):
        raise DatasetError(f"{Path(labels_csv).name} lacks RSNA columns {sorted(needed - set(raw.columns))}")
    target = raw.groupby("patientId", sort=True)["Target"].max()
    meta = pd.DataFrame({"rsna_id": target.index})
    files = scan_images(images_dir)
    if mapping_csv is not None:
        mapping = pd.read_csv(mapping_csv)
        if mapping.shape[1] < 2 or "patientId" not in mapping.columns:
            raise DatasetError(f"{Path(mapping_csv).name} must have a patientId column and an image column")
        image_col = next(c for c in mapping.columns if c != "patientId")
        meta["image_id"] = meta["rsna_id"].map(mapping.set_index("patientId")[image_col])
        nih_like = meta["image_id"].str.fullmatch(r"\d{8}_\d{3}\.\w+", na=False)
        meta["patient_id"] = meta["image_id"].where(~nih_like, meta["image_id"].str[:8])
    else:
        meta["image_id"] = meta["rsna_id"] + ".dcm"
        meta["patient_id"] = meta["rsna_id"]
    meta["path"] = meta["image_id"].map(lambda name: str(files[name]) if name in files else None)
    present = meta["path"].notna().to_numpy()
    if not present.any():
        raise DatasetError(f"none of the {len(meta)} RSNA images are in {images_dir}")
    meta = meta[present].reset_index(drop=True)
    meta["source"] = "rsna"
    labels = pd.DataFrame({LABEL: target.loc[meta["rsna_id"]].to_numpy(dtype="float64")})
    index = build_index(meta.drop(columns="rsna_id"), labels)

    box_rows = raw[raw["Target"] == 1].dropna(subset=["x", "y", "width", "height"])
    box_rows = box_rows[box_rows["patientId"].isin(set(meta["rsna_id"]))]
    image_of = meta.set_index("rsna_id")["image_id"]
    boxes = pd.DataFrame(
        {
            "image_id": box_rows["patientId"].map(image_of).to_numpy(),
            "label": LABEL,
            "x": box_rows["x"].to_numpy(),
            "y": box_rows["y"].to_numpy(),
            "w": box_rows["width"].to_numpy(),
            "h": box_rows["height"].to_numpy(),
        }
    )
    boxes, unreadable = rescale_boxes(boxes, index.set_index("image_id")["path"])
    notes = {
        "rows_in_label_file": len(raw),
        "images_in_label_file": len(target),
        "dropped_missing_image": int((~present).sum()),
        "boxes": len(boxes),
        "boxes_dropped_unreadable": unreadable,
    }
    return IndexedDataset(index=index, boxes=validate_boxes(boxes, index), notes=notes)
