"""Predictions over a dataset split made in the background: one low-priority process per stored table.

A page (or ``demo prepare``) asks with ``start``; a worker process (``python -m
cxrcore.evaluate.background``) runs ``predict`` at a lower scheduling priority and stores the table
exactly where ``predict`` stores it, so ``predict`` reads it back afterwards without running the model.
``status`` says where a table stands: ready, running (images done of the total), failed (the error and
the worker's log tail) or missing.

Each table's key (``prediction_key``) names three files under ``$CXR_HOME/predictions/background/``:
``<key>.claim`` (the worker's pid, as JSON), ``<key>.progress.json`` (state, images done and in total,
error; written atomically by the worker) and ``<key>.log`` (the worker's output). Sessions asking at
the same time start one worker: the claim is read and written under an exclusive lock on
``<key>.lock``, and a claim whose process has gone (a crash, a reboot) is taken over.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrcore import jsonsafe
from cxrcore.atomic import write_bytes_atomic
from cxrcore.data.split import split_rows
from cxrcore.models.card import read_card
from cxrcore.processes import process_alive, start_detached
from cxrcore.store import Workspace

log = logging.getLogger(__name__)

# Splits of at most this many images are predicted in the page itself: a worker process spends about
# 5 s importing PyTorch, longer than a small split takes in a process that has it loaded.
INLINE_MAX_IMAGES = 64
NICENESS = 10  # added to the worker's niceness, so the dashboard's own work comes first
LAUNCH_GRACE_S = 30.0  # a claim may go this long without a pid while its worker starts
LOG_TAIL_LINES = 20
WORKER_MODULE = "cxrcore.evaluate.background"
REPO_ROOT = Path(__file__).resolve().parents[2]

READY, RUNNING, FAILED, MISSING = "ready", "running", "failed", "missing"
STATES: tuple[str, ...] = (READY, RUNNING, FAILED, MISSING)
WAITING = "waiting"  # a running worker's progress state while it waits for a free slot


def max_workers() -> int:
    """How many workers predict at once (the rest wait): half the CPU cores, at least one.

    Each worker's PyTorch uses every core, so more at once only makes each slower.
    """
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True)
class PredictionStatus:
    """Where one stored prediction table stands: ``state`` (one of STATES) and the worker's progress."""

    state: str
    key: str
    done: int = 0
    total: int = 0
    error: str = ""
    log_tail: str = ""
    waiting: bool = False  # running, but waiting for other predictions to finish first


def _folder(ws: Workspace) -> Path:
    return ws.predictions_dir / "background"


def _files(ws: Workspace, key: str, suffix: str) -> Path:
    return _folder(ws) / f"{key}{suffix}"


def prediction_target(checkpoint: str | Path, ws: Workspace, dataset: str, split: str) -> Path:
    """Where ``predict`` stores (or will store) a checkpoint's predictions over a dataset split."""
    from cxrcore.evaluate.predict import prediction_key

    path = Path(checkpoint)
    key = prediction_key(path, ws, dataset, split, read_card(path).preprocess)
    return ws.predictions_dir / f"{key}.parquet"


def is_stored(target: Path) -> bool:
    """Whether a prediction table and its metadata are both on disk."""
    return target.exists() and target.with_suffix(".json").exists()


def split_size(ws: Workspace, dataset: str, split: str) -> int:
    """How many images a dataset split has (the images a prediction over it runs the model on)."""
    return len(split_rows(ws.load_dataset(dataset).index, split))


def _read_json(path: Path) -> dict[str, Any]:
    """A small JSON record, or {} when missing or half-written by a crashed writer."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def write_progress(
    path: Path, state: str, done: int, total: int, error: str = "", queued_at: float | None = None
) -> None:
    """Write a worker's progress record atomically (readers see the old one or the new one)."""
    record = {"state": state, "done": done, "total": total, "error": error, "updated_at": time.time()}
    if queued_at is not None:
        record["queued_at"] = queued_at
    write_bytes_atomic(path, jsonsafe.dumps(record).encode())


def log_tail(ws: Workspace, key: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a worker's log ('' when it has none)."""
    try:
        with open(_files(ws, key, ".log"), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 32 * 1024, 0))
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _claim_alive(claim: dict[str, Any]) -> bool:
    """Whether a claim's worker runs, or is being started right now (no pid yet, within the grace)."""
    if not claim:
        return False
    pid = claim.get("pid")
    starting = time.time() - float(claim.get("claimed_at", 0)) < LAUNCH_GRACE_S
    if pid is None:
        return starting
    if process_alive(int(pid), WORKER_MODULE.encode()):
        return True
    # Just launched: until it execs, the child's command line is still its parent's.
    return starting and process_alive(int(pid), b"")


def claim_running(claim_file: Path) -> bool:
    """Whether the worker of a claim file (``<key>.claim``) runs or is being started."""
    return _claim_alive(_read_json(claim_file))


def _status(ws: Workspace, key: str, target: Path) -> PredictionStatus:
    """The status of the table at ``target`` (key ``key``), from the files alone."""
    if is_stored(target):
        return PredictionStatus(READY, key)
    progress = _read_json(_files(ws, key, ".progress.json"))
    done, total = int(progress.get("done", 0)), int(progress.get("total", 0))
    claim = _read_json(_files(ws, key, ".claim"))
    if _claim_alive(claim):
        return PredictionStatus(RUNNING, key, done, total, waiting=progress.get("state") == WAITING)
    if progress.get("state") == FAILED:
        return PredictionStatus(FAILED, key, done, total, str(progress.get("error")), log_tail(ws, key))
    if claim:
        error = "the prediction process ended without finishing"
        return PredictionStatus(FAILED, key, done, total, error, log_tail(ws, key))
    return PredictionStatus(MISSING, key)


def status(checkpoint: str | Path, ws: Workspace, dataset: str, split: str) -> PredictionStatus:
    """Where a checkpoint's predictions over a dataset split stand: ready, running, failed or missing."""
    target = prediction_target(checkpoint, ws, dataset, split)
    return _status(ws, target.stem, target)


def _waits_behind(ws: Workspace, key: str, queued_at: float) -> bool:
    """Whether another live worker has waited for a slot longer than this one (slots go first come)."""
    for other in _folder(ws).glob("*.progress.json"):
        other_key = other.name.removesuffix(".progress.json")
        record = _read_json(other)
        if other_key == key or record.get("state") != WAITING:
            continue
        if (float(record.get("queued_at", 0)), other_key) < (queued_at, key) and claim_running(
            _files(ws, other_key, ".claim")
        ):
            return True
    return False


@contextmanager
def _slot(ws: Workspace, key: str, queued_at: float) -> Iterator[None]:
    """Hold one of ``max_workers()`` slots (lock files) while predicting; wait, first come first served,
    while all are taken."""
    folder = _folder(ws)
    while True:
        for i in range(0 if _waits_behind(ws, key, queued_at) else max_workers()):
            fd = os.open(folder / f"slot-{i}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield
            finally:
                os.close(fd)
            return
        time.sleep(0.5)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes and threads (each holder opens its own file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def start(
    checkpoint: str | Path,
    ws: Workspace,
    dataset: str,
    split: str,
    *,
    retry: bool = False,
    delay_s: float = 0.0,
) -> PredictionStatus:
    """Start the worker for these predictions unless they are stored or a worker runs; their status.

    A worker that reported a failure is started again only with ``retry``, so a page that asks on every
    run does not restart a failing one in a loop; one that vanished without reporting (killed, or the
    machine restarted) is taken over. ``delay_s``: the worker waits this long before it loads anything
    (``make run`` starts the predictions just before the dashboard, which starts first).
    """
    checkpoint = Path(checkpoint).resolve()
    target = prediction_target(checkpoint, ws, dataset, split)
    key = target.stem
    with _locked(_files(ws, key, ".lock")):
        found = _status(ws, key, target)
        reported = _read_json(_files(ws, key, ".progress.json")).get("state") == FAILED
        if found.state in (READY, RUNNING) or (reported and not retry):
            return found
        total = split_size(ws, dataset, split)
        claim = _files(ws, key, ".claim")
        claimed_at = time.time()  # the worker's place in the queue for a slot
        write_bytes_atomic(claim, jsonsafe.dumps({"pid": None, "claimed_at": claimed_at}).encode())
        write_progress(_files(ws, key, ".progress.json"), RUNNING, 0, total)
        pid = _launch(ws, key, checkpoint, dataset, split, delay_s)
        record = {"pid": pid, "claimed_at": claimed_at, "checkpoint": str(checkpoint)}
        write_bytes_atomic(claim, jsonsafe.dumps({**record, "dataset": dataset, "split": split}).encode())
    log.info("predicting %s on %s/%s in the background (pid %d)", checkpoint.parent.name, dataset, split, pid)
    return PredictionStatus(RUNNING, key, 0, total)


def _launch(ws: Workspace, key: str, checkpoint: Path, dataset: str, split: str, delay_s: float = 0.0) -> int:
    """Start a detached worker process writing to the key's log; its pid."""
    env = dict(os.environ, CXR_HOME=str(ws.home), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", WORKER_MODULE, str(checkpoint), dataset, split, "--key", key]
    command += ["--delay", f"{delay_s:g}"] if delay_s > 0 else []
    # Low priority from its first instruction, imports included: Linux's idle scheduling class (it runs
    # only on CPU time nothing else wants) where `chrt` exists, else a higher niceness.
    nice, chrt = shutil.which("nice"), shutil.which("chrt")
    command = [nice, "-n", str(NICENESS), *command] if nice else command
    command = [chrt, "--idle", "0", *command] if chrt else command
    child = start_detached(command, _files(ws, key, ".log"), REPO_ROOT, env)
    # Reap it when it ends, so a long-running dashboard does not collect zombies.
    threading.Thread(target=child.wait, name=f"reap-{child.pid}", daemon=True).start()
    return child.pid


def run_worker(checkpoint: str, dataset: str, split: str, key: str, delay_s: float = 0.0) -> int:
    """The worker's body: predict at low priority, writing progress; 0 when the table is stored.
    ``delay_s``: seconds to wait first, before loading PyTorch (whose loading, even at idle priority,
    slowed a dashboard starting at the same moment by about 0.8 s on 2 cores)."""
    if os.nice(0) < NICENESS:  # started without `nice`
        os.nice(NICENESS)
    time.sleep(max(0.0, delay_s))
    ws = Workspace()
    progress_file = _files(ws, key, ".progress.json")
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 0.5:  # at most two writes a second
            write_progress(progress_file, RUNNING, done, total)
            last[0] = now

    from cxrcore.evaluate.predict import predict

    try:
        before = _read_json(progress_file)
        queued_at = float(_read_json(_files(ws, key, ".claim")).get("claimed_at") or time.time())
        write_progress(progress_file, WAITING, 0, int(before.get("total", 0)), queued_at=queued_at)
        with _slot(ws, key, queued_at):
            write_progress(progress_file, RUNNING, 0, int(before.get("total", 0)))
            preds = predict(checkpoint, ws, dataset, split, progress=report)
    except Exception as exc:  # any failure is reported to the pages, the traceback goes to the log
        traceback.print_exc()
        before = _read_json(progress_file)
        write_progress(
            progress_file, FAILED, int(before.get("done", 0)), int(before.get("total", 0)), f"{exc}"
        )
        return 1
    write_progress(progress_file, READY, len(preds.table), len(preds.table))
    _files(ws, key, ".claim").unlink(missing_ok=True)
    log.info("stored %d predictions of %s on %s/%s", len(preds.table), checkpoint, dataset, split)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m cxrcore.evaluate.background CHECKPOINT DATASET SPLIT --key KEY``."""
    parser = argparse.ArgumentParser(prog=f"python -m {WORKER_MODULE}", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("dataset")
    parser.add_argument("split")
    parser.add_argument("--key", required=True, help="the prediction key (names the progress file)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before starting")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_worker(args.checkpoint, args.dataset, args.split, args.key, args.delay)


if __name__ == "__main__":
    sys.exit(main())
