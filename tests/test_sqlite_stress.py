"""The workspace database with the app, the CLI and three job processes writing at once (a short run of
``bench/bench_sqlite_stress.py``: real processes, a real SQLite file): no lock error, no row lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_sqlite_stress.py"


@pytest.mark.slow  # five processes start (imports), then write for 3 s
def test_five_processes_writing_at_once_lose_nothing_and_never_see_a_lock() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--seconds", "3", "--jobs", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["locked_errors"] == 0 and result["other_errors"] == 0, result["first_error"]
    assert result["lost_rows"] == 0 and result["rows_found"] == result["rows_expected"] >= 8
    assert min(result["progress_writes_per_job"]) > 0 and result["prediction_rows"] > 0
    assert result["datasets_registered"] >= 1 and result["app_reads"] > 0
