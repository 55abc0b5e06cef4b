"""``bench/bench_concurrency.py`` runs the bundled models' work for two uploads at once (phantoms) and
reports each part alone and together."""

from __future__ import annotations

import pytest
from bench_runner import run_bench


def test_two_uploads_at_once_are_timed_part_by_part() -> None:
    args = ("--sessions", "2", "--repeats", "1")
    result = run_bench("bench_concurrency.py", *args, env={"OMP_NUM_THREADS": "1"})
    assert result["real_data"] is False and result["sessions"] == 2 and result["torch_threads"] == 1
    for part in ("explain", "detect", "segment", "all"):
        figures = result[part]
        assert figures["single_s"] > 0 and figures["at_once_s"] > 0
        assert figures["serial_s"] == pytest.approx(2 * figures["single_s"], abs=0.002)
    assert result["all"]["single_s"] > result["detect"]["single_s"]  # the whole includes the detector
