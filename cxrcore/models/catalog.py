"""Where checkpoints live: the bundled ones in ``checkpoints/`` and the training runs of the workspace.

A checkpoint trained on real X-rays comes first, then the other bundled ones, then the workspace's
runs, newest first; the first one is the dashboard's default.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cxrcore.labels import LabelFit, label_fit
from cxrcore.models.card import (
    GUARD_SUFFIX,
    CheckpointError,
    FileVersion,
    SegmenterFileError,
    describe_checkpoint,
    file_version,
    guard_path,
)

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parents[2] / "checkpoints"


@dataclass(frozen=True)
class CheckpointEntry:
    """One checkpoint file with where it came from and the summary of its model card."""

    path: Path
    source: str  # "bundled" or "workspace"
    synthetic: bool  # trained on synthetic demo data
    info: dict[str, Any]

    @property
    def title(self) -> str:
        """A short name for pickers: run folder / file, architecture and the data it was trained on."""
        where = f"{self.path.parent.name}/{self.path.stem}"
        data = "synthetic demo" if self.synthetic else (self.info.get("dataset") or "unknown data")
        return f"{where} · {self.info.get('architecture')} · {data}"

    def label_fit(self, dataset_labels: Iterable[str]) -> LabelFit:
        """Which of this checkpoint's labels a dataset has and which it lacks."""
        return label_fit(self.info.get("labels") or (), dataset_labels)


def bundled_dir() -> Path:
    """The bundled checkpoint folder (``CXR_CHECKPOINTS`` overrides it, e.g. in tests)."""
    return Path(os.environ.get("CXR_CHECKPOINTS", BUNDLED_DIR))


def _entry(path: Path, source: str) -> CheckpointEntry | None:
    """The listing's entry for one checkpoint file, read once per version of the file: every page run
    lists the checkpoints (the pickers), and each entry reads the file's card and fingerprint."""
    try:
        version = file_version(path)
    except OSError as exc:
        log.warning("skipping checkpoint %s: %s", path, exc)
        return None
    entry = _described(version, source)
    if entry is None:
        return None
    return replace(entry, info=copy.deepcopy(entry.info))  # the caller's own copy, to change if it likes


@functools.lru_cache(maxsize=256)
def _described(version: FileVersion, source: str) -> CheckpointEntry | None:
    path = Path(version[0])
    try:
        info = describe_checkpoint(path)
    except SegmenterFileError:  # the bundled lung segmenter: a tool of the pages, not a model to pick
        return None
    except (CheckpointError, OSError, ValueError) as exc:
        log.warning("skipping checkpoint %s: %s", path, exc)
        return None
    return CheckpointEntry(path.resolve(), source, bool(info["synthetic"]), info)


def _weights(paths: Iterable[Path]) -> list[Path]:
    """Checkpoint weight files, leaving out the upload guards stored beside them."""
    return [p for p in paths if not p.name.endswith(GUARD_SUFFIX)]


def user_checkpoint(path: str | Path, workspace_home: str | Path) -> bool:
    """Whether a checkpoint lives in the workspace (a user's run or import), so it may be deleted."""
    return Path(workspace_home, "runs").resolve() in Path(path).resolve().parents


def delete_checkpoint(path: str | Path, workspace_home: str | Path) -> list[Path]:
    """Delete a workspace checkpoint with its model card and guard; bundled ones are refused."""
    path = Path(path)
    if not user_checkpoint(path, workspace_home):
        raise CheckpointError(f"{str(path)!r} is not a workspace checkpoint; bundled checkpoints are kept")
    removed = []
    for item in (path, path.with_suffix(".json"), guard_path(path)):
        if item.exists():
            item.unlink()
            removed.append(item)
    return removed


def list_checkpoints(workspace_home: str | Path) -> list[CheckpointEntry]:
    """Bundled checkpoints (real-data ones first), then the workspace's runs, newest first.

    Bundled files are ordered by name without the suffix, so a variant (``real-densenet121-256``)
    comes after the model it was made from (``real-densenet121``, the default).
    """
    bundled = sorted(_weights(bundled_dir().glob("*.safetensors")), key=lambda p: p.name.split(".")[0])
    runs = sorted(
        _weights(Path(workspace_home, "runs").glob("*/*.safetensors")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    entries = [e for p in bundled if (e := _entry(p, "bundled")) is not None]
    entries.sort(key=lambda e: e.synthetic)  # stable: real-data checkpoints first
    entries += [e for p in runs if (e := _entry(p, "workspace")) is not None]
    return entries
