"""The Train page, driven by AppTest: it launches real training processes in a demo workspace."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import write_png
from page_harness import page, run, run_page

from cxrcore.store import Workspace
from cxrcore.train import jobs
from cxrcore.train.config import TrainConfig
from cxrcore.ui import state
from cxrcore.workflows.demo import DEMO_DATASET

PAGE = "pages/2_Train.py"


@pytest.fixture
def ws(demo_ws: Workspace) -> Workspace:
    """The demo workspace, copied fresh for each test."""
    return demo_ws


def _wait(
    ws: Workspace, job_id: int, done: Callable[[jobs.JobRecord], bool], timeout: float = 90
) -> jobs.JobRecord:
    deadline = time.monotonic() + timeout
    while not done(job := jobs.get_job(ws, job_id)):
        assert time.monotonic() < deadline, f"job {job_id} is {job.status}:\n{jobs.log_tail(ws, job_id)}"
        time.sleep(0.2)
    return job


@pytest.mark.slow  # launches two training jobs from the page and polls them
def test_launch_a_tiny_job_and_see_it_finish(ws: Workspace) -> None:
    at = run_page(PAGE)
    assert any("No training jobs yet" in i.value for i in at.info)
    assert at.multiselect(key="train_labels").value == ["Nodule", "Opacity", "Effusion"]
    at.multiselect(key="train_labels").set_value(["Nodule", "Effusion"])
    at.selectbox(key="train_model").set_value("tiny")
    at.number_input(key="train_input_size").set_value(64)
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_batch_size").set_value(8)
    at.number_input(key="train_steps").set_value(2)
    next(b for b in at.button if b.label == "Launch").click()
    run(at)
    assert [s.value for s in at.success] == ["Job 1 launched."]
    job = jobs.get_job(ws, 1)
    assert job.config["labels"] == ["Nodule", "Effusion"] and job.config["max_steps_per_epoch"] == 2
    assert job.config["model"] == "tiny" and job.config["input_size"] == 64 and job.config["epochs"] == 2
    assert any(i.value.startswith("Job 1 is running") for i in at.info)
    assert any(b.label == "Cancel job" for b in at.button)
    job = _wait(ws, 1, lambda j: not j.active)
    assert job.status == "finished", job.error
    # A reload (a new session) shows the finished job, its curves and checkpoint, from the database alone.
    at = run_page(PAGE)
    assert at.selectbox(key="train_job").value == 1
    assert [s.value for s in at.success] == [f"Job 1 finished. Best checkpoint: {job.checkpoint}"]
    assert {"Status": "finished", "Epoch": "2/2"}.items() <= {m.label: m.value for m in at.metric}.items()
    assert len(at.get("plotly_chart")) == 2
    assert at.code[0].value == job.checkpoint and Path(job.checkpoint).is_file()
    assert "job 1: epoch 2/2 train loss" in at.code[1].value  # the log tail
    assert at.dataframe[0].value["status"].tolist() == ["finished"]
    assert not any(b.label == "Cancel job" for b in at.button)
    # The finished run can seed the next one (repurposing).
    rel = Path(job.checkpoint).relative_to(ws.home)
    assert at.selectbox(key="train_init").options[:2] == ["Random", f"Repurpose workspace/{rel}"]
    at.selectbox(key="train_model").set_value("tiny")
    at.number_input(key="train_input_size").set_value(64)
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_steps").set_value(2)
    at.selectbox(key="train_init").set_value(job.checkpoint)
    at.checkbox(key="train_freeze").check()
    next(b for b in at.button if b.label == "Launch").click()
    run(at)
    assert [s.value for s in at.success] == ["Job 2 launched."]
    assert at.selectbox(key="train_job").value == 2
    second = _wait(ws, 2, lambda j: not j.active)
    assert second.status == "finished", second.error
    assert (second.config["init"], second.config["freeze_backbone"]) == (job.checkpoint, True)


@pytest.mark.slow  # kills one training job, cancels another
def test_a_dead_job_shows_failed_and_cancel_stops_a_running_one(ws: Workspace) -> None:
    cfg = TrainConfig(
        dataset=DEMO_DATASET, model="tiny", input_size=64, batch_size=8, epochs=200, max_steps_per_epoch=2
    )
    killed = jobs.submit(ws, cfg)
    os.kill(_wait(ws, killed, lambda j: j.step >= 1).pid, signal.SIGKILL)
    time.sleep(0.5)
    # The page's scheduler finds the dead process.
    at = run_page(PAGE, expect_error=f"Job {killed} failed: process ended without reporting")
    assert any(e.value.startswith(f"Job {killed} failed: process ended without reporting") for e in at.error)
    assert jobs.get_job(ws, killed).status == "failed"
    running = jobs.submit(ws, cfg.replace(run_name="to-cancel"))
    _wait(ws, running, lambda j: j.step >= 1)
    run(at)  # a job that appeared since the last redraw (here: started elsewhere) is the one shown
    assert at.selectbox(key="train_job").value == running
    assert any(i.value.startswith(f"Job {running} is running") for i in at.info)
    next(b for b in at.button if b.label == "Cancel job").click()
    run(at)
    assert jobs.get_job(ws, running).cancel_requested
    job = _wait(ws, running, lambda j: not j.active, timeout=30)
    assert job.status == "cancelled"
    run(at)
    assert any(w.value.startswith(f"Job {running} was cancelled after") for w in at.warning)
    assert set(at.dataframe[0].value["status"]) == {"failed", "cancelled"}
    at.selectbox(key="train_job").set_value(killed)  # an older job stays picked once chosen
    run(at, expect_error=f"Job {killed} failed")
    assert at.selectbox(key="train_job").value == killed
    run(at, expect_error=f"Job {killed} failed")
    assert at.selectbox(key="train_job").value == killed
    assert any(e.value.startswith(f"Job {killed} failed") for e in at.error)


def test_a_dataset_without_split_cannot_be_trained(ws: Workspace, tmp_path: Path) -> None:
    from cxrcore.data.adapters import load_source

    for i in range(3):
        write_png(tmp_path / "flat" / "normal" / f"0000000{i}_000.png", seed=i)
    ws.register_dataset("flat", "folder", {}, load_source("folder", root=str(tmp_path / "flat")))
    at = page(PAGE)
    at.session_state[state.DATASET] = "flat"
    run(at)
    assert any("flat needs a patient-level split with train and valid images" in w.value for w in at.warning)
    assert not any(b.label == "Launch" for b in at.button)
