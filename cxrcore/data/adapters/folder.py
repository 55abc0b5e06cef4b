"""Folder-per-class adapter: ``root/<class>/*`` or ``root/{train,valid,test}/<class>/*``."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from cxrcore.data.adapters.files import IMAGE_EXTENSIONS
from cxrcore.data.index import DatasetError, IndexedDataset, build_index
from cxrcore.labels import canonical_label

_SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "test": "test",
    "testing": "test",
}
_NORMAL_NAMES = {"normal", "negative", "healthy", "no finding", "no_finding"}
# NIH file names carry the patient: PPPPPPPP_FFF.png
NIH_FILE_PATTERN = r"^(\d{8})_\d{3}\.\w+$"


def _class_name(folder: str) -> str:
    """Folder name without a leading ordering prefix such as '1_', spelt as the known finding if it is one."""
    return canonical_label(re.sub(r"^\d+[_\-. ]", "", folder))


def _is_normal(folder: str) -> bool:
    return _class_name(folder).lower() in _NORMAL_NAMES


def _walk_classes(root: Path) -> list[tuple[str | None, str, Path]]:
    """(split, class folder, file) for every image under the layout."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    split_dirs = [p for p in subdirs if p.name.lower() in _SPLIT_NAMES]
    layers = [(_SPLIT_NAMES[p.name.lower()], p) for p in split_dirs] if split_dirs else [(None, root)]
    rows: list[tuple[str | None, str, Path]] = []
    for split, top in layers:
        for class_dir in sorted(p for p in top.iterdir() if p.is_dir()):
            for file in sorted(class_dir.rglob("*")):
                if file.suffix.lower() in IMAGE_EXTENSIONS and file.is_file():
                    rows.append((split, class_dir.name, file))
    return rows


def load_folder(root: str | Path, patient_pattern: str | None = None) -> IndexedDataset:
    """Index a folder-per-class tree; the folder split, when present, becomes the ``split`` column.

    Two classes where one is named normal/negative/healthy give one binary label named after the
    other class; otherwise every class gets its own column (one-hot). Patient ids come from
    ``patient_pattern`` (its first group, matched against the file name); NIH-style file names are
    recognised without a pattern; otherwise each image counts as its own patient.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"folder not found: {root}")
    rows = _walk_classes(root)
    if not rows:
        raise DatasetError(
            f"no images in class folders under {root} (expected root/<class>/* or root/train/<class>/*)"
        )
    frame = pd.DataFrame(rows, columns=["split", "class_dir", "file"])
    classes = sorted(frame["class_dir"].unique())
    normal = [c for c in classes if _is_normal(c)]
    if len(classes) == 2 and len(normal) == 1:
        positive = next(c for c in classes if c != normal[0])
        labels = pd.DataFrame({_class_name(positive): (frame["class_dir"] == positive).astype("float64")})
    else:
        labels = pd.DataFrame({_class_name(c): (frame["class_dir"] == c).astype("float64") for c in classes})
    names = frame["file"].map(lambda p: p.name)
    notes: dict[str, object] = {"classes": classes}
    if patient_pattern is None and names.str.match(NIH_FILE_PATTERN).all():
        patient_pattern = NIH_FILE_PATTERN
        notes["patient_ids"] = "from NIH file names"
    if patient_pattern:
        try:
            regex = re.compile(patient_pattern)
        except re.error as exc:
            raise DatasetError(
                f"patient pattern {patient_pattern!r} is not a regular expression: {exc}"
            ) from None
        matched = names.map(lambda n: (m := regex.search(n)) and (m.group(1) if m.groups() else m.group(0)))
        if matched.isna().any():
            raise DatasetError(
                f"patient pattern {patient_pattern!r} does not match {int(matched.isna().sum())} file(s), "
                f"e.g. {names[matched.isna()].iloc[0]!r}"
            )
        patients = matched
    else:
        patients = frame["file"].map(lambda p: p.stem)
        notes["patient_ids"] = "unknown: each image counts as its own patient (give a patient pattern)"
    meta = pd.DataFrame(
        {
            "image_id": frame["file"].map(lambda p: p.relative_to(root).as_posix()),
            "path": frame["file"].map(str),
            "patient_id": patients,
            "source": root.name,
        }
    )
    if frame["split"].notna().any():
        meta["split"] = frame["split"]
    return IndexedDataset(index=build_index(meta, labels), notes=notes)
