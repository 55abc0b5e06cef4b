"""Atomic file writes: readers see the old file or the whole new one, never half of one.

A file is written to a uniquely named temporary file in the target's folder (the same file system,
so the rename is atomic) and moved into place with ``os.replace``; on any failure the temporary file
is removed and the target is untouched. Several processes may write the same target at once.

A write that fails for want of room or rights (a full disk, a file-size limit, a read-only folder)
raises ``WriteError``: an ``OSError`` whose message names the file, says why, and says that the
previous file is unchanged. The command line prints it as one line, the dashboard as one message.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WriteError(OSError):
    """A file could not be written (full disk, size limit, read-only folder); the previous one is intact."""


def write_error(target: Path, exc: BaseException) -> WriteError:
    """A ``WriteError`` naming ``target`` and the reason ``exc`` gives (its errno kept when it has one)."""
    if isinstance(exc, WriteError):
        return exc
    number = getattr(exc, "errno", None)
    if isinstance(number, int) and number > 0:
        reason = os.strerror(number)  # "No space left on device", not a library's wrapping of it
    else:
        reason = (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).strip()
    error = WriteError(
        f"could not write {target}: {reason} (is the disk full or the folder read-only?); "
        f"the previous {target.name}, if there was one, is unchanged"
    )
    error.errno = getattr(exc, "errno", None)
    return error


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
    """Yield a temporary path to write; it replaces ``target`` when the block ends without error.

    Raises:
        WriteError: the folder or the temporary file could not be made, or an ``OSError`` was raised
            while writing or renaming; ``target`` is as it was.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(target)
    except OSError as exc:
        raise write_error(target, exc) from exc
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        raise write_error(target, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    """Write bytes to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
