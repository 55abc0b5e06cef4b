"""Background jobs: real training processes (``python -m cxrcore.train``) against a real SQLite workspace.

Every job trains the "tiny" model at 64 px on the synthetic demo for a few steps, so a whole job takes
a few seconds (most of it the child's imports).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cxrcore.cli import main
from cxrcore.store import Workspace, WorkspaceError
from cxrcore.train import jobs
from cxrcore.train.config import TrainConfig
from cxrcore.workflows.demo import DEMO_DATASET

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model": "tiny", "input_size": 64, "batch_size": 8, "max_steps_per_epoch": 3}


@pytest.fixture
def ws(demo_ws: Workspace) -> Workspace:
    """The demo workspace, copied fresh for each test."""
    return demo_ws


def tiny(**changes: object) -> TrainConfig:
    return TrainConfig(**{"dataset": DEMO_DATASET, **TINY, "epochs": 1, **changes})


def wait_for(
    ws: Workspace, job_id: int, done: Callable[[jobs.JobRecord], bool], timeout: float = 90
) -> jobs.JobRecord:
    """Poll the job's row (reading only) until ``done`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        job = jobs.get_job(ws, job_id)
        if done(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {job.status}; log:\n{jobs.log_tail(ws, job_id)}")
        time.sleep(0.1)


@pytest.mark.slow  # runs training in a child process and polls it until it ends
def test_two_jobs_run_one_at_a_time_to_finished(ws: Workspace) -> None:
    first = jobs.submit(ws, tiny(epochs=2))
    second = jobs.submit(ws, tiny(run_name="second"))
    assert jobs.get_job(ws, first).status == "running"
    assert jobs.get_job(ws, second).status == "queued"
    assert (ws.home / "jobs" / str(first) / "config.json").read_text() == json.dumps(
        tiny(epochs=2).to_dict(), indent=2
    )
    # Nobody calls schedule from here on: the first job's process starts the second when it ends.
    seen_running_together = False
    while jobs.get_job(ws, second).active:
        statuses = [j.status for j in jobs.list_jobs(ws)]
        seen_running_together |= statuses.count("running") > 1
        time.sleep(0.05)
    a, b = jobs.get_job(ws, first), jobs.get_job(ws, second)
    assert not seen_running_together
    assert (a.status, b.status) == ("finished", "finished"), (a.error, b.error)
    assert b.started_at >= a.finished_at
    assert [h["epoch"] for h in a.history] == [1, 2]
    assert (a.epoch, a.total_epochs, a.step, a.steps_per_epoch, a.progress) == (2, 2, 3, 3, 1.0)
    assert a.eta_s == 0.0 and a.error is None and a.pid is not None
    assert 0.0 <= a.val_auroc <= 1.0 and set(a.metrics["val_auroc_per_label"]) == {
        "Nodule",
        "Opacity",
        "Effusion",
    }
    assert Path(a.checkpoint).is_file() and Path(a.checkpoint).name == "best.safetensors"
    assert Path(a.run_dir).parent == ws.home / "runs" and Path(b.run_dir).name == "second"
    assert "epoch 2/2 train loss" in jobs.log_tail(ws, first)
    # An app restart (a new Workspace object over the same folder) sees the same jobs.
    again = jobs.list_jobs(Workspace(ws.home))
    assert [(j.id, j.status, j.checkpoint) for j in again] == [
        (second, "finished", b.checkpoint),
        (first, "finished", a.checkpoint),
    ]


@pytest.mark.slow  # runs training in a child process and polls it until it ends
def test_cancel_a_queued_and_a_running_job(ws: Workspace) -> None:
    running = jobs.submit(ws, tiny(epochs=200, max_steps_per_epoch=2))
    queued = jobs.submit(ws, tiny())
    assert jobs.cancel(ws, queued).status == "cancelled"
    wait_for(ws, running, lambda j: j.step >= 1)  # training is under way
    assert jobs.cancel(ws, running).cancel_requested
    job = wait_for(ws, running, lambda j: not j.active, timeout=30)
    assert job.status == "cancelled" and job.error is None  # it stopped by itself, no SIGTERM needed
    assert len(job.history) < 200 and job.finished_at is not None
    assert jobs.get_job(ws, queued).started_at is None  # a cancelled queued job never starts
    with pytest.raises(jobs.JobError, match="is cancelled; only queued or running jobs can be cancelled"):
        jobs.cancel(ws, running)


@pytest.mark.slow  # runs training in a child process and polls it until it ends
def test_a_job_ignoring_its_cancel_gets_sigterm_after_the_grace_period(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = jobs.submit(ws, tiny(epochs=200, max_steps_per_epoch=2))
    pid = wait_for(ws, job_id, lambda j: j.step >= 1).pid
    monkeypatch.setenv("CXR_CANCEL_GRACE_S", "0")  # no time to stop by itself: the scheduler steps in
    jobs.cancel(ws, job_id)
    time.sleep(0.01)
    jobs.reconcile(ws)
    job = jobs.get_job(ws, job_id)
    assert job.status == "cancelled"
    assert job.error == "stopped with SIGTERM: still running 0 s after the cancel request"
    deadline = time.monotonic() + 10
    while jobs.process_alive(pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    monkeypatch.setenv("CXR_CANCEL_GRACE_S", "soon")
    with pytest.raises(jobs.JobError, match="CXR_CANCEL_GRACE_S must be a number of seconds, got 'soon'"):
        jobs.cancel_grace_s()


@pytest.mark.slow  # runs training in a child process and polls it until it ends
def test_a_killed_job_is_marked_failed_with_its_log_tail(ws: Workspace) -> None:
    job_id = jobs.submit(ws, tiny(epochs=200, max_steps_per_epoch=2))
    pid = wait_for(ws, job_id, lambda j: j.step >= 1).pid
    os.kill(pid, signal.SIGKILL)
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + 10
    while stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not jobs.process_alive(pid)  # a zombie is not alive
    # Another process (a restarted app, here the CLI) finds the dead job from the database alone.
    out = subprocess.run(
        [sys.executable, "-m", "cxrcore", "jobs", "show", str(job_id), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "CXR_HOME": str(ws.home)},
        timeout=60,
        check=True,
    )
    shown = json.loads(out.stdout)
    assert shown["status"] == "failed"
    assert shown["error"].startswith("process ended without reporting (exit status unknown)\n")
    assert f"job {job_id}: 200 epochs x 2 steps" in shown["error"]  # the log tail came with it
    jobs.reconcile(ws)  # the parent reaps its child; the status stays as the first finder set it
    assert jobs.get_job(ws, job_id).status == "failed"


@pytest.mark.slow  # runs training in a child process and polls it until it ends
def test_a_killed_child_of_this_process_reports_the_signal(ws: Workspace) -> None:
    job_id = jobs.submit(ws, tiny(epochs=200, max_steps_per_epoch=2))
    pid = wait_for(ws, job_id, lambda j: j.step >= 1).pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while jobs.get_job(ws, job_id).active:
        assert time.monotonic() < deadline
        jobs.reconcile(ws)
        time.sleep(0.05)
    job = jobs.get_job(ws, job_id)
    assert job.status == "failed"
    assert job.error.startswith("process ended without reporting (killed by SIGKILL)")


@pytest.mark.slow  # polls the cancel flag, read at most once a second
def test_reporter_throttles_steps_and_stores_strict_json(ws: Workspace) -> None:
    job_id = jobs.submit(ws, tiny(epochs=3), start=False)
    assert jobs.get_job(ws, job_id).status == "queued"
    reporter = jobs.JobReporter(ws, job_id)  # this process plays the training process
    job = jobs.get_job(ws, job_id)
    assert (job.status, job.pid) == ("running", os.getpid())
    reporter.started(3, 4, {"device": "cpu", "run_dir": str(ws.home / "runs" / "r"), "start_epoch": 1})
    reporter.step(1, 1, 0.9)
    reporter.step(1, 2, 0.8)  # within half a second of the last write: not written
    assert (jobs.get_job(ws, job_id).step, jobs.get_job(ws, job_id).loss) == (1, 0.9)
    reporter.step(1, 4, 0.7)  # the last step of an epoch is always written
    job = jobs.get_job(ws, job_id)
    assert (job.epoch, job.step, job.loss) == (1, 4, 0.7)
    assert job.eta_s > 0 and job.run_dir == str(ws.home / "runs" / "r")
    record = {
        "epoch": 1,
        "train_loss": 0.7,
        "val_loss": 0.6,
        "val_auroc": math.nan,
        "lr": 1e-3,
        "seconds": 1.0,
    }
    reporter.epoch_end(1, {**record, "val_auroc_per_label": {"Nodule": math.nan, "Opacity": 0.75}})
    job = jobs.get_job(ws, job_id)
    assert job.val_auroc is None and job.metrics["val_auroc_per_label"] == {"Nodule": None, "Opacity": 0.75}
    assert len(job.history) == 1 and not reporter.should_stop()
    jobs.cancel(ws, job_id)
    deadline = time.monotonic() + 3
    while not reporter.should_stop():  # read at most once a second
        assert time.monotonic() < deadline
        time.sleep(0.1)
    reporter.finished({"run_dir": "r", "best_checkpoint": None, "last_checkpoint": "r/last.safetensors",
                       "best_metric": -math.inf, "epochs_completed": 1, "history": [record]})  # fmt: skip
    job = jobs.get_job(ws, job_id)
    assert (job.status, job.checkpoint, job.result["best_metric"]) == ("finished", "r/last.safetensors", None)
    assert job.history[0]["val_auroc"] is None
    json.dumps(job.to_dict(), allow_nan=False)  # strict JSON for the CLI and the page
    with pytest.raises(WorkspaceError, match="no job with id 999"):
        jobs.JobReporter(ws, 999)


def test_submit_refuses_bad_requests(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(WorkspaceError, match="no dataset named 'demo'"):
        jobs.submit(ws, tiny(dataset="demo"))
    with pytest.raises(
        jobs.JobError, match=r"unknown label\(s\) \['Nodules'\] for 'demo-phantoms'; valid labels: Nod"
    ):
        jobs.submit(ws, tiny(labels=("Nodule", "Nodules")))
    with pytest.raises(
        jobs.JobError, match=r"unknown model 'tiny2'; did you mean 'tiny'\? valid options: .*\btiny\b"
    ):
        jobs.submit(ws, tiny(model="tiny2"))
    with pytest.raises(FileNotFoundError, match=r"checkpoint to repurpose not found: nowhere\.safetensors"):
        jobs.submit(ws, tiny(init="nowhere.safetensors"))
    with pytest.raises(FileNotFoundError, match="no resumable run named 'gone'"):
        jobs.submit(ws, tiny(run_name="gone"), resume=True)
    monkeypatch.setenv("CXR_MAX_JOBS", "0")
    with pytest.raises(jobs.JobError, match="CXR_MAX_JOBS must be a whole number of at least 1, got '0'"):
        jobs.max_jobs()
    assert jobs.list_jobs(ws) == []
    with pytest.raises(jobs.JobError, match="unknown job status 'done'; valid options: queued, running"):
        jobs.list_jobs(ws, status="done")


@pytest.mark.slow  # runs training in a child process and polls it until it ends
def test_cli_train_background_jobs_list_show_cancel(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--dataset", DEMO_DATASET, "--model", "tiny", "--input-size", "64", "--epochs", "1"]
    assert main(["train", *args, "--batch-size", "8", "--steps-per-epoch", "2", "--background"]) == 0
    assert capsys.readouterr().out.startswith("job 1 running; follow it with: python -m cxrcore jobs show 1")
    job = wait_for(ws, 1, lambda j: not j.active)
    assert job.status == "finished"
    assert main(["jobs", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(j["id"], j["status"], j["config"]["max_steps_per_epoch"]) for j in listed] == [
        (1, "finished", 2)
    ]
    assert main(["jobs", "show", "1"]) == 0
    text = capsys.readouterr().out
    assert "status           finished" in text and f"checkpoint       {job.checkpoint}" in text
    assert "--- last lines of the log ---" in text
    for argv, message in (
        (["jobs", "show", "7"], "error: no job with id 7 (ids 1-1, 1 job(s))"),
        (["jobs", "cancel", "7"], "error: no job with id 7"),
        (["jobs", "cancel", "1"], "error: job 1 is finished; only queued or running jobs can be cancelled"),
        (["train", "--model", "tiny"], "error: give --dataset NAME"),
        (["train", *args, "--lr", "-1"], "error: lr must be positive, got -1.0"),
        (
            ["train", "--dataset", DEMO_DATASET, "--model", "tiny3"],
            "error: unknown model 'tiny3'; did you mean 'tiny'? valid options: ",
        ),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, err


def test_cli_train_in_the_foreground(
    ws: Workspace, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text(
        f'[train]\ndataset = "{DEMO_DATASET}"\nmodel = "tiny"\ninput_size = 64\nepochs = 5\nbatch_size = 8\n'
        'max_steps_per_epoch = 2\nlabels = ["Opacity", "Effusion"]\n'
    )
    assert main(["train", "--config", str(toml), "--epochs", "2", "--run-name", "fg"]) == 0  # options win
    saved = json.loads((ws.home / "runs" / "fg" / "config.json").read_text())
    assert (saved["epochs"], saved["labels"], saved["input_size"], saved["model"]) == (
        2,
        ["Opacity", "Effusion"],
        64,
        "tiny",
    )
    out = capsys.readouterr()
    assert "epoch 1/2: train loss" in out.out and "epoch 2/2: train loss" in out.out
    assert f"best checkpoint: {ws.home / 'runs' / 'fg' / 'best.safetensors'}" in out.out
    assert (ws.home / "runs" / "fg" / "best.safetensors").is_file()
    assert jobs.list_jobs(ws) == []  # a foreground run is not a job
    assert main(["train", "--resume", "fg", "--epochs", "3"]) == 0  # the run's own settings, more epochs
    out = capsys.readouterr().out
    assert "epoch 1/3" not in out and "epoch 3/3: train loss" in out
    assert main(["train", "--resume", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: no run named 'nope' to resume")
