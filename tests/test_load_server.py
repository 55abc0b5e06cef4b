"""Two sessions uploading at once without a browser (a short run of ``bench/bench_load_server.py``: a
real server, Streamlit's own websocket messages, phantoms and generated DICOMs): both are served, each
upload draws its maps and fetches its pictures, no model is loaded again, and the JSON carries the
figures the benchmark reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_runner import run_bench

pytestmark = pytest.mark.slow  # prepares a workspace and starts the dashboard (about half a minute)


def test_two_protocol_sessions_uploading_at_once_are_both_served(tmp_path: Path) -> None:
    args = ("--sessions", "2", "--rounds", "1", "--single-runs", "1", "--settle", "0.5")
    result = run_bench("bench_load_server.py", *args, out=tmp_path / "load.json")
    assert result["real_data"] is False and result["clients"].startswith("streamlit protocol")
    assert result["errors"] == [] and result["served"] == result["total"] == 2
    uploads = result["by_round"][0]["uploads"]
    assert sorted(u["kind"] for u in uploads) == ["dicom", "png"]
    for upload in [*uploads, *result["single_uploads"]]:
        # The maps came before the end of the run; each run sent its pictures (a row per label, the
        # detector's, the lungs') and the client fetched them.
        assert 0 < upload["maps_s"] <= upload["script_s"] <= upload["upload_s"]
        assert upload["images"] >= 3 and upload["messages"] > 20
    assert result["single_median_s"] == result["single_uploads"][0]["upload_s"]
    assert result["single_uploads"][0]["cpu_s"]["server"] > 0 and result["single_server_cpu_s"] > 0
    phase = result["by_round"][0]["upload_phase"]
    assert phase["wall_s"] > 0 and phase["cpu_s"]["server"] > 0 and 0 < phase["machine_busy"] <= 1
    assert result["concurrent_max_s"] == max(u["upload_s"] for u in uploads)
    before, after = result["server_before"], result["server_after"]
    assert (after["loads"], after["entries"]) == (before["loads"], before["entries"]) and before["loads"] >= 1
    assert after["active_sessions"] == 0 and after["closed_sessions"] - before["closed_sessions"] == 2
    assert set(result["met"]) == set(result["targets"])
    assert result["met"]["served_fraction"] is True and result["met"]["model_loads_during_rounds"] is True
