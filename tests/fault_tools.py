"""Real faults for tests: a Python process with a small file-size limit (the kernel refuses writes past
it, as a full disk would), and a folder that process cannot write (even when the tests run as root).

Nothing of cxrcore is patched: the fault is the operating system's.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# Run in the child before anything else: it sets the limits on itself, then becomes the real command.
_LAUNCHER = """
import ctypes, os, resource, signal, sys
fsize, unprivileged = int(sys.argv[1]), sys.argv[2] == "1"
if fsize >= 0:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
if unprivileged and os.geteuid() == 0:
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2, 3):  # DAC override, DAC read search, fowner: gone after exec
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")
os.execv(sys.executable, [sys.executable, *sys.argv[3:]])
"""


def run_python(
    args: list[str],
    *,
    home: Path | None = None,
    fsize: int | None = None,
    unprivileged: bool = False,
    timeout: float = 240,
) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` from the repository root with a file-size limit and/or without root's overrides.

    ``unprivileged`` makes folder permissions bind the child even when the tests run as root.
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    if home is not None:
        env["CXR_HOME"] = str(home)
    limits = [str(-1 if fsize is None else fsize), "1" if unprivileged else "0"]
    return subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *limits, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def make_read_only(*paths: Path) -> None:
    """Take the write bits off folders and files (the unprivileged child then cannot write there)."""
    for path in paths:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def make_writable(*paths: Path) -> None:
    """Give the owner the write bit back (so the test's temporary folder can be removed)."""
    for path in paths:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every visible file under ``folder`` (hidden temporary files left out) with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }
