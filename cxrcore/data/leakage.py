"""Leakage between datasets or splits: shared patients and byte-identical image files."""

from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxrcore.data.index import SPLITS, DatasetError

_EXAMPLES = 20


@dataclass(frozen=True)
class PairLeakage:
    """What two sets of images share."""

    a: str
    b: str
    shared_patients: tuple[str, ...]
    images_a: int  # images of set a that belong to a shared patient
    images_b: int
    identical_images: tuple[tuple[str, str], ...] = ()  # (image_id in a, image_id in b), byte-identical files
    checked_bytes: bool = False

    @property
    def leaks(self) -> bool:
        """Whether anything is shared."""
        return bool(self.shared_patients or self.identical_images)

    def counts(self) -> dict[str, str | int]:
        """The pair's names and counts."""
        return {
            "a": self.a,
            "b": self.b,
            "shared_patients": len(self.shared_patients),
            "images_a": self.images_a,
            "images_b": self.images_b,
            "identical_images": len(self.identical_images),
        }

    def describe(self) -> str:
        """One line for people."""
        if not self.leaks:
            checked = " or identical files" if self.checked_bytes else ""
            return f"{self.a} / {self.b}: no shared patients{checked}"
        parts = [f"{len(self.shared_patients)} shared patient(s) ({self.images_a} + {self.images_b} images)"]
        if self.identical_images:
            parts.append(f"{len(self.identical_images)} byte-identical image pair(s)")
        return f"{self.a} / {self.b}: " + ", ".join(parts)


@dataclass(frozen=True)
class LeakageReport:
    """Leakage for every pair of sets compared."""

    pairs: tuple[PairLeakage, ...] = field(default_factory=tuple)

    @property
    def leaks(self) -> bool:
        """Whether any pair shares patients or images."""
        return any(p.leaks for p in self.pairs)

    @property
    def verdict(self) -> str:
        """A short verdict for the user."""
        if not self.pairs:
            return "nothing to compare"
        return (
            "LEAKAGE: " + "; ".join(p.describe() for p in self.pairs if p.leaks)
            if self.leaks
            else "no leakage"
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per pair with counts and a few example patients."""
        return pd.DataFrame(
            [{**p.counts(), "example_patients": ", ".join(p.shared_patients[:5])} for p in self.pairs]
        )

    def to_dict(self) -> dict:
        """A JSON-ready form with examples capped at a readable number."""
        return {
            "verdict": self.verdict,
            "leaks": self.leaks,
            "pairs": [
                {
                    **p.counts(),
                    "checked_bytes": p.checked_bytes,
                    "example_patients": list(p.shared_patients[:_EXAMPLES]),
                    "example_identical": [list(x) for x in p.identical_images[:_EXAMPLES]],
                }
                for p in self.pairs
            ],
        }


def content_digest(path: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_sizes(frame: pd.DataFrame) -> pd.Series:
    paths = frame.set_index("image_id")["path"].dropna()
    return paths.map(lambda p: os.stat(p).st_size if os.path.isfile(p) else -1)


def identical_files(a: pd.DataFrame, b: pd.DataFrame) -> list[tuple[str, str]]:
    """Pairs of byte-identical files; only files whose sizes collide are hashed."""
    size_a, size_b = _file_sizes(a), _file_sizes(b)
    common = (set(size_a) & set(size_b)) - {-1}
    if not common:
        return []
    path_a = a.set_index("image_id")["path"]
    path_b = b.set_index("image_id")["path"]
    hash_a = {i: content_digest(path_a[i]) for i in size_a[size_a.isin(common)].index}
    by_hash: dict[str, list[str]] = {}
    for i in size_b[size_b.isin(common)].index:
        by_hash.setdefault(content_digest(path_b[i]), []).append(i)
    pairs = [
        (ia, ib)
        for ia, h in hash_a.items()
        for ib in by_hash.get(h, [])
        if Path(path_a[ia]) != Path(path_b[ib])
    ]
    return sorted(pairs)


def leakage_between(
    a: pd.DataFrame, b: pd.DataFrame, name_a: str = "a", name_b: str = "b", check_bytes: bool = True
) -> PairLeakage:
    """Patients (and, when paths are known, byte-identical files) that two indexes share."""
    shared = sorted(set(a["patient_id"].dropna()) & set(b["patient_id"].dropna()))
    can_hash = check_bytes and a["path"].notna().any() and b["path"].notna().any()
    return PairLeakage(
        a=name_a,
        b=name_b,
        shared_patients=tuple(shared),
        images_a=int(a["patient_id"].isin(shared).sum()),
        images_b=int(b["patient_id"].isin(shared).sum()),
        identical_images=tuple(identical_files(a, b)) if can_hash else (),
        checked_bytes=bool(can_hash),
    )


def leakage_by_split(index: pd.DataFrame, check_bytes: bool = True) -> LeakageReport:
    """Leakage between every pair of splits of one index."""
    if "split" not in index.columns or index["split"].isna().all():
        raise DatasetError("the index has no split column to check; build a split first")
    present = [s for s in SPLITS if (index["split"] == s).any()]
    groups = {s: index[index["split"] == s] for s in present}
    return LeakageReport(
        tuple(
            leakage_between(groups[x], groups[y], x, y, check_bytes=check_bytes)
            for x, y in itertools.combinations(present, 2)
        )
    )


def leakage_against(
    index: pd.DataFrame, other: pd.DataFrame, name: str, other_name: str, check_bytes: bool = True
) -> LeakageReport:
    """Leakage between two whole indexes (e.g. a training set and an external test set)."""
    return LeakageReport((leakage_between(index, other, name, other_name, check_bytes=check_bytes),))
