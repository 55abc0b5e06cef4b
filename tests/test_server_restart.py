"""Killing the app while a background training job runs, then starting it again.

The "server" here is a real process doing what the Train page does: ``jobs.submit`` on launch, then
``jobs.schedule`` whenever someone looks (every 0.2 s). It is killed with SIGKILL, alone or together
with its job, and a new one is started; the job's state, its files and a resumed run are checked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cxrcore.models import load_checkpoint
from cxrcore.models.card import _sha256
from cxrcore.store import Workspace
from cxrcore.train import jobs
from cxrcore.train.config import TrainConfig
from cxrcore.workflows.demo import DEMO_DATASET

ROOT = Path(__file__).resolve().parents[1]
SERVER = """
import json, sys, time
from cxrcore.store import Workspace
from cxrcore.train import jobs
from cxrcore.train.config import TrainConfig
ws = Workspace()
if sys.argv[1] != "-":  # the launch button
    print(jobs.submit(ws, TrainConfig.from_dict(json.loads(sys.argv[1]))), flush=True)
jobs.schedule(ws)
print("up", flush=True)
while True:  # the Train page, whenever someone looks
    jobs.schedule(ws)
    time.sleep(0.2)
"""


def _server(ws: Workspace, cfg: TrainConfig | None = None) -> tuple[subprocess.Popen, int | None]:
    """Start a server process (launching ``cfg`` as a job when given); wait until it has scheduled once."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, json.dumps(cfg.to_dict()) if cfg else "-"],
        cwd=ROOT,
        env={**os.environ, "CXR_HOME": str(ws.home), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    job_id = int(proc.stdout.readline()) if cfg else None
    assert proc.stdout.readline() == "up\n"
    return proc, job_id


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _wait(
    ws: Workspace, job_id: int, done: Callable[[jobs.JobRecord], bool], timeout: float = 180
) -> jobs.JobRecord:
    deadline = time.monotonic() + timeout
    while not done(job := jobs.get_job(ws, job_id)):
        assert time.monotonic() < deadline, f"job {job_id} is {job.status}:\n{jobs.log_tail(ws, job_id)}"
        time.sleep(0.1)
    return job


def _assert_files_whole(run_dir: Path) -> None:
    """Every checkpoint loads and matches its sidecar's hash; the resume state loads (tensors only)."""
    weights = sorted(p for p in run_dir.glob("*.safetensors") if not p.name.endswith(".guard.safetensors"))
    assert [p.name for p in weights] == ["best.safetensors", "last.safetensors"]
    for path in weights:
        load_checkpoint(path)
        sidecar = json.loads(path.with_suffix(".json").read_text())
        assert sidecar["weights_file"]["sha256"] == _sha256(path)
    torch.load(run_dir / "resume.pt", weights_only=True)


@pytest.mark.slow
def test_the_app_killed_and_restarted_finds_its_jobs_right_and_the_runs_resume(demo_ws: Workspace) -> None:
    ws = demo_ws
    base = TrainConfig(dataset=DEMO_DATASET, model="tiny", input_size=32, batch_size=8, max_steps_per_epoch=3)

    # 1. The server dies; its job lives on (its own session), and the new server sees it running.
    server, job_id = _server(ws, base.replace(epochs=8, run_name="survivor"))
    assert job_id is not None
    pid = _wait(ws, job_id, lambda j: len(j.history) >= 1).pid
    _kill(server)
    assert jobs.process_alive(pid)
    server, _ = _server(ws)
    # Running, unless it already ended on a quiet machine (then finished, never failed or lost).
    status = jobs.get_job(ws, job_id).status
    assert status == "running" or (status == "finished" and not jobs.process_alive(pid)), status
    finished = _wait(ws, job_id, lambda j: j.status != "running")
    assert finished.status == "finished" and len(finished.history) == 8, finished.error
    _assert_files_whole(ws.home / "runs" / "survivor")
    _kill(server)

    # 2. The server and its job die together (as when the machine stops): failed, with its log.
    server, job_id = _server(ws, base.replace(epochs=4, run_name="victim"))
    assert job_id is not None
    pid = _wait(ws, job_id, lambda j: len(j.history) >= 1).pid
    os.killpg(pid, signal.SIGKILL)
    _kill(server)
    server, _ = _server(ws)
    failed = jobs.get_job(ws, job_id)
    assert failed.status == "failed"
    assert failed.error.startswith("process ended without reporting")
    assert f"job {job_id}: 4 epochs x 3 steps" in failed.error  # the log tail
    _assert_files_whole(ws.home / "runs" / "victim")  # the epochs it finished, whole

    # 3. The run resumes from its last finished epoch and ends with every epoch in its history.
    resumed_id = jobs.submit(ws, base.replace(epochs=4, run_name="victim"), resume=True)
    resumed = _wait(ws, resumed_id, lambda j: j.status != "running" and j.status != "queued")
    _kill(server)
    assert resumed.status == "finished", resumed.error
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert "resuming victim after epoch" in jobs.log_tail(ws, resumed_id, 200)
    _assert_files_whole(ws.home / "runs" / "victim")
