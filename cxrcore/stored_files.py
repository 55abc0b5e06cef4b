"""Files the workspace stores beside its database: written as a version folder that one database
transaction makes current, and read back with a message that names a damaged file.

``commit_version`` writes Parquet tables (or copies files) into ``<base>/v-<id>/``, then runs the
caller's database update inside ``BEGIN IMMEDIATE``; only after the commit are older version folders
removed. Anything that stops it before the commit (an error, a full disk, a killed process) leaves
the previous version as the current one, whole; on an error the new folder is removed at once.
"""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pandas as pd

from cxrcore.atomic import atomic_path

VERSION_PREFIX = "v-"


class StoredFileError(ValueError):
    """A file the workspace stored is damaged or unreadable (the message names it and the remedy)."""


def write_parquet(frame: pd.DataFrame, target: Path) -> None:
    """Write a Parquet file so that readers only ever see a complete file."""
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)


def read_stored_frame(path: Path, what: str, remedy: str) -> pd.DataFrame:
    """Read a stored Parquet table; a damaged one raises StoredFileError naming it and ``remedy``.

    A missing file raises ``FileNotFoundError`` as it is (callers may look again).
    """
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:  # pyarrow's errors are OSError or ValueError subclasses
        detail = " ".join(str(exc).split())[:160]
        raise StoredFileError(f"the stored {what} {path} is damaged ({detail}); {remedy}") from exc


def commit_version(
    base: Path,
    files: dict[str, pd.DataFrame | Path],
    connect: Callable[[], AbstractContextManager[sqlite3.Connection]],
    record: Callable[[sqlite3.Connection, str], None],
) -> str:
    """Write ``files`` into a new version folder of ``base``, then ``record(db, version)`` in one transaction.

    Returns:
        The new version folder's name (``v-`` and 12 hex digits).
    """
    version = f"{VERSION_PREFIX}{uuid.uuid4().hex[:12]}"
    folder = base / version
    try:
        for name, content in files.items():
            if isinstance(content, Path):
                with atomic_path(folder / name) as tmp:
                    shutil.copyfile(content, tmp)
            else:
                write_parquet(content, folder / name)
        with connect() as db:
            db.execute("BEGIN IMMEDIATE")  # the write lock first: no other writer between check and write
            record(db, version)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    for old in _others(base, version):  # earlier versions, and files of the layout before versions
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    return version


def _others(base: Path, version: str) -> Iterator[Path]:
    """Everything in ``base`` but the current version folder."""
    return (p for p in base.iterdir() if p.name != version)
