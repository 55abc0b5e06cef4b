"""A job's row in the jobs table: how its training process writes it, and how everyone else reads it.

The training process (``python -m cxrcore.train --job ID``) owns its row while it runs: through
``JobReporter`` it writes the epoch, step, loss, ETA and validation metrics, reads the cancel request,
and sets the final status (finished, failed or cancelled). Whoever watches the job reads the row as a
``JobRecord``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from cxrcore import jsonsafe
from cxrcore.jsonsafe import to_jsonable
from cxrcore.store import Workspace, WorkspaceError

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "finished", "failed", "cancelled")
ACTIVE = ("queued", "running")
STEP_WRITE_INTERVAL_S = 0.5  # progress rows per second stay at or under 2
STOP_CHECK_INTERVAL_S = 1.0  # the cancel flag is read at most once a second
_LOGGED = ("train_loss", "val_loss", "val_auroc")


def clean_json(value: Any) -> Any:
    """Plain JSON values (``cxrcore.jsonsafe``: NaN and infinity become None); anything else as text."""
    return to_jsonable(value, default=str)


def dumps(value: Any) -> str:
    """Strict JSON text of ``clean_json(value)``."""
    return jsonsafe.dumps(value, default=str)


@dataclass(frozen=True)
class JobRecord:
    """One job as the database describes it."""

    id: int
    kind: str
    status: str
    config: dict[str, Any]
    resume: bool
    pid: int | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    epoch: int
    total_epochs: int | None
    step: int
    steps_per_epoch: int | None
    loss: float | None
    metrics: dict[str, Any] | None
    history: list[dict[str, Any]]
    eta_s: float | None
    info: dict[str, Any] | None
    run_dir: str | None
    checkpoint: str | None
    result: dict[str, Any] | None
    log_path: str | None
    error: str | None
    cancel_requested: bool

    @classmethod
    def from_row(cls, row: Any) -> JobRecord:
        """Build from a ``jobs`` row, decoding its JSON columns."""
        values = dict(row)
        for name in ("config", "metrics", "info", "result"):
            values[name] = json.loads(values[name]) if values[name] else None
        values["history"] = json.loads(values["history"] or "[]")
        values["resume"] = bool(values["resume"])
        values["cancel_requested"] = bool(values["cancel_requested"])
        values.pop("cancel_requested_at", None)
        return cls(**values)

    @property
    def active(self) -> bool:
        """Whether the job is queued or running."""
        return self.status in ACTIVE

    @property
    def val_auroc(self) -> float | None:
        """Validation macro AUROC of the last finished epoch (None before one, or when undefined)."""
        return (self.metrics or {}).get("val_auroc")

    @property
    def progress(self) -> float:
        """Share of the run's steps done, from 0 to 1."""
        if self.status == "finished":
            return 1.0
        if not self.total_epochs or not self.steps_per_epoch:
            return 0.0
        done = (max(self.epoch, 1) - 1) * self.steps_per_epoch + self.step
        return min(done / (self.total_epochs * self.steps_per_epoch), 1.0)

    def summary(self) -> dict[str, Any]:
        """One table row: id, status, dataset, model, epoch, loss, validation AUROC, ETA."""
        return {
            "id": self.id,
            "status": self.status + (" (cancel requested)" if self.cancel_requested and self.active else ""),
            "dataset": self.config.get("dataset"),
            "model": self.config.get("model"),
            "epoch": f"{self.epoch}/{self.total_epochs}" if self.total_epochs else "",
            "loss": None if self.loss is None else round(self.loss, 4),
            "val_auroc": None if self.val_auroc is None else round(self.val_auroc, 4),
            "eta": format_eta(self.eta_s) if self.status == "running" else "",
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created_at)),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return clean_json(asdict(self))

    def describe(self) -> str:
        """The job as aligned lines: status, progress, metrics, files, the first line of any error."""
        step = f" (step {self.step}/{self.steps_per_epoch})" if self.steps_per_epoch else ""
        fields = {
            "status": self.summary()["status"],
            "dataset / model": f"{self.config.get('dataset')} / {self.config.get('model')}",
            "epoch": f"{self.epoch}/{self.total_epochs}{step}" if self.total_epochs else None,
            "loss": None if self.loss is None else f"{self.loss:.4f}",
            "val AUROC": None if self.val_auroc is None else f"{self.val_auroc:.3f}",
            "ETA": format_eta(self.eta_s) if self.status == "running" else None,
            "pid": self.pid,
            "run folder": self.run_dir,
            "checkpoint": self.checkpoint,
            "log": self.log_path,
            "error": self.error.splitlines()[0] if self.error else None,
        }
        lines = [f"  {k:<16} {v}" for k, v in fields.items() if v not in (None, "")]
        return "\n".join([f"job {self.id}", *lines])


def format_eta(seconds: float | None) -> str:
    """Seconds as ``1h 02m``, ``3m 05s`` or ``42s``; empty when unknown."""
    if seconds is None:
        return ""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


class JobReporter:
    """Writes a training run's progress to its jobs row and reads its cancel request."""

    def __init__(self, ws: Workspace, job_id: int) -> None:
        self.ws, self.job_id = ws, int(job_id)
        now = time.time()
        with ws.connect() as db:
            row = db.execute("SELECT status, history FROM jobs WHERE id = ?", (self.job_id,)).fetchone()
            if row is None:
                raise WorkspaceError(f"no job with id {self.job_id} in the workspace {ws.home}")
            db.execute(
                "UPDATE jobs SET status = 'running', pid = COALESCE(pid, ?), "
                "started_at = COALESCE(started_at, ?), updated_at = ? "
                "WHERE id = ? AND status IN ('queued', 'running')",
                (os.getpid(), now, now, self.job_id),
            )
        self._stop = row["status"] not in ("queued", "running")
        self._history: list[dict[str, Any]] = json.loads(row["history"] or "[]")
        self._t0 = time.monotonic()
        self._steps_done = 0
        self._total_epochs = 1
        self._steps_per_epoch = 1
        self._last_write = -math.inf
        self._last_check = -math.inf

    def _update(self, **values: Any) -> int:
        """Set columns of this job's row while it is running; returns the number of rows changed."""
        values["updated_at"] = time.time()
        columns = ", ".join(f"{name} = ?" for name in values)
        with self.ws.connect() as db:
            cursor = db.execute(
                f"UPDATE jobs SET {columns} WHERE id = ? AND status = 'running'",
                (*values.values(), self.job_id),
            )
            return cursor.rowcount

    def _eta(self, remaining_steps: int) -> float | None:
        """Seconds left: wall time per step so far (validation included once an epoch ends) x steps left."""
        if self._steps_done == 0:
            return None
        return (time.monotonic() - self._t0) / self._steps_done * max(remaining_steps, 0)

    def started(self, total_epochs: int, steps_per_epoch: int, info: dict[str, Any]) -> None:
        """Record the run's size and set-up (device, image counts, run folder)."""
        self._total_epochs = max(int(total_epochs), 1)
        self._steps_per_epoch = max(int(steps_per_epoch), 1)
        self._t0 = time.monotonic()
        start_epoch = int(info.get("start_epoch", 1))
        self._update(
            total_epochs=self._total_epochs,
            steps_per_epoch=self._steps_per_epoch,
            epoch=start_epoch,
            step=0,
            info=dumps(info),
            run_dir=str(info["run_dir"]) if info.get("run_dir") else None,
        )
        log.info("job %d: %d epochs x %d steps", self.job_id, total_epochs, steps_per_epoch)

    def step(self, epoch: int, step: int, loss: float) -> None:
        """Record a finished optimiser step (written at most twice a second, and always at an epoch's end)."""
        self._steps_done += 1
        now = time.monotonic()
        if now - self._last_write < STEP_WRITE_INTERVAL_S and step < self._steps_per_epoch:
            return
        self._last_write = now
        remaining = (self._total_epochs - epoch) * self._steps_per_epoch + (self._steps_per_epoch - step)
        self._update(epoch=epoch, step=step, loss=clean_json(float(loss)), eta_s=self._eta(remaining))

    def epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        """Record an epoch's losses and validation metrics and append them to the job's history."""
        log.info(
            "job %d: epoch %d/%d train loss %.4f, val loss %.4f, val AUROC %.4f",
            self.job_id,
            epoch,
            self._total_epochs,
            *(float(record.get(k) if record.get(k) is not None else math.nan) for k in _LOGGED),
        )
        record = clean_json(record)
        self._history.append(record)
        remaining = (self._total_epochs - epoch) * self._steps_per_epoch
        self._update(
            epoch=epoch,
            step=self._steps_per_epoch,
            metrics=dumps(record),
            history=dumps(self._history),
            eta_s=self._eta(remaining),
        )

    def should_stop(self) -> bool:
        """Whether a cancel was requested (or the row left the running state); once true, stays true."""
        now = time.monotonic()
        if self._stop or now - self._last_check < STOP_CHECK_INTERVAL_S:
            return self._stop
        self._last_check = now
        with self.ws.connect() as db:
            row = db.execute(
                "SELECT status, cancel_requested FROM jobs WHERE id = ?", (self.job_id,)
            ).fetchone()
        self._stop = row is None or row["status"] != "running" or bool(row["cancel_requested"])
        if self._stop:
            log.info("job %d: stop requested", self.job_id)
        return self._stop

    def finished(self, result: dict[str, Any]) -> None:
        """Mark the job finished with its run folder, checkpoint and history; then start the next one."""
        result = clean_json(result)
        history = result.pop("history", None)
        self._finish(
            "finished",
            run_dir=result.get("run_dir"),
            checkpoint=result.get("best_checkpoint") or result.get("last_checkpoint"),
            result=dumps(result),
            history=dumps(history if history is not None else self._history),
        )

    def failed(self, message: str) -> None:
        """Mark the job failed with a one-line reason; then start the next queued job."""
        self._finish("failed", error=str(message))

    def cancelled(self) -> None:
        """Mark the job cancelled (it stopped cleanly at a cancel request); then start the next queued job."""
        self._finish("cancelled")

    def _finish(self, status: str, **values: Any) -> None:
        now = time.time()
        changed = self._update(
            status=status, finished_at=now, eta_s=0.0 if status == "finished" else None, **values
        )
        if not changed:
            log.warning(
                "job %d was no longer running; its final status %r was not recorded", self.job_id, status
            )
        log.info("job %d: %s", self.job_id, status)
        try:  # the next queued job starts as soon as this one ends, without anyone watching
            from cxrcore.train.jobs import schedule

            schedule(self.ws)
        except Exception:  # a failure to start the next job must not change this job's outcome
            log.exception("could not start the next queued job")
