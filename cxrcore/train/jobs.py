"""Background training jobs: a queue in the workspace database, run one at a time as subprocesses.

A job is a row of the ``jobs`` table plus a folder ``$CXR_HOME/jobs/<id>/`` holding ``config.json``
(the TrainConfig) and ``train.log`` (the process's output). Its life::

    submit -> queued -> (schedule) running -> finished | failed | cancelled

``schedule`` starts the oldest queued job when fewer than ``max_jobs()`` are running (1 by default,
``CXR_MAX_JOBS`` overrides). The training process itself writes its progress and final status through
``JobReporter``; when it ends, it starts the next queued job. ``reconcile`` (run by every ``schedule``)
finds running jobs whose process has gone and marks them failed with the tail of their log, so the
dashboard and the CLI can restart at any time: everything they show comes from the database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cxrcore import jsonsafe, processes
from cxrcore.atomic import write_bytes_atomic
from cxrcore.labels import label_fit
from cxrcore.store import Workspace, WorkspaceError
from cxrcore.train.config import INIT_RANDOM, TrainConfig  # no PyTorch: listing jobs stays light
from cxrcore.train.job_reporter import ACTIVE, STATUSES, JobRecord
from cxrcore.train.job_reporter import JobReporter as JobReporter  # what `python -m cxrcore.train --job` uses
from cxrcore.train.job_reporter import format_eta as format_eta

log = logging.getLogger(__name__)

CANCEL_GRACE_S = 10.0  # default for CXR_CANCEL_GRACE_S: a job ignoring its cancel this long gets SIGTERM
LAUNCH_GRACE_S = 30.0  # a claimed job may go this long without a pid while its process starts
FAILED_LOG_LINES = 20
REPO_ROOT = Path(__file__).resolve().parents[2]
_CHILDREN: dict[int, subprocess.Popen] = {}  # processes this process started, reaped by reconcile
_CHILDREN_LOCK = threading.Lock()  # the dashboard reconciles from several session threads


class JobError(WorkspaceError):
    """A job request cannot be met (unknown id, job not cancellable, bad queue setting)."""


def job_dir(ws: Workspace, job_id: int) -> Path:
    """Folder of a job's config and log."""
    return ws.home / "jobs" / str(job_id)


def cancel_grace_s() -> float:
    """Seconds a running job may take to honour a cancel before SIGTERM: ``CXR_CANCEL_GRACE_S``, else 10."""
    value = os.environ.get("CXR_CANCEL_GRACE_S", "").strip()
    try:
        return float(value) if value else CANCEL_GRACE_S
    except ValueError:
        raise JobError(f"CXR_CANCEL_GRACE_S must be a number of seconds, got {value!r}") from None


def max_jobs() -> int:
    """How many jobs may run at once: ``CXR_MAX_JOBS``, else 1."""
    value = os.environ.get("CXR_MAX_JOBS", "").strip() or "1"
    if not value.isdigit() or int(value) < 1:
        raise JobError(f"CXR_MAX_JOBS must be a whole number of at least 1, got {value!r}")
    return int(value)


def check_config(ws: Workspace, cfg: TrainConfig, resume: bool = False) -> TrainConfig:
    """Refuse a run that cannot start (unknown dataset or model, missing checkpoint); make paths absolute."""
    known = ws.get_dataset(cfg.dataset).labels  # an unknown dataset fails here, with close matches
    from cxrcore.train.setup import resolve_model

    try:
        cfg = resolve_model(cfg)
    except ValueError as exc:
        raise JobError(str(exc)) from None
    if cfg.task == "detect":
        from cxrcore.train.detect_loop import dataset_classes

        known = dataset_classes(ws, cfg.dataset)
        if not known:
            raise JobError(f"dataset {cfg.dataset!r} has no boxes: a detector needs boxes to learn from")
    unknown = list(label_fit(cfg.labels, known).missing)
    if unknown:
        raise JobError(f"unknown label(s) {unknown} for {cfg.dataset!r}; valid labels: {', '.join(known)}")
    if cfg.init != INIT_RANDOM:
        init = Path(cfg.init).expanduser().resolve()
        if not init.is_file():
            raise FileNotFoundError(f"checkpoint to repurpose not found: {cfg.init}")
        cfg = cfg.replace(init=str(init))
    if resume:
        state = ws.home / "runs" / cfg.run_name / "resume.pt"
        if not cfg.run_name or not state.is_file():
            raise FileNotFoundError(f"no resumable run named {cfg.run_name!r} (looked for {state})")
    return cfg


def submit(ws: Workspace, cfg: TrainConfig, resume: bool = False, start: bool = True) -> int:
    """Queue a training job for ``cfg``, start it if the queue allows (and ``start``), and return its id."""
    cfg = check_config(ws, cfg, resume)
    now = time.time()
    with ws.connect() as db:
        cursor = db.execute(
            "INSERT INTO jobs (kind, config, resume, status, created_at, updated_at) "
            "VALUES ('train', ?, ?, 'queued', ?, ?)",
            (jsonsafe.dumps(cfg.to_dict()), int(resume), now, now),
        )
        job_id = int(cursor.lastrowid)
        folder = job_dir(ws, job_id)
        db.execute("UPDATE jobs SET log_path = ? WHERE id = ?", (str(folder / "train.log"), job_id))
    write_bytes_atomic(folder / "config.json", jsonsafe.dumps(cfg.to_dict(), indent=2).encode())
    log.info("job %d queued: %s on %s", job_id, cfg.model, cfg.dataset)
    if start:
        schedule(ws)
    return job_id


def schedule(ws: Workspace) -> list[int]:
    """Reconcile, then start queued jobs (oldest first) while fewer than ``max_jobs()`` run; ids started."""
    reconcile(ws)
    started = []
    while (job_id := _claim_next(ws, max_jobs())) is not None:
        _launch(ws, job_id)
        started.append(job_id)
    return started


def _claim_next(ws: Workspace, limit: int) -> int | None:
    """Atomically move the oldest queued job to running when there is room (no two schedulers get one job)."""
    with ws.connect() as db:
        db.execute("BEGIN IMMEDIATE")
        running = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'running'").fetchone()[0]
        if running >= limit:
            return None
        row = db.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        now = time.time()
        db.execute(
            "UPDATE jobs SET status = 'running', pid = NULL, started_at = ?, updated_at = ? WHERE id = ?",
            (now, now, row["id"]),
        )
        return int(row["id"])


def _child_env(ws: Workspace) -> dict[str, str]:
    """The training process's environment: this workspace, this code, unbuffered output for a live log."""
    env = dict(os.environ, CXR_HOME=str(ws.home), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _launch(ws: Workspace, job_id: int) -> None:
    """Start the training process of a claimed job, detached in its own session, output to its log."""
    folder = job_dir(ws, job_id)
    folder.mkdir(parents=True, exist_ok=True)
    with ws.connect() as db:
        resume = bool(db.execute("SELECT resume FROM jobs WHERE id = ?", (job_id,)).fetchone()["resume"])
    command = [
        sys.executable,
        "-m",
        "cxrcore.train",
        "--config",
        str(folder / "config.json"),
        "--job",
        str(job_id),
    ]
    command += ["--resume"] if resume else []
    try:
        child = processes.start_detached(command, folder / "train.log", REPO_ROOT, _child_env(ws))
    except OSError as exc:
        _set_final(ws, job_id, "failed", f"could not start the training process: {exc}")
        return
    with _CHILDREN_LOCK:
        _CHILDREN[child.pid] = child
    with ws.connect() as db:
        db.execute("UPDATE jobs SET pid = ?, updated_at = ? WHERE id = ?", (child.pid, time.time(), job_id))
    log.info("job %d started, pid %d", job_id, child.pid)


def _set_final(
    ws: Workspace, job_id: int, status: str, error: str | None, current: tuple[str, ...] = ACTIVE
) -> bool:
    """Give a job its final status if its status is one of ``current``; False when it was not."""
    now = time.time()
    marks = ", ".join("?" * len(current))
    with ws.connect() as db:
        cursor = db.execute(
            "UPDATE jobs SET status = ?, error = COALESCE(?, error), finished_at = ?, updated_at = ?, "
            f"eta_s = NULL WHERE id = ? AND status IN ({marks})",
            (status, error, now, now, job_id, *current),
        )
        return cursor.rowcount > 0


def _reap_children(keep: set[int]) -> None:
    """Reap ended processes this process started (so none stays a zombie), except those in ``keep``."""
    with _CHILDREN_LOCK:
        for pid, child in list(_CHILDREN.items()):
            if pid not in keep and child.poll() is not None:
                del _CHILDREN[pid]


def _exit_status(pid: int, wait: float = 0.0) -> int | None:
    """The exit status of an ended child of this process, reaping it; None if running or not our child."""
    with _CHILDREN_LOCK:
        child = _CHILDREN.get(pid)
        try:
            code = child.wait(timeout=wait) if child is not None else None
        except subprocess.TimeoutExpired:
            return None
        _CHILDREN.pop(pid, None)
        return code


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) training process; a reused pid running something else is not."""
    return processes.process_alive(pid, b"cxrcore.train")


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def reconcile(ws: Workspace) -> None:
    """Mark running jobs whose process is gone as failed, with their log tail; stop any ignoring a cancel."""
    with ws.connect() as db:
        rows = db.execute(
            "SELECT id, pid, started_at, cancel_requested, cancel_requested_at FROM jobs "
            "WHERE status = 'running'"
        ).fetchall()
    for row in rows:
        _reconcile_job(ws, row, time.time())
    _reap_children(keep={row["pid"] for row in rows})  # the rest ended after reporting their status


def _reconcile_job(ws: Workspace, row: Any, now: float) -> None:
    """Check one running job's process and give the job its final status if the process is gone."""
    job_id, pid = row["id"], row["pid"]
    if pid is None:
        if now - (row["started_at"] or 0) >= LAUNCH_GRACE_S:  # else a scheduler is starting it right now
            _set_final(ws, job_id, "failed", "the training process never started")
        return
    code = _exit_status(pid)
    if code is None and process_alive(pid):
        grace = cancel_grace_s()
        if row["cancel_requested"] and now - (row["cancel_requested_at"] or now) > grace:
            _terminate(pid)
            reason = f"stopped with SIGTERM: still running {grace:g} s after the cancel request"
            _set_final(ws, job_id, "cancelled", reason)
        return
    code = code if code is not None else _exit_status(pid, wait=5)  # a child that just died
    if row["cancel_requested"]:
        reason = f"the process ended after the cancel request ({_exit_text(code)})"
        _set_final(ws, job_id, "cancelled", reason)
        return
    tail = log_tail(ws, job_id, FAILED_LOG_LINES)
    message = f"process ended without reporting ({_exit_text(code)})"
    if _set_final(ws, job_id, "failed", message + (f"\n{tail}" if tail else "")):
        log.warning("job %d: %s", job_id, message)


def _terminate(pid: int) -> None:
    """SIGTERM to the job's process group (the process leads its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)


def cancel(ws: Workspace, job_id: int) -> JobRecord:
    """Cancel a job: a queued one at once, a running one at its next step (SIGTERM if it ignores that)."""
    job = get_job(ws, job_id)
    if job.status == "queued" and _set_final(ws, job_id, "cancelled", None, current=("queued",)):
        return get_job(ws, job_id)
    now = time.time()
    with ws.connect() as db:
        changed = db.execute(
            "UPDATE jobs SET cancel_requested = 1, cancel_requested_at = COALESCE(cancel_requested_at, ?), "
            "updated_at = ? WHERE id = ? AND status = 'running'",
            (now, now, job_id),
        ).rowcount
    if not changed:
        status = get_job(ws, job_id).status
        raise JobError(f"job {job_id} is {status}; only queued or running jobs can be cancelled")
    log.info("job %d: cancel requested", job_id)
    return get_job(ws, job_id)


def list_jobs(ws: Workspace, status: str | None = None) -> list[JobRecord]:
    """Every job, newest first (optionally only those with one status)."""
    if status is not None and status not in STATUSES:
        raise JobError(f"unknown job status {status!r}; valid options: {', '.join(STATUSES)}")
    query, params = "SELECT * FROM jobs", ()
    if status is not None:
        query, params = query + " WHERE status = ?", (status,)
    with ws.connect() as db:
        rows = db.execute(query + " ORDER BY id DESC", params).fetchall()
    return [JobRecord.from_row(r) for r in rows]


def get_job(ws: Workspace, job_id: int) -> JobRecord:
    """One job; an unknown id says which ids exist."""
    with ws.connect() as db:
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
        if row is None:
            span = db.execute("SELECT MIN(id), MAX(id), COUNT(*) FROM jobs").fetchone()
    if row is None:
        known = f"ids {span[0]}-{span[1]}, {span[2]} job(s)" if span[2] else "no jobs yet"
        raise JobError(f"no job with id {job_id} ({known})")
    return JobRecord.from_row(row)


def log_tail(ws: Workspace, job_id: int, lines: int = 40) -> str:
    """The last ``lines`` lines of a job's log ('' when it has none yet)."""
    path = job_dir(ws, job_id) / "train.log"
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 64 * 1024, 0))
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:]) if lines > 0 else ""
