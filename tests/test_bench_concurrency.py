"""``bench/bench_concurrency.py`` runs the bundled models' work for two uploads at once (phantoms) and
reports each part alone and together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_concurrency.py"


def test_two_uploads_at_once_are_timed_part_by_part() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CXR_DATA_DIR"} | {"OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(BENCH), "--sessions", "2", "--repeats", "1"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["real_data"] is False and result["sessions"] == 2 and result["torch_threads"] == 1
    for part in ("explain", "detect", "segment", "all"):
        figures = result[part]
        assert figures["single_s"] > 0 and figures["at_once_s"] > 0
        assert figures["serial_s"] == pytest.approx(2 * figures["single_s"], abs=0.002)
    assert result["all"]["single_s"] > result["detect"]["single_s"]  # the whole includes the detector
