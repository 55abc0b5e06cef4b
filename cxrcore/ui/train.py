"""Train page widgets: the task choice, the classifier form, the jobs table, a job's live progress and log.

The lesion-detector form is in ``cxrcore.ui.detector_form``; a job's progress shows what its task
records (a detector has validation mAP@0.5 per class instead of a validation loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from cxrcore.data.index import TRAIN_SPLIT, VALID_SPLIT
from cxrcore.models.model_card import TASK_NAMES, TASKS
from cxrcore.models.readout import CALIBRATION_CHOICES, CALIBRATION_NAMES
from cxrcore.store import DatasetRecord, Workspace
from cxrcore.train import jobs
from cxrcore.train.config import (
    INIT_RANDOM,
    LABEL_MODE_NAMES,
    LABEL_MODES,
    LOSSES,
    OPTIMIZERS,
    SCHEDULES,
    TRAIN_DEFAULTS,
    TrainConfig,
)
from cxrcore.ui.charts import loss_figure, score_figure
from cxrcore.ui.page import guarded, page_link

REFRESH_S = 2.0  # the jobs section redraws this often while a job is queued or running
IDLE_REFRESH_S = 5.0  # ... and this often otherwise, to show jobs started elsewhere (CLI, other tabs)
LOG_LINES = 40
REPO_ROOT = Path(__file__).resolve().parents[2]
JOB_WIDGET = "train_job"  # the job shown in the progress panel
TASK_WIDGET = "train_task"
_NEWEST_SEEN = "train_newest_job"  # newest job id this session has shown; a newer one gets picked


def available_models(task: str = "classify") -> list[str]:
    """Registered model names of a task; empty when the model registry cannot be imported."""
    try:
        from cxrcore.models import list_models
    except ImportError:
        return []
    return list(list_models(task=task))


def task_choice() -> str:
    """What to train: a classifier or a lesion detector (the form below shows that task's settings)."""
    return str(
        st.radio(
            "Task",
            TASKS,
            index=TASKS.index(TRAIN_DEFAULTS["task"]),
            format_func=TASK_NAMES.__getitem__,
            horizontal=True,
            key=TASK_WIDGET,
            help="A classifier gives each label a probability; a lesion detector draws scored boxes and "
            "learns from a dataset's boxes.",
        )
    )


def repurpose_checkpoints(ws: Workspace) -> list[str]:
    """Checkpoints a run can start from: best checkpoints of workspace runs, then the bundled ones."""
    from cxrcore.models.catalog import list_checkpoints

    entries = list_checkpoints(ws.home)
    runs = [e for e in entries if e.source == "workspace" and e.path.stem == "best"]
    return [str(e.path) for e in runs + [e for e in entries if e.source == "bundled"]]


def short_path(path: str, ws: Workspace) -> str:
    """A checkpoint path shown relative to the workspace or the repository when it lies inside one."""
    for root, name in ((ws.home, "workspace"), (REPO_ROOT, "")):
        try:
            return str(Path(name) / Path(path).relative_to(root))
        except ValueError:
            continue
    return path


def _default_index(options: Sequence[str], setting: str) -> int:
    """Where a setting's TrainConfig default sits among a widget's options (the first when absent)."""
    default = TRAIN_DEFAULTS[setting]
    return list(options).index(default) if default in options else 0


def _settings(record: DatasetRecord, models: list[str], ws: Workspace) -> dict[str, Any]:
    """The main training settings, drawn inside the form."""
    c1, c2 = st.columns([2, 1])
    labels = c1.multiselect("Labels", record.labels, default=record.labels, key="train_labels")
    label_mode = c2.radio(
        "Label mode",
        LABEL_MODES,
        index=_default_index(LABEL_MODES, "label_mode"),
        format_func=LABEL_MODE_NAMES.get,
        key="train_label_mode",
    )
    c1, c2, c3 = st.columns(3)
    model = c1.selectbox("Model", models, index=_default_index(models, "model"), key="train_model")
    loss = c2.selectbox("Loss", LOSSES, index=_default_index(LOSSES, "loss"), key="train_loss")
    augment = c3.checkbox("Augmentation", value=TRAIN_DEFAULTS["augment"], key="train_augment")
    c1, c2, c3, c4 = st.columns(4)
    input_size = c1.number_input("Input size (px; 0 = model default)", 0, 1024, 0, 32, key="train_input_size")
    epochs = c2.number_input("Epochs", 1, 1000, TRAIN_DEFAULTS["epochs"], key="train_epochs")
    batch_size = c3.number_input("Batch size", 1, 4096, TRAIN_DEFAULTS["batch_size"], key="train_batch_size")
    lr = c4.number_input(
        "Learning rate", 1e-7, 10.0, TRAIN_DEFAULTS["lr"], format="%.6f", step=1e-4, key="train_lr"
    )
    init = st.selectbox(
        "Initialisation",
        [INIT_RANDOM, *repurpose_checkpoints(ws)],
        format_func=lambda p: "Random" if p == INIT_RANDOM else f"Repurpose {short_path(p, ws)}",
        key="train_init",
    )
    return {
        "labels": tuple(labels),
        "label_mode": label_mode,
        "model": model,
        "loss": loss,
        "augment": augment,
        "input_size": int(input_size),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "init": init,
    }


def advanced_settings(classifier: bool = True) -> dict[str, Any]:
    """Less common settings, drawn in an expander inside a form.

    ``classifier=False`` (the detector form) leaves out the freeze box, which that form asks elsewhere,
    and the calibration, which applies to classifiers only.
    """
    with st.expander("Advanced"):
        c1, c2, c3 = st.columns(3)
        steps = c1.number_input(
            "Steps per epoch (0 = all)",
            0,
            1_000_000,
            TRAIN_DEFAULTS["max_steps_per_epoch"],
            key="train_steps",
        )
        freeze = TRAIN_DEFAULTS["freeze_backbone"]
        if classifier:
            freeze = c2.checkbox("Freeze backbone (repurposing)", value=freeze, key="train_freeze")
        scale = c3.number_input(
            "Backbone LR scale",
            0.0,
            1.0,
            TRAIN_DEFAULTS["backbone_lr_scale"],
            0.1,
            key="train_backbone_scale",
        )
        c1, c2, c3 = st.columns(3)
        optimizer = c1.selectbox(
            "Optimizer", OPTIMIZERS, index=_default_index(OPTIMIZERS, "optimizer"), key="train_optimizer"
        )
        schedule = c2.selectbox(
            "Schedule", SCHEDULES, index=_default_index(SCHEDULES, "schedule"), key="train_schedule"
        )
        seed = c3.number_input("Seed", 0, 2**31 - 1, TRAIN_DEFAULTS["seed"], key="train_seed")
        c1, c2, c3 = st.columns(3)
        hflip = c1.checkbox(
            "Horizontal flips",
            value=TRAIN_DEFAULTS["hflip"],
            help="off by default: the heart is on the left",
            key="train_hflip",
        )
        clahe = c2.checkbox("CLAHE contrast", value=TRAIN_DEFAULTS["clahe"], key="train_clahe")
        run_name = c3.text_input(
            "Run name (blank: automatic)", value=TRAIN_DEFAULTS["run_name"], key="train_run_name"
        )
        calibrate = TRAIN_DEFAULTS["calibrate"]
        if classifier:
            calibrate = st.selectbox(
                "Calibration (fitted on validation when training ends, with per-label thresholds)",
                CALIBRATION_CHOICES,
                index=_default_index(CALIBRATION_CHOICES, "calibrate"),
                format_func=CALIBRATION_NAMES.get,
                key="train_calibrate",
            )
    chosen = {
        "max_steps_per_epoch": int(steps),
        "freeze_backbone": freeze,
        "backbone_lr_scale": float(scale),
        "optimizer": optimizer,
        "schedule": schedule,
        "seed": int(seed),
        "hflip": hflip,
        "clahe": clahe,
        "run_name": run_name.strip(),
        "calibrate": calibrate,
    }
    if not classifier:
        del chosen["freeze_backbone"], chosen["calibrate"]
    return chosen


def split_counts(record: DatasetRecord) -> dict[str, int] | None:
    """Images per split of a dataset that can be trained on; None, with a warning, without train / valid."""
    counts = (record.split or {}).get("counts", {})
    if not counts.get(TRAIN_SPLIT) or not counts.get(VALID_SPLIT):
        st.warning(f"{record.name} needs a patient-level split with train and valid images: build one first.")
        page_link("pages/1_Dataset_Explorer.py", "Open the dataset explorer")
        return None
    st.caption(
        f"Trains on the {TRAIN_SPLIT} split ({counts[TRAIN_SPLIT]:,} images), "
        f"validates on {VALID_SPLIT} ({counts[VALID_SPLIT]:,})."
    )
    return counts


def train_form(ws: Workspace, record: DatasetRecord) -> TrainConfig | None:
    """The training form for a dataset; returns the config when Launch is pressed with valid settings."""
    if split_counts(record) is None:
        return None
    models = available_models()
    if not models:
        st.warning("No models are registered, so nothing can be trained.")
        return None
    with st.form("train_form"):
        values = {**_settings(record, models, ws), **advanced_settings()}
        submitted = st.form_submit_button("Launch", type="primary")
    if not submitted:
        return None
    if not values["labels"]:
        st.error("Choose at least one label.")
        return None
    return TrainConfig(dataset=record.name, **values)


def jobs_table(records: list[jobs.JobRecord]) -> None:
    """Every job, newest first; with a task and a validation mAP@0.5 column once a detector job is listed."""
    frame = pd.DataFrame([j.summary() for j in records])
    if any(job_task(j) == "detect" for j in records):
        frame.insert(2, "task", [job_task(j) for j in records])
        maps = [(j.metrics or {}).get("val_map50") if job_task(j) == "detect" else None for j in records]
        frame.insert(frame.columns.get_loc("val_auroc") + 1, "val_map50", maps)
    st.dataframe(frame, hide_index=True, key="jobs_table")


def pick_job(records: list[jobs.JobRecord]) -> int:
    """The job to follow: one new since the last redraw, else the last picked, else the running one.

    With none of those, the newest job is picked.
    """
    ids = [j.id for j in records]
    newest_seen = st.session_state.get(_NEWEST_SEEN, ids[0])
    if ids[0] > newest_seen:
        st.session_state[JOB_WIDGET] = ids[0]
    elif st.session_state.get(JOB_WIDGET) not in ids:
        running = [j.id for j in records if j.status == "running"]
        st.session_state[JOB_WIDGET] = running[0] if running else ids[0]
    st.session_state[_NEWEST_SEEN] = ids[0]
    names = {
        j.id: f"Job {j.id} · {j.status} · {j.config.get('model')} on {j.config.get('dataset')}"
        for j in records
    }
    return int(st.selectbox("Job", ids, format_func=names.get, key=JOB_WIDGET))


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _status_line(job: jobs.JobRecord) -> None:
    """What the job is doing, or how it ended, in one message."""
    if job.status == "queued":
        st.info(f"Job {job.id} is queued: it starts when the running job ends (one job at a time).")
    elif job.status == "running":
        note = " Cancel requested: it stops after its current step." if job.cancel_requested else ""
        st.info(f"Job {job.id} is running.{note}")
    elif job.status == "finished":
        st.success(f"Job {job.id} finished. Best checkpoint: {job.checkpoint}")
        page_link("pages/6_Models.py", "Open the checkpoint on the Models page")
    elif job.status == "cancelled":
        st.warning(f"Job {job.id} was cancelled after {len(job.history)} epoch(s). {job.error or ''}".strip())
    else:
        first = (job.error or "failed without a message").splitlines()[0]
        st.error(f"Job {job.id} failed: {first}")


# Per task, the validation scores a job's records hold: key, per-label key, words, chance level.
_SCORES: dict[str, tuple[tuple[str, str, str, float | None], ...]] = {
    "classify": (("val_auroc", "val_auroc_per_label", "Val AUROC", 0.5),),
    "detect": (
        ("val_map50", "val_ap50_per_label", "Val mAP@0.5", None),
        ("val_auroc", "val_auroc_per_label", "Val image AUROC", 0.5),
    ),
}


def job_task(job: jobs.JobRecord) -> str:
    """The job's task ("classify" for runs configured before detectors existed)."""
    return str(job.config.get("task") or "classify")


def _progress(job: jobs.JobRecord) -> None:
    """Metrics, progress bar and the loss and validation-score curves of a job (per its task)."""
    scores = _SCORES.get(job_task(job), _SCORES["classify"])
    cols = st.columns(4 + len(scores))
    cols[0].metric("Status", job.status)
    cols[1].metric("Epoch", f"{job.epoch}/{job.total_epochs}" if job.total_epochs else "–")
    cols[2].metric("Loss", _fmt(job.loss))
    for column, (key, _, words, _) in zip(cols[3:-1], scores, strict=True):
        column.metric(words, _fmt((job.metrics or {}).get(key), 3))
    cols[-1].metric(
        "ETA", jobs.format_eta(job.eta_s) if job.status == "running" and job.eta_s is not None else "–"
    )
    if job.active:
        step = f"step {job.step}/{job.steps_per_epoch}" if job.steps_per_epoch else "starting"
        st.progress(job.progress, text=f"epoch {job.epoch}/{job.total_epochs or '?'}, {step}")
    if job.history:
        columns = st.columns(1 + len(scores))
        columns[0].plotly_chart(loss_figure(job.history), key=f"loss_{job.id}")
        for column, (key, per_label, words, chance) in zip(columns[1:], scores, strict=True):
            title = words.replace("Val", "Validation")
            figure = score_figure(job.history, key, per_label, title, chance)
            column.plotly_chart(figure, key=f"{key}_{job.id}")


def job_panel(ws: Workspace, job: jobs.JobRecord) -> None:
    """One job: status, progress, curves, log tail and cancel."""
    _status_line(job)
    if job.active and not job.cancel_requested and st.button("Cancel job", key=f"cancel_{job.id}"):
        jobs.cancel(ws, job.id)
        st.rerun()
    _progress(job)
    if job.checkpoint:
        st.code(job.checkpoint, language=None)
    st.caption(f"Log ({job.log_path}), last {LOG_LINES} lines")
    st.code(jobs.log_tail(ws, job.id, LOG_LINES) or "(no output yet)", language=None)
    with st.expander("Settings"):
        st.json(job.config)


def _jobs_section(ws: Workspace, busy_when_drawn: bool) -> None:
    with guarded("show the jobs"):
        jobs.schedule(ws)  # whenever someone looks: dead processes are found and queued jobs start
        records = jobs.list_jobs(ws)
        if any(j.active for j in records) != busy_when_drawn:
            st.rerun()  # the whole page, so that the redraw interval follows
        if not records:
            st.info("No training jobs yet.")
            return
        jobs_table(records)
        job_id = pick_job(records)
        job_panel(ws, next(j for j in records if j.id == job_id))


def jobs_section(ws: Workspace) -> None:
    """The jobs table and the picked job's panel, redrawn on a timer without reloading the page."""
    jobs.schedule(ws)
    busy = any(j.active for j in jobs.list_jobs(ws))
    section = st.fragment(_jobs_section, run_every=REFRESH_S if busy else IDLE_REFRESH_S)
    section(ws, busy)
