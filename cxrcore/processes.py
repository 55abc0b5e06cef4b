"""Background processes of ours: started detached with their output in a log, and whether one still runs
(told apart from a zombie or a reused pid); counts the dashboard's process reads from its environment."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def process_alive(pid: int, marker: bytes) -> bool:
    """Whether ``pid`` is a live (not zombie) process whose command line holds ``marker``.

    A pid reused by a process running something else is not alive. Without ``/proc`` (not Linux) the
    signal test is all there is.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path("/proc") / str(pid)
    if not proc.is_dir():
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False  # it ended while we looked
    return state not in ("Z", "X") and marker in cmdline


# The dashboard's launcher (``cxrcore.ui.serve``) limits its own PyTorch threads with OMP_NUM_THREADS and
# sets this variable to say so; the processes it starts do not inherit the limit.
SERVER_THREADS_MARK = "CXR_SERVER_LIMITS_THREADS"


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a process we start: without the dashboard's own thread limit (a training job or a
    prediction worker uses the cores it is given)."""
    out = dict(env)
    if out.pop(SERVER_THREADS_MARK, None) is not None:
        out.pop("OMP_NUM_THREADS", None)
    return out


def start_detached(command: Sequence[str], log: Path, cwd: Path, env: Mapping[str, str]) -> subprocess.Popen:
    """Start ``command`` in a session of its own (it outlives the dashboard), with no input and its
    output appended to ``log``; ``env`` passes through ``child_environment``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=child_environment(env),
            start_new_session=True,
        )


def count_from_env(name: str, default: int) -> int:
    """A count of at least one from the environment variable ``name``; ``default`` when it is unset, and
    when it is not a whole number (the log says so)."""
    value = os.environ.get(name, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            log.warning("%s must be a whole number, got %r; using %d", name, value, default)
    return default
