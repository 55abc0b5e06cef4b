"""Two people uploading on the Explain page at the same moment (a short run of ``bench/bench_load.py``:
a real server, one headless Chromium, phantoms and generated DICOMs): both are served, no model is
loaded again, and the JSON carries the figures the benchmark reports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bench_runner import run_bench
from browser_harness import browser_missing

pytestmark = [
    pytest.mark.slow,  # prepares a workspace, starts the dashboard and drives Chromium (about a minute)
    pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or ""),
]


def test_two_sessions_uploading_at_once_are_both_served(tmp_path: Path) -> None:
    args = ("--sessions", "2", "--rounds", "1", "--single-runs", "1", "--settle", "1")
    result = run_bench("bench_load.py", *args, out=tmp_path / "load.json")
    assert result["real_data"] is False and result["sessions"] == 2 and result["rounds"] == 1
    assert result["errors"] == [] and result["served"] == result["total"] == 2
    uploads = result["by_round"][0]["uploads"]
    assert sorted(u["kind"] for u in uploads) == ["dicom", "png"]
    assert all(0 < u["maps_s"] <= u["upload_s"] and "error" not in u for u in uploads)
    assert result["maps_concurrent_median_s"] <= result["concurrent_median_s"]
    assert result["concurrent_max_s"] == max(u["upload_s"] for u in uploads)
    assert result["single_median_s"] == result["single_uploads"][0]["upload_s"] > 0
    # The models were loaded during the warm-up, once, and not again by the concurrent sessions.
    before, after = result["server_before"], result["server_after"]
    assert (after["loads"], after["entries"]) == (before["loads"], before["entries"])
    assert before["loads"] == before["entries"] >= 1
    # The two sessions ended when their browser contexts closed.
    assert after["active_sessions"] == 0 and after["closed_sessions"] - before["closed_sessions"] == 2
    assert result["rss_samples"] > 0 and result["rss_peak_mb"] > 100 and result["rss_after_mb"] > 100
    assert result["late"] is None and result["rss_judged_mb"] == result["rss_after_mb"]  # no --late
    # Times in the page's clock from its file input's change: the request left after it, and the time from
    # Playwright's call (which includes handing the file to the browser) is the longer one.
    assert all(0 <= u["request_s"] < u["maps_s"] and u["upload_s"] < u["upload_from_call_s"] for u in uploads)
    # CPU by kind of process while both uploaded: the server and Chromium's renderers did work; the
    # floor is one upload's CPU for two sessions spread over this machine's cores.
    phase = result["by_round"][0]["upload_phase"]
    assert phase["wall_s"] > 0 and phase["cpu_s"]["server"] > 0 and phase["cpu_s"]["chromium-renderer"] > 0
    assert 0 < phase["machine_busy"] <= 1 and result["concurrent_machine_busy"] == [phase["machine_busy"]]
    single = result["single_uploads"][0]
    assert result["single_cpu_s"] == round(sum(single["cpu_s"].values()), 2) > 0
    floor = 2 * sum(single["cpu_s"].values()) / ((os.cpu_count() or 1) * single["upload_s"])
    assert result["cpu_floor_ratio"] == pytest.approx(floor, abs=0.01)
    assert set(result["met"]) == set(result["targets"])
    assert result["met"]["served_fraction"] is True and result["met"]["model_loads_during_rounds"] is True
