"""The server alone under a room's load: several people upload a chest X-ray on the Explain page at the
same moment, each from a machine of their own.

Run: .venv/bin/python bench/bench_load_server.py [--sessions 6] [--rounds 3] [--single-runs 7] [--out FILE]
(with CXR_DATA_DIR set the uploads are real NIH PNGs and RSNA DICOMs in turn, else phantoms and
generated DICOMs; only files the default model's upload guard accepts).

``bench_load.py`` drives the sessions in headless Chromium on the server's own machine, where the six
browsers' drawing and the test rig take most of the CPU. Here each session speaks Streamlit's own
websocket messages (``bench/streamlit_protocol.py``): it opens Explain, uploads its file as the file
uploader does, and fetches every picture the run sends, but draws nothing, so the CPU left is the
server's, as when the people in the room bring their own machines.

- One server on a freshly prepared workspace (``demo prepare``), warmed by a PNG and a DICOM upload.
- Single session: ``--single-runs`` uploads one after another, each in a new session; their median is
  the reference.
- Concurrent: ``--rounds`` rounds of ``--sessions`` new sessions, each in its own thread; each opens
  Explain, all wait for one another, then all upload together. An upload is timed from its request
  for an upload URL until the script has finished and every picture is fetched (``upload_s``, the
  p95's measure), and until the first picture of a label's CAM and CRM is fetched (``maps_s``).
- CPU seconds of the server and of this script while each upload or round ran, and the share of the
  machine in use (/proc); the server's resident memory before and after; the server's metrics (model
  loads, sessions).

Prints one JSON object, with the targets and whether each is met.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_browser import fresh_copy, prepare_workspace  # noqa: E402
from bench_load import _files, _p95, cpu_between, cpu_by_process, machine_ticks, server_counts  # noqa: E402
from browser_harness import dashboard_process, rss_mb  # noqa: E402
from streamlit_protocol import ProtocolSession, RunRecord  # noqa: E402

TARGETS = {
    "served_fraction": 1.0,  # every upload's script finished, no error, every picture fetched
    "p95_over_single_median": 3.0,  # concurrent p95 against one session alone
    "model_loads_during_rounds": 0,  # one copy of each model, loaded before the rounds
}
PAGE = "Explain"
MAPS = "CRM"  # a label's picture names its tiles: the image, CAM, CRM


def _record(path: Path, run: RunRecord | None, error: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {"file": path.name, "kind": "dicom" if path.suffix == ".dcm" else "png"}
    if run is not None:
        out |= {
            "maps_s": None if run.marker_s is None else round(run.marker_s, 3),
            "upload_s": round(run.done_s, 3),
            "script_s": round(run.finished_s, 3),
            "messages": run.messages,
            "images": run.images,
        }
        error = error or "; ".join(run.errors) or (None if run.marker_s is not None else "no maps drawn")
    if error:
        out["error"] = error
    return out


def upload_alone(url: str, pid: int, path: Path, timeout: float) -> dict[str, object]:
    """One new session opens Explain and uploads ``path``; CPU by process kind during the upload."""
    with ProtocolSession(url, PAGE, timeout) as session:
        session.run()
        start, ticks = cpu_by_process(pid), machine_ticks()
        run = session.upload(path, MAPS)
        busy, total = (now - then for now, then in zip(machine_ticks(), ticks, strict=True))
        out = _record(path, run)
        out["cpu_s"] = cpu_between(start, cpu_by_process(pid))
        out["machine_busy"] = round(busy / total, 2) if total else None
    return out


def run_round(url: str, pid: int, files: list[Path], timeout: float) -> dict[str, object]:
    """``len(files)`` new sessions open Explain, wait for one another, then upload at once."""
    phase: dict[str, object] = {}

    def begin() -> None:
        phase["start"], phase["ticks"], phase["t0"] = (
            cpu_by_process(pid),
            machine_ticks(),
            time.perf_counter(),
        )

    def finish() -> None:
        phase["wall_s"] = round(time.perf_counter() - phase["t0"], 2)
        busy, total = (now - then for now, then in zip(machine_ticks(), phase["ticks"], strict=True))
        phase["machine_busy"] = round(busy / total, 2) if total else None
        phase["cpu_s"] = cpu_between(phase["start"], cpu_by_process(pid))

    ready = threading.Barrier(len(files), action=begin, timeout=timeout)
    done = threading.Barrier(len(files), action=finish, timeout=timeout)  # read by the last to arrive

    def one(path: Path) -> dict[str, object]:
        try:
            with ProtocolSession(url, PAGE, timeout) as session:
                session.run()
                ready.wait()
                try:
                    return _record(path, session.upload(path, MAPS))
                finally:
                    done.wait()  # every session still open while the CPU is read
        except Exception as exc:  # a failed upload is a result of the benchmark, with its reason
            return _record(path, None, f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(len(files)) as pool:
        uploads = list(pool.map(one, files))
    return {
        "uploads": uploads,
        "upload_phase": {k: phase.get(k) for k in ("wall_s", "cpu_s", "machine_busy")},
    }


def measure(url: str, pid: int, home: Path, args: argparse.Namespace) -> dict[str, object]:
    warm = [upload_alone(url, pid, path, args.timeout) for path in _files(home, 2)]
    alone = _files(home, max(args.single_runs, 2))[: args.single_runs]  # a PNG first, then DICOM, ...
    singles = [upload_alone(url, pid, path, args.timeout) for path in alone]
    counts_before, before = server_counts(url), rss_mb(pid)
    rounds = [run_round(url, pid, _files(home, args.sessions), args.timeout) for _ in range(args.rounds)]
    time.sleep(args.settle)
    counts_after, after = server_counts(url), rss_mb(pid)

    single_times = [u["upload_s"] for u in singles if "error" not in u]
    uploads = [u for r in rounds for u in r["uploads"]]
    times = [u["upload_s"] for u in uploads if "error" not in u]
    maps = [u["maps_s"] for u in uploads if "error" not in u]
    single_median = statistics.median(single_times) if single_times else None
    p95 = _p95(times) if times else None
    single_server = [u["cpu_s"].get("server", 0.0) for u in singles if "error" not in u]
    out: dict[str, object] = {
        "warm_uploads": warm,
        "single_uploads": singles,
        "single_median_s": single_median,
        "maps_single_median_s": statistics.median(u["maps_s"] for u in singles if "error" not in u)
        if single_times
        else None,
        "single_server_cpu_s": statistics.median(single_server) if single_server else None,
        "by_round": rounds,
        "concurrent_median_s": statistics.median(times) if times else None,
        "concurrent_p95_s": round(p95, 3) if p95 else None,
        "concurrent_max_s": max(times) if times else None,
        "p95_over_single_median": round(p95 / single_median, 2) if p95 and single_median else None,
        "maps_concurrent_median_s": round(statistics.median(maps), 3) if maps else None,
        "maps_concurrent_p95_s": round(_p95(maps), 3) if maps else None,
        "served": len(times),
        "total": len(uploads),
        "errors": [f"{u['file']}: {u['error']}" for u in [*warm, *singles, *uploads] if "error" in u],
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "server_before": counts_before,
        "server_after": counts_after,
    }
    out["met"] = {
        "served_fraction": len(times) == len(uploads) and not out["errors"],
        "p95_over_single_median": bool(p95 and single_median)
        and p95 / single_median <= TARGETS["p95_over_single_median"],
        "model_loads_during_rounds": counts_after["loads"] == counts_before["loads"]
        and counts_after["entries"] == counts_before["entries"],
    }
    return out


def run(args: argparse.Namespace) -> dict[str, object]:
    """Prepare a workspace, start the server, and measure."""
    out: dict[str, object] = {
        "real_data": bool(os.environ.get("CXR_DATA_DIR")),
        "cpus": os.cpu_count(),
        "clients": "streamlit protocol (no browser)",
        "sessions": args.sessions,
        "rounds": args.rounds,
        "single_runs": args.single_runs,
    }
    with tempfile.TemporaryDirectory(prefix="bench-load-server-") as tmp:
        home = fresh_copy(prepare_workspace(Path(tmp)), Path(tmp), "load")
        with dashboard_process(home) as (url, _, proc):
            out.update(measure(url, proc.pid, home, args))
    out["targets"] = TARGETS
    out["met"] = out.pop("met")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=6, help="sessions uploading at once (default 6)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of concurrent uploads (default 3)")
    parser.add_argument("--single-runs", type=int, default=7, help="uploads alone, for the reference")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per message or upload")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after the rounds before reading")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = parser.parse_args()
    result = run(args)
    text = json.dumps(result)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
