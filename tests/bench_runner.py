"""The one way tests run a ``bench/`` script: a real subprocess on generated files (the real data left
out, so it is quick), whose last line of output is its JSON, and whose ``--out`` file, when asked for,
holds the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def run_bench(script: str, *args: str, out: Path | None = None, env: dict[str, str] | None = None) -> Any:
    """Run ``bench/script`` with ``args`` (and ``--out out``); its JSON, after checking it exited 0."""
    environment = {k: v for k, v in os.environ.items() if k != "CXR_DATA_DIR"} | (env or {})
    command = [sys.executable, str(BENCH_DIR / script), *args, *(["--out", str(out)] if out else [])]
    proc = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if out is not None:
        assert json.loads(out.read_text()) == result
    return result
