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


def temp_beside(target: Path) -> Path:
    """A new hidden temporary file in the target's folder."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
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
