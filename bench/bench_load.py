"""The dashboard under a room's load: several people upload a chest X-ray on the Explain page at the
same moment, against one Streamlit server.

Run: .venv/bin/python bench/bench_load.py [--sessions 6] [--rounds 2] [--single-runs 5] [--out FILE]
(needs Debian's /usr/bin/chromium; with CXR_DATA_DIR set the uploads are real NIH PNGs and RSNA DICOMs,
in turn, else phantoms and generated DICOMs; only files the default model's upload guard accepts).

- One server on a freshly prepared workspace (``demo prepare``), warmed by a PNG and a DICOM upload.
- Single session: ``--single-runs`` uploads one after another, each in a new browser session (a new
  context of one headless Chromium); their median is the reference.
- Concurrent: ``--rounds`` rounds of ``--sessions`` new sessions, each with its own thread and
  Playwright driver on the same Chromium; each opens Explain, all wait for one another, then each
  uploads a different file once its page is on screen. An upload is timed until its probabilities and
  maps are on screen (``maps_s``) and until its whole result is drawn (``upload_s``, the p95's
  measure); one that fails keeps its reason (timeout, guard warning, an error on the page). Each page
  checks for its result every ``--poll-ms``.
- CPU: from the moment all sessions of a round start uploading until the last result is drawn, the CPU
  seconds of each kind of process (the server, Chromium's browser, renderer, GPU and utility processes,
  the Playwright drivers), read from /proc, and the share of the machine's CPU in use; the same for each
  single upload. No page closes before the last upload is drawn (a closed page's processes would take
  their CPU time along). ``cpu_floor_ratio``: one upload's CPU seconds times the sessions, over the
  cores, against the single median: the lowest p95 / single median this machine allows, whatever the
  server does.
- Times count in each page's own clock from the file input's change event (the page has the file, as
  when a person picks it); ``upload_from_call_s`` counts from Playwright's call instead, which adds the
  rig's handing of the file to the browser, and ``request_s`` is when the upload's request left.
- Memory: the server's resident memory (with its children) is sampled every 0.2 s during the rounds;
  it is read before the rounds, and ``--settle`` seconds after each round's sessions have closed.
  Streamlit keeps a closed session (its state: uploads, maps) for 2 minutes in case its browser
  reconnects, and drops the expired ones when another session closes: ``--late`` waits that long,
  reads the memory, makes one visit and reads it again; the memory target is then judged on that last
  reading (``rss_judged_mb``), else on the one after the rounds. The server's own metrics say how often a
  model was loaded and how many sessions are open.

Prints one JSON object, with the targets and whether each is met.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_browser import fresh_copy, prepare_workspace, upload_files  # noqa: E402
from browser_harness import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    browser_missing,
    dashboard_process,
    descendants,
    errors_on,
    free_port,
    rss_mb,
    time_first_draw,
    time_upload_stages,
    wait_settled,
)

TARGETS = {
    "served_fraction": 1.0,  # every upload drawn: no error, no timeout
    "p95_over_single_median": 3.0,  # concurrent p95 against one session alone
    "model_loads_during_rounds": 0,  # one copy of each model, loaded before the rounds
    "rss_after_over_before_mb": 150.0,  # memory falls back once the sessions have closed
}
VIEWPORT = {"width": 1400, "height": 1600}
MODEL_CACHE = "cxrcore.ui.models._load"


class RssSampler:
    """The resident memory of a process and its children, sampled in a thread every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.perf_counter()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self._started, rss_mb(self.pid)))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def now(self) -> float:
        """Seconds since the sampler was made, the clock of its samples."""
        return time.perf_counter() - self._started

    def peak(self, since: float = 0.0) -> float:
        """The highest sample taken at or after ``since`` (the sampler's clock), in MB."""
        return max((mb for t, mb in list(self.samples) if t >= since), default=0.0)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_by_process(server_pid: int) -> dict[int, tuple[str, float]]:
    """Each running process's kind (server, chromium, playwright, bench, other) and CPU seconds so far."""
    server = descendants(server_pid)
    out: dict[int, tuple[str, float]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        pid = int(stat.parent.name)
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
        if pid in server:
            kind = "server"
        elif "chromium" in command:  # its processes by role: browser, renderer, gpu-process, utility
            role = next((a.split("=", 1)[1] for a in command.split() if a.startswith("--type=")), "browser")
            kind = f"chromium-{role}"
        elif "run-driver" in command:
            kind = "playwright"
        elif pid == os.getpid():
            kind = "bench"
        else:
            kind = "other"
        out[pid] = (kind, seconds)
    return out


def machine_ticks() -> tuple[int, int]:
    """The machine's busy and total CPU time so far, in clock ticks over every core (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def cpu_between(start: dict[int, tuple[str, float]], end: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each kind of process used between two ``cpu_by_process`` readings (processes that
    started in between count from zero; those that ended in between are not counted)."""
    out: dict[str, float] = {}
    for pid, (kind, seconds) in end.items():
        used = seconds - start.get(pid, (kind, 0.0))[1]
        out[kind] = round(out.get(kind, 0.0) + used, 2)
    return dict(sorted(out.items()))


class UploadPhase:
    """CPU use of each kind of process, and of the whole machine, from the moment all sessions start
    uploading until the last one's result is drawn. No session closes its page before then: a closed
    page's renderer and Playwright driver exit, and their CPU time would go uncounted."""

    def __init__(self, server_pid: int | None, sessions: int, timeout_s: float = 300.0) -> None:
        self.server_pid, self.left = server_pid, sessions
        self._leaving = threading.Barrier(sessions, timeout=timeout_s)
        self.start: dict[int, tuple[str, float]] | None = None
        self.cpu_s: dict[str, float] | None = None
        self.ticks = (0, 0)
        self.machine_busy: float | None = None
        self.started = self.wall_s = 0.0
        self._lock = threading.Lock()

    def begin(self) -> None:
        """Called once, when every session has its page on screen (the barrier's action)."""
        if self.server_pid is not None:
            self.start = cpu_by_process(self.server_pid)
        self.ticks = machine_ticks()
        self.started = time.perf_counter()

    def leave(self) -> None:
        """Called by each session before it closes its page: waits until every session is done, so the
        CPU reading sees every page's processes (a failed session does not keep the others waiting
        beyond the timeout)."""
        with contextlib.suppress(threading.BrokenBarrierError):
            self._leaving.wait()

    def finished_one(self) -> None:
        """Called by each session once its upload is drawn or has failed."""
        with self._lock:
            self.left -= 1
            if self.left == 0:
                self.wall_s = round(time.perf_counter() - self.started, 2)
                busy, total = (now - then for now, then in zip(machine_ticks(), self.ticks, strict=True))
                self.machine_busy = round(busy / total, 2) if total else None
                if self.start is not None and self.server_pid is not None:
                    self.cpu_s = cpu_between(self.start, cpu_by_process(self.server_pid))


def server_counts(url: str) -> dict[str, int]:
    """From the server's metrics: cached models (entries), model loads so far (misses), open sessions and
    sessions closed so far."""
    with urllib.request.urlopen(f"{url}/_stcore/metrics", timeout=10) as r:
        text = r.read().decode()
    wanted = {
        "entries": ("cache_memory_bytes{", f'cache="{MODEL_CACHE}"'),  # a count unless expensive stats are on
        "loads": ("cache_lookups_total{", f'cache="{MODEL_CACHE}"', 'result="miss"'),
        "active_sessions": ("active_sessions ",),
        "closed_sessions": ("session_events_total{", 'type="disconnect"'),
    }
    out = dict.fromkeys(wanted, 0)
    for line in text.splitlines():
        for name, (prefix, *parts) in wanted.items():
            if line.startswith(prefix) and all(p in line for p in parts):
                out[name] = int(float(line.rsplit(" ", 1)[1]))
    return out


def _reason(exc: BaseException) -> str:
    """An exception's type and first line (Playwright's timeouts carry a long call log)."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:300]


def _session(
    endpoint: str,
    url: str,
    path: Path,
    barrier: threading.Barrier,
    phase: UploadPhase,
    timeout_s: float,
    poll_ms: int,
) -> dict:
    """One person: a new browser session opens Explain, waits for the others, uploads ``path``."""
    from playwright.sync_api import sync_playwright

    record: dict[str, object] = {"file": path.name, "kind": "dicom" if path.suffix == ".dcm" else "png"}
    with sync_playwright() as p:
        browser = p.chromium.connect_over_cdp(endpoint)
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        try:
            try:
                drawn = time_first_draw(page, f"{url}/Explain", timeout_s * 1000, poll_ms)
                record["first_draw_s"] = round(drawn, 3)
                wait_settled(page, timeout_s * 1000, poll_ms)  # each person sees the page, then picks a file
            finally:
                barrier.wait()  # all start together, even when one failed to open the page
            try:
                stages = time_upload_stages(page, path, timeout_s * 1000, poll_ms)
            finally:
                phase.finished_one()
            record["maps_s"], record["upload_s"] = round(stages["maps_s"], 3), round(stages["done_s"], 3)
            record["request_s"] = None if stages["request_s"] is None else round(stages["request_s"], 3)
            record["upload_from_call_s"] = round(stages["call_done_s"], 3)
            found = errors_on(page)
            if found:
                record["error"] = "error on the page: " + " | ".join(found)[:300]
        except Exception as exc:  # kept in the JSON: an upload that fails under load is a result
            record["error"] = _reason(exc)
            try:
                record["page_errors"] = [e[:300] for e in errors_on(page)]
            except Exception as again:
                record["page_errors"] = [_reason(again)]
        finally:
            phase.leave()  # once every upload is drawn: a closed page's processes take their CPU time along
            context.close()  # the person leaves: the server may release the session
            browser.close()  # disconnects; the shared Chromium keeps running
    return record


def _visit(endpoint: str, url: str, timeout_s: float) -> None:
    """A new browser session opens Explain and closes again, uploading nothing."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.connect_over_cdp(endpoint)
        context = browser.new_context(viewport=VIEWPORT)
        time_first_draw(context.new_page(), f"{url}/Explain", timeout_s * 1000)
        context.close()
        browser.close()


def run_round(
    endpoint: str, url: str, files: list[Path], timeout_s: float, poll_ms: int, server_pid: int | None = None
) -> tuple[list[dict], UploadPhase]:
    """``len(files)`` sessions at once, one file each: their records, in the order of ``files``, and the
    upload phase's wall time and CPU use by kind of process (when ``server_pid`` is given)."""
    phase = UploadPhase(server_pid, len(files), timeout_s)
    barrier = threading.Barrier(len(files), action=phase.begin, timeout=timeout_s)
    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        futures = [pool.submit(_session, endpoint, url, f, barrier, phase, timeout_s, poll_ms) for f in files]
        return [f.result() for f in futures], phase


def _files(home: Path, count: int) -> list[Path]:
    """``count`` upload files, PNG and DICOM in turn."""
    pngs = upload_files(home, "png", (count + 1) // 2)
    dicoms = upload_files(home, "dicom", count // 2)
    return [pngs[i // 2] if i % 2 == 0 else dicoms[i // 2] for i in range(count)]


def _p95(values: list[float]) -> float:
    """The 95th percentile (linear between order statistics; the maximum for fewer than 20 values)."""
    ordered = sorted(values)
    rank = 0.95 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def measure(url: str, pid: int, endpoint: str, home: Path, args: argparse.Namespace) -> dict[str, object]:
    """Warm-up, single-session reference, concurrent rounds and memory, as one JSON-ready dict."""
    files = _files(home, 2 + args.single_runs + args.sessions * args.rounds)
    warm = [run_round(endpoint, url, [f], args.timeout, args.poll_ms)[0][0] for f in files[:2]]  # PNG, DICOM
    singles = []
    for f in files[2 : 2 + args.single_runs]:
        (record,), phase = run_round(endpoint, url, [f], args.timeout, args.poll_ms, pid)
        singles.append(record | {"cpu_s": phase.cpu_s, "machine_busy": phase.machine_busy})
    rest = files[2 + args.single_runs :]
    time.sleep(args.settle)
    before, counts_before = rss_mb(pid), server_counts(url)
    rounds = []
    with RssSampler(pid) as sampler:
        for r in range(args.rounds):
            started = sampler.now()
            batch, phase = run_round(
                endpoint,
                url,
                rest[r * args.sessions : (r + 1) * args.sessions],
                args.timeout,
                args.poll_ms,
                pid,
            )
            wall, peak = sampler.now() - started, sampler.peak(since=started)
            time.sleep(args.settle)
            rss = rss_mb(pid)
            rounds.append({"uploads": batch, "wall_s": round(wall, 2), "rss_peak_mb": round(peak, 1)})
            rounds[-1].update(
                upload_phase={
                    "wall_s": phase.wall_s,
                    "cpu_s": phase.cpu_s,
                    "machine_busy": phase.machine_busy,
                }
            )
            rounds[-1].update(rss_after_mb=round(rss, 1), server_after=server_counts(url))
            print(f"round {r}: {[u.get('upload_s', u.get('error')) for u in batch]}", file=sys.stderr)
            print(f"round {r} upload phase: {rounds[-1]['upload_phase']}", file=sys.stderr)
    after, counts_after = rss_mb(pid), server_counts(url)
    late = None
    if args.late:  # then one visit, whose closing makes Streamlit drop the closed sessions that expired
        time.sleep(args.late)
        late = {"rss_mb": round(rss_mb(pid), 1), **server_counts(url)}
        with ThreadPoolExecutor(max_workers=1) as pool:  # this thread's Playwright launched Chromium
            pool.submit(_visit, endpoint, url, args.timeout).result()
        time.sleep(args.settle)
        late |= {"rss_after_visit_mb": round(rss_mb(pid), 1), "after_visit": server_counts(url)}
    return _summary(warm, singles, rounds, sampler, before, after, late, counts_before, counts_after)


def _summary(
    warm: list[dict],
    singles: list[dict],
    rounds: list[dict],
    sampler: RssSampler,
    before: float,
    after: float,
    late: dict | None,
    counts_before: dict[str, int],
    counts_after: dict[str, int],
) -> dict[str, object]:
    """The JSON's figures from the uploads' records and the memory readings."""
    uploads = [u for r in rounds for u in r["uploads"]]
    times = [u["upload_s"] for u in uploads if "error" not in u]
    single_times = [u["upload_s"] for u in singles if "error" not in u]
    single_median = statistics.median(single_times) if single_times else None
    p95 = _p95(times) if times else None
    maps = [u["maps_s"] for u in uploads if "error" not in u]
    single_maps = [u["maps_s"] for u in singles if "error" not in u]
    out: dict[str, object] = {
        "warm_uploads": warm,
        "single_uploads": singles,
        "single_median_s": None if single_median is None else round(single_median, 3),
        "by_round": rounds,
        "concurrent_median_s": round(statistics.median(times), 3) if times else None,
        "concurrent_p95_s": None if p95 is None else round(p95, 3),
        "concurrent_max_s": max(times) if times else None,
        "p95_over_single_median": round(p95 / single_median, 2) if p95 and single_median else None,
        "maps_single_median_s": round(statistics.median(single_maps), 3) if single_maps else None,
        "maps_concurrent_median_s": round(statistics.median(maps), 3) if maps else None,
        "maps_concurrent_p95_s": round(_p95(maps), 3) if maps else None,
        **_cpu_figures(singles, rounds, single_median),
        "served": len(times),
        "total": len(uploads),
        "errors": [f"{u['file']}: {u['error']}" for u in [*warm, *singles, *uploads] if "error" in u],
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(sampler.peak(), 1),
        "rss_after_mb": round(after, 1),
        "late": late,
        "rss_samples": len(sampler.samples),
        "server_before": counts_before,
        "server_after": counts_after,
    }
    # Sessions end when Streamlit drops them, not when their pages close: with ``--late`` the memory is
    # judged after that, else right after the rounds.
    judged = late["rss_after_visit_mb"] if late else after
    out["rss_judged_mb"] = round(judged, 1)
    out["met"] = {
        "served_fraction": len(times) == len(uploads) and not out["errors"],
        "p95_over_single_median": bool(p95 and single_median)
        and p95 / single_median <= TARGETS["p95_over_single_median"],
        "model_loads_during_rounds": counts_after["loads"] - counts_before["loads"] == 0
        and counts_after["entries"] == counts_before["entries"],
        "rss_after_over_before_mb": judged - before <= TARGETS["rss_after_over_before_mb"],
    }
    return out


def _cpu_figures(singles: list[dict], rounds: list[dict], single_median: float | None) -> dict[str, object]:
    """What the machine's CPU allows.

    ``single_cpu_s``: one upload's CPU seconds, every process involved (server, browser, Playwright).
    ``cpu_floor_ratio``: the sessions' uploads need that many CPU seconds each; spread over every core,
    the last cannot be drawn sooner, so this over the single median is the lowest p95 / single median the
    machine allows, whatever the server does. ``concurrent_machine_busy``: the share of the machine's
    CPU time in use while each round's sessions uploaded (/proc/stat; 1.0: every core all the time).
    """
    cores = os.cpu_count() or 1
    per_upload = [sum(u["cpu_s"].values()) for u in singles if u.get("cpu_s") and "error" not in u]
    sessions = max((len(r["uploads"]) for r in rounds), default=0)
    out: dict[str, object] = {
        "single_cpu_s": round(statistics.median(per_upload), 2) if per_upload else None,
        "cpu_floor_ratio": None,
        "concurrent_machine_busy": [r["upload_phase"]["machine_busy"] for r in rounds],
    }
    if per_upload and single_median and sessions:
        out["cpu_floor_ratio"] = round(sessions * statistics.median(per_upload) / (cores * single_median), 2)
    return out


def run(args: argparse.Namespace) -> dict[str, object]:
    """Prepare a workspace, start the server and one Chromium, and measure."""
    from playwright.sync_api import sync_playwright

    out: dict[str, object] = {
        "real_data": bool(os.environ.get("CXR_DATA_DIR")),
        "cpus": os.cpu_count(),
        "sessions": args.sessions,
        "rounds": args.rounds,
        "single_runs": args.single_runs,
    }
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp, sync_playwright() as p:
        home = fresh_copy(prepare_workspace(Path(tmp)), Path(tmp), "load")
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, f"--remote-debugging-port={port}"]
        )
        try:
            with dashboard_process(home) as (url, _, proc):
                out.update(measure(url, proc.pid, f"http://127.0.0.1:{port}", home, args))
        finally:
            browser.close()
    out["targets"] = TARGETS
    out["met"] = out.pop("met")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=6, help="sessions uploading at once (default 6)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of concurrent uploads (default 2)")
    parser.add_argument("--single-runs", type=int, default=5, help="uploads alone, for the reference")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per page or upload")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after sessions close (default 5)")
    parser.add_argument("--late", type=float, default=0.0, help="seconds more before a last memory reading")
    parser.add_argument(
        "--poll-ms",
        type=int,
        default=100,
        help="how often each page checks whether its result is drawn (default 100: six pages checking every "
        "25 ms take CPU time from the sessions they measure)",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = parser.parse_args()
    missing = browser_missing()
    if missing:
        print(json.dumps({"skipped": missing}))
        return 0
    text = json.dumps(run(args))
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
