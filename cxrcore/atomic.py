"""Atomic file writes: readers see the old file or the whole new one, never half of one.

A file is written to a uniquely named temporary file in the target's folder (the same file system,
so the rename is atomic) and moved into place with ``os.replace``; on any failure the temporary file
is removed and the target is untouched. Several processes may write the same target at once.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import (changing the umask to read it is not thread-safe later).
_NEW_FILE_MODE = 0o666 & ~_read_umask()


def target_mode(target: Path) -> int:
    """The permissions a written file should have: those of the file it replaces, else the umask's."""
    return target.stat().st_mode & 0o777 if target.exists() else _NEW_FILE_MODE


def temp_beside(target: Path) -> Path:
    """A new hidden temporary file in the target's folder, with the permissions the target will keep.

    ``mkstemp`` creates files readable by their owner only; the temporary file gets the mode of the
    file it replaces, or that of a newly created file under the process's umask.
    """
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, target_mode(target))
    finally:
        os.close(fd)
    return Path(name)


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces ``target`` when the block ends without error."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    """Write bytes to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
