"""The SQLite workspace under the app, the CLI and three training jobs writing at once.

Run: .venv/bin/python bench/bench_sqlite_stress.py [--seconds 60] [--jobs 3]

Five processes share one throwaway workspace for ``--seconds`` and go through the engine's own calls:

- three job processes, each a ``JobReporter`` on its own job row: a progress write per step (the
  half-second throttle turned off, so they write as fast as they can) and an epoch's end (history
  append) every 20 steps, reading the cancel flag as training does;
- a CLI process: stored-prediction rows (``record_predictions``) as fast as it can, and a dataset
  registration (a new version folder committed with its row) every second;
- an app process: what the dashboard's pages read, in a loop (jobs, datasets, predictions).

At the end every write is checked against the database: each job's last step and its history length,
every prediction row, every dataset. Prints one JSON object: writes per kind, rows expected and found,
"database is locked" errors and any other error, reads done. The target is no lock error and no row
lost (``lost_rows`` 0).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from cxrcore.data.index import IndexedDataset, build_index
from cxrcore.store import Workspace
from cxrcore.train import job_reporter, jobs
from cxrcore.train.config import TrainConfig

EPOCH_EVERY = 20  # steps per "epoch" in the job processes
DATASET = "stress"


def _dataset(n: int) -> IndexedDataset:
    """A small index (no image files are read by any of the writers)."""
    meta = pd.DataFrame(
        {"image_id": [f"i{k}" for k in range(n)], "path": [f"/nowhere/{k}.png" for k in range(n)]}
    )
    meta["patient_id"] = [f"p{k // 2}" for k in range(n)]
    labels = pd.DataFrame({"Nodule": (np.arange(n) % 2).astype(float)})
    return IndexedDataset(index=build_index(meta, labels))


class Tally:
    """Counts of one process: writes, reads, "database is locked" and other errors."""

    def __init__(self) -> None:
        self.counts: dict[str, Any] = {"writes": 0, "reads": 0, "locked": 0, "errors": 0, "first_error": None}

    def attempt(self, kind: str, call: Any) -> bool:
        """Run ``call``; count it as a ``kind`` ("writes" or "reads") or as an error."""
        try:
            call()
        except Exception as exc:  # counted, never fatal: the point is to see them
            locked = isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
            self.counts["locked" if locked else "errors"] += 1
            self.counts["first_error"] = self.counts["first_error"] or f"{type(exc).__name__}: {exc}"
            return False
        self.counts[kind] += 1
        return True


def _wait(start: float) -> None:
    time.sleep(max(0.0, start - time.time()))


def role_job(ws: Workspace, job_id: int, start: float, end: float) -> dict[str, Any]:
    """A training job's writes: a progress row per step, an epoch's end every EPOCH_EVERY steps."""
    job_reporter.STEP_WRITE_INTERVAL_S = 0.0  # every step is written: the worst case
    tally = Tally()
    reporter = job_reporter.JobReporter(ws, job_id)
    reporter.started(10**6, EPOCH_EVERY, {"run_dir": None})
    _wait(start)
    step = epochs = 0
    while time.time() < end:
        step += 1
        epoch, in_epoch = divmod(step - 1, EPOCH_EVERY)
        if tally.attempt("writes", lambda e=epoch, s=in_epoch: reporter.step(e + 1, s + 1, 0.5)):
            tally.counts["last_step"] = (epoch + 1, in_epoch + 1)
        if in_epoch + 1 == EPOCH_EVERY and tally.attempt(
            "writes", lambda e=epoch: reporter.epoch_end(e + 1, {"epoch": e + 1, "val_loss": 0.1})
        ):
            epochs += 1
        tally.attempt("reads", reporter.should_stop)
    tally.counts["epochs"] = epochs
    return tally.counts


def role_cli(ws: Workspace, start: float, end: float) -> dict[str, Any]:
    """The command line's writes: prediction rows as fast as possible, a dataset registration a second."""
    tally = Tally()
    keys, datasets = [], []
    next_dataset = start
    _wait(start)
    while time.time() < end:
        key = f"k{len(keys) + tally.counts['locked'] + tally.counts['errors']}"
        meta = {"checkpoint": "c", "checkpoint_fingerprint": "f", "dataset": DATASET,
                "index_fingerprint": "i", "split": "test", "preprocess": {}, "labels": ["Nodule"],
                "n_images": 1, "seconds": 0.0, "file": "x"}  # fmt: skip
        if tally.attempt("writes", lambda k=key, m=meta: ws.record_predictions(k, m)):
            keys.append(key)
        if time.time() >= next_dataset:
            name = f"cli-{len(datasets)}"
            if tally.attempt("writes", lambda n=name: ws.register_dataset(n, "csv", {}, _dataset(8))):
                datasets.append(name)
            next_dataset += 1.0
    tally.counts.update(predictions=keys, datasets=datasets)
    return tally.counts


def role_app(ws: Workspace, start: float, end: float) -> dict[str, Any]:
    """The dashboard's reads: the job list (as the Train page polls it), datasets, stored predictions."""
    tally = Tally()
    _wait(start)
    while time.time() < end:
        tally.attempt("reads", lambda: jobs.list_jobs(ws))
        tally.attempt("reads", ws.list_datasets)
        tally.attempt("reads", lambda: ws.list_predictions(DATASET))
    return tally.counts


def _check(ws: Workspace, results: dict[str, dict[str, Any]], job_ids: list[int]) -> dict[str, int]:
    """Rows expected (every write that reported success) and rows found in the database."""
    expected = found = 0
    for job_id in job_ids:
        result, job = results[f"job-{job_id}"], jobs.get_job(ws, job_id)
        expected += 2
        found += int((job.epoch, job.step) == tuple(result.get("last_step", (0, 0))))
        found += int(len(job.history) == result["epochs"])
    cli = results["cli"]
    stored = {p["key"] for p in ws.list_predictions()}
    registered = {d.name for d in ws.list_datasets()}
    expected += len(cli["predictions"]) + len(cli["datasets"])
    found += len(stored & set(cli["predictions"])) + len(registered & set(cli["datasets"]))
    return {"rows_expected": expected, "rows_found": found, "lost_rows": expected - found}


def _launch(role: str, home: Path, start: float, end: float, extra: list[str]) -> subprocess.Popen:
    command = [sys.executable, __file__, "--role", role, "--home", str(home), "--start", str(start)]
    return subprocess.Popen([*command, "--end", str(end), *extra], stdout=subprocess.PIPE, text=True)


def run(seconds: float, n_jobs: int, home: Path) -> dict[str, Any]:
    """Set up the workspace and jobs, run every role at once, and check what was written."""
    ws = Workspace(home)
    ws.register_dataset(DATASET, "csv", {}, _dataset(8))
    cfg = TrainConfig(dataset=DATASET, model="tiny", input_size=32, epochs=1)
    job_ids = [jobs.submit(ws, cfg.replace(run_name=f"j{k}"), start=False) for k in range(n_jobs)]
    start = time.time() + 4.0 + n_jobs  # time for every process to import and open the workspace
    end = start + seconds
    procs = {f"job-{j}": _launch("job", home, start, end, ["--job", str(j)]) for j in job_ids}
    procs["cli"] = _launch("cli", home, start, end, [])
    procs["app"] = _launch("app", home, start, end, [])
    results = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=seconds + 120)
        results[name] = json.loads(out.strip().splitlines()[-1])
    counts = {k: sum(r[k] for r in results.values()) for k in ("writes", "reads", "locked", "errors")}
    errors = [r["first_error"] for r in results.values() if r["first_error"]]
    return {
        "seconds": seconds,
        "processes": len(procs),
        "job_processes": n_jobs,
        "writes": counts["writes"],
        "writes_per_s": round(counts["writes"] / seconds, 1),
        "progress_writes_per_job": [results[f"job-{j}"]["writes"] for j in job_ids],
        "prediction_rows": len(results["cli"]["predictions"]),
        "datasets_registered": len(results["cli"]["datasets"]),
        "app_reads": results["app"]["reads"],
        "locked_errors": counts["locked"],
        "other_errors": counts["errors"],
        "first_error": errors[0] if errors else None,
        **_check(ws, results, job_ids),
        "sqlite": sqlite3.sqlite_version,
    }


def main() -> None:
    """Run the stress test (or, with --role, one of its processes) and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--role", choices=["job", "cli", "app"])
    parser.add_argument("--home")
    parser.add_argument("--start", type=float)
    parser.add_argument("--end", type=float)
    parser.add_argument("--job", type=int)
    args = parser.parse_args()
    if args.role:
        ws = Workspace(args.home)
        if args.role == "job":
            result = role_job(ws, args.job, args.start, args.end)
        else:
            result = (role_cli if args.role == "cli" else role_app)(ws, args.start, args.end)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="cxr-sqlite-stress-") as tmp:
        print(json.dumps(run(args.seconds, args.jobs, Path(tmp) / "workspace")))


if __name__ == "__main__":
    main()
