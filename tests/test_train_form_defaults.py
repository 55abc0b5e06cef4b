"""The Train form starts at TrainConfig's defaults and offers the engine's vocabularies."""

from __future__ import annotations

from page_harness import run_page

from cxrcore.store import Workspace
from cxrcore.train.config import LABEL_MODES, LOSSES, OPTIMIZERS, SCHEDULES, TRAIN_DEFAULTS


def test_the_form_starts_at_the_config_defaults(demo_ws: Workspace) -> None:
    at = run_page("pages/2_Train.py")
    widgets = {
        "train_model": ("model", at.selectbox),
        "train_loss": ("loss", at.selectbox),
        "train_optimizer": ("optimizer", at.selectbox),
        "train_schedule": ("schedule", at.selectbox),
        "train_label_mode": ("label_mode", at.radio),
        "train_augment": ("augment", at.checkbox),
        "train_freeze": ("freeze_backbone", at.checkbox),
        "train_hflip": ("hflip", at.checkbox),
        "train_clahe": ("clahe", at.checkbox),
        "train_input_size": ("input_size", at.number_input),
        "train_epochs": ("epochs", at.number_input),
        "train_batch_size": ("batch_size", at.number_input),
        "train_lr": ("lr", at.number_input),
        "train_steps": ("max_steps_per_epoch", at.number_input),
        "train_backbone_scale": ("backbone_lr_scale", at.number_input),
        "train_seed": ("seed", at.number_input),
        "train_init": ("init", at.selectbox),
    }
    for key, (setting, kind) in widgets.items():
        assert kind(key=key).value == TRAIN_DEFAULTS[setting], key
    for key, vocabulary in (
        ("train_loss", LOSSES),
        ("train_optimizer", OPTIMIZERS),
        ("train_schedule", SCHEDULES),
    ):
        assert at.selectbox(key=key).options == list(vocabulary)
    assert len(at.radio(key="train_label_mode").options) == len(LABEL_MODES)
