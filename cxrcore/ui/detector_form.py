"""The Train page's lesion-detector form: a Faster or Mask R-CNN on a dataset with boxes.

Only datasets with boxes are offered. The dataset and the backbone are picked above the form, since
the classes (the dataset's box labels) and the classifier checkpoints that can start the trunk (those
of the same backbone) follow from them; everything else is set inside the form and sent on Launch.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from cxrcore.models.catalog import list_checkpoints
from cxrcore.models.detector_names import (
    DEFAULT_KIND,
    DETECTOR_BACKBONES,
    DETECTOR_INPUT_SIZE,
    DETECTOR_KINDS,
    KIND_NAMES,
    MIN_INPUT_SIZE,
    detector_name,
)
from cxrcore.store import DatasetRecord, Workspace
from cxrcore.train.config import DETECT_DEFAULTS, INIT_RANDOM, TRAIN_DEFAULTS, TrainConfig
from cxrcore.ui.page import page_link
from cxrcore.ui.train import advanced_settings, short_path, split_counts

TRAINING_NAMES = {False: "Complete (trunk and heads)", True: "Head only (the trunk stays as initialised)"}
DEFAULT_BACKBONE = "resnet18"
INPUT_HELP = (
    "Images are shrunk so that their longer side is this many pixels. 512 suits a GPU; on a CPU, "
    "256-320 px trains in reasonable time (small lesions need more pixels)."
)


@st.cache_data(show_spinner=False, max_entries=32)
def _box_labels(home: str, name: str, updated_at: float) -> list[str]:
    """A dataset's box labels; ``updated_at`` makes a re-registration miss the cache."""
    return Workspace(home).box_labels(name)


def box_datasets(ws: Workspace) -> dict[str, list[str]]:
    """Registered datasets that have boxes, with their box labels (the classes a detector can learn)."""
    found = {r.name: _box_labels(str(ws.home), r.name, r.updated_at) for r in ws.list_datasets()}
    return {name: labels for name, labels in found.items() if labels}


def classifier_inits(ws: Workspace, backbone: str) -> list[str]:
    """Classifier checkpoints whose trunk fits ``backbone``: best checkpoints of runs, then bundled ones."""
    entries = [
        e
        for e in list_checkpoints(ws.home)
        if e.info.get("task") == "classify" and e.info.get("architecture") == backbone
    ]
    runs = [e for e in entries if e.source == "workspace" and e.path.stem == "best"]
    return [str(e.path) for e in runs + [e for e in entries if e.source == "bundled"]]


def _pick_dataset(ws: Workspace, record: DatasetRecord, boxed: dict[str, list[str]]) -> DatasetRecord:
    """The dataset with boxes to train on (the sidebar's when it has boxes) and the backbone."""
    names = list(boxed)
    return ws.get_dataset(
        st.selectbox(
            "Dataset with boxes",
            names,
            index=names.index(record.name) if record.name in names else 0,
            key="train_det_dataset",
            help="Only registered datasets with boxes are listed; images without boxes are negatives.",
        )
    )


def _settings(ws: Workspace, classes: list[str], dataset: str, backbone: str) -> dict[str, Any]:
    """The detector's settings, drawn inside the form."""
    c1, c2 = st.columns([1, 2])
    kind = c1.selectbox(
        "Detector",
        DETECTOR_KINDS,
        index=DETECTOR_KINDS.index(DEFAULT_KIND),
        format_func=KIND_NAMES.__getitem__,
        key="train_det_kind",
    )
    chosen = c2.multiselect(
        "Classes (the dataset's box labels)", classes, default=classes, key=f"train_det_classes_{dataset}"
    )
    c1, c2, c3, c4 = st.columns(4)
    size = c1.number_input(
        "Input size (px)",
        MIN_INPUT_SIZE,
        2048,
        DETECTOR_INPUT_SIZE,
        32,
        help=INPUT_HELP,
        key="train_det_size",
    )
    epochs = c2.number_input("Epochs", 1, 1000, TRAIN_DEFAULTS["epochs"], key="train_det_epochs")
    batch = c3.number_input("Batch size", 1, 1024, DETECT_DEFAULTS["batch_size"], key="train_det_batch_size")
    lr = c4.number_input(
        "Learning rate", 1e-7, 10.0, DETECT_DEFAULTS["lr"], format="%.6f", step=1e-4, key="train_det_lr"
    )
    c1, c2, c3 = st.columns([2, 2, 1])
    init = c1.selectbox(
        "Backbone initialisation",
        [INIT_RANDOM, *classifier_inits(ws, backbone)],
        format_func=lambda p: "Random" if p == INIT_RANDOM else f"Classifier {short_path(p, ws)}",
        key=f"train_det_init_{backbone}",
        help=f"Random, or the trunk of a {backbone} classifier checkpoint (chest X-ray features).",
    )
    freeze = c2.radio(
        "Training", list(TRAINING_NAMES), format_func=TRAINING_NAMES.__getitem__, key="train_det_training"
    )
    augment = c3.checkbox("Augmentation", value=TRAIN_DEFAULTS["augment"], key="train_det_augment")
    return {
        "model": detector_name(kind, backbone),
        "labels": tuple(chosen),
        "input_size": int(size),
        "epochs": int(epochs),
        "batch_size": int(batch),
        "lr": float(lr),
        "init": init,
        "freeze_backbone": bool(freeze),
        "augment": augment,
    }


def detector_form(ws: Workspace, record: DatasetRecord) -> TrainConfig | None:
    """The lesion-detector form; returns the config when Launch is pressed with valid settings."""
    boxed = box_datasets(ws)
    if not boxed:
        st.info(
            "No registered dataset has boxes, and a detector learns from boxes: register one with boxes "
            "(the demo phantoms, NIH ChestX-ray14 with its box file, RSNA pneumonia, TBX11K) first."
        )
        page_link("pages/1_Dataset_Explorer.py", "Open the dataset explorer")
        return None
    left, right = st.columns(2)
    with left:
        dataset = _pick_dataset(ws, record, boxed)
    backbone = right.selectbox(
        "Backbone",
        list(DETECTOR_BACKBONES),
        index=list(DETECTOR_BACKBONES).index(DEFAULT_BACKBONE),
        format_func=lambda b: f"{DETECTOR_BACKBONES[b]} ({b})",
        key="train_det_backbone",
    )
    if split_counts(dataset) is None:
        return None
    with st.form("detector_form"):
        values = {
            **_settings(ws, boxed[dataset.name], dataset.name, backbone),
            **advanced_settings(classifier=False),
        }
        submitted = st.form_submit_button("Launch", type="primary")
    if not submitted:
        return None
    if not values["labels"]:
        st.error("Choose at least one class.")
        return None
    if values["freeze_backbone"] and values["init"] == INIT_RANDOM:
        st.error("Head only keeps the trunk as initialised: start from a classifier, or train it complete.")
        return None
    return TrainConfig(dataset=dataset.name, task="detect", **values)
