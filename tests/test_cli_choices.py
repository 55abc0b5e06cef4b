"""The CLI's choices= are the engine's vocabularies themselves, so a list retyped in the CLI fails here."""

from __future__ import annotations

import argparse

import pytest

from cxrcore.cli import build_parser
from cxrcore.data.index import SPLIT_CHOICES, SPLITS, TEST_SPLIT
from cxrcore.data.jsrt import JSRT_SPLITS
from cxrcore.data.split import DEFAULT_FRACTIONS, parse_fractions
from cxrcore.evaluate.classification import DEFAULT_THRESHOLD_RULE, N_BOOT, THRESHOLD_RULES
from cxrcore.evaluate.ensemble import METHODS
from cxrcore.evaluate.operating_points import DEFAULT_RULE, STORED_RULES
from cxrcore.labels import UNCERTAINTY_POLICIES
from cxrcore.models.model_card import TASKS
from cxrcore.models.readout import AUTO_METHOD, CALIBRATION_CHOICES
from cxrcore.models.segmenter_card import DICE_BOOTSTRAP, LUNG_HEAT_MAX_IMAGES
from cxrcore.preprocess import FIT_MODES
from cxrcore.train.config import AMP_MODES, LABEL_MODES, LOSSES, OPTIMIZERS, SCHEDULES


def _commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every (sub)command's parser, keyed by its words (("data", "register"), ("train",), ...)."""
    found = {prefix: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_commands(sub, (*prefix, name)))
    return found


COMMANDS = _commands(build_parser())


def _option(command: tuple[str, ...], flag: str) -> argparse.Action:
    return next(a for a in COMMANDS[command]._actions if flag in a.option_strings)


@pytest.mark.parametrize(
    ("command", "flag", "vocabulary"),
    [
        (("predict",), "--split", SPLIT_CHOICES),
        (("evaluate",), "--split", SPLIT_CHOICES),
        (("ensemble",), "--split", SPLIT_CHOICES),
        (("evaluate",), "--threshold", THRESHOLD_RULES),
        (("ensemble",), "--threshold", THRESHOLD_RULES),
        (("data", "register"), "--uncertainty", UNCERTAINTY_POLICIES),
        (("train",), "--label-mode", LABEL_MODES),
        (("train",), "--loss", LOSSES),
        (("train",), "--optimizer", OPTIMIZERS),
        (("train",), "--schedule", SCHEDULES),
        (("train",), "--amp", AMP_MODES),
        (("train",), "--fit", FIT_MODES),
        (("train",), "--task", TASKS),
        (("train",), "--calibrate", CALIBRATION_CHOICES),
        (("checkpoint", "calibrate"), "--method", CALIBRATION_CHOICES),
        (("checkpoint", "calibrate"), "--threshold", STORED_RULES),
        (("segmenter", "evaluate"), "--split", JSRT_SPLITS),
        (("segmenter", "heat"), "--split", SPLIT_CHOICES),
    ],
)
def test_choices_are_the_engine_constants(command: tuple[str, ...], flag: str, vocabulary: tuple) -> None:
    choices = _option(command, flag).choices
    assert choices == vocabulary
    assert choices is vocabulary, (
        f"{' '.join(command)} {flag} retypes its choices instead of using the engine's"
    )


@pytest.mark.parametrize(
    ("command", "flag", "default"),
    [
        (("predict",), "--split", TEST_SPLIT),
        (("evaluate",), "--split", TEST_SPLIT),
        (("evaluate",), "--threshold", DEFAULT_THRESHOLD_RULE),
        (("evaluate",), "--bootstrap", N_BOOT),
        (("ensemble",), "--bootstrap", N_BOOT),
        (("ensemble",), "--methods", ",".join(METHODS)),
        (("checkpoint", "calibrate"), "--method", AUTO_METHOD),
        (("checkpoint", "calibrate"), "--threshold", DEFAULT_RULE),
        (("segmenter", "evaluate"), "--bootstrap", DICE_BOOTSTRAP),
        (("segmenter", "heat"), "--split", TEST_SPLIT),
        (("segmenter", "heat"), "--max-images", LUNG_HEAT_MAX_IMAGES),
    ],
)
def test_defaults_are_the_engine_defaults(command: tuple[str, ...], flag: str, default: object) -> None:
    assert _option(command, flag).default == default


@pytest.mark.parametrize("command", [("data", "split"), ("data", "merge")])
def test_split_fractions_default_to_the_engine_fractions(command: tuple[str, ...]) -> None:
    option = _option(command, "--fractions")
    assert parse_fractions(option.default) == DEFAULT_FRACTIONS
    assert ",".join(SPLITS) in option.help


def test_every_option_with_choices_is_checked_here() -> None:
    """A new option with a fixed vocabulary must be added to the table above."""
    checked = {
        ("predict", "--split"), ("evaluate", "--split"), ("ensemble", "--split"), ("evaluate", "--threshold"),
        ("ensemble", "--threshold"), ("data register", "--uncertainty"), ("train", "--label-mode"),
        ("train", "--loss"), ("train", "--optimizer"), ("train", "--schedule"), ("train", "--amp"),
        ("train", "--fit"), ("train", "--task"), ("train", "--calibrate"),
        ("checkpoint calibrate", "--method"), ("checkpoint calibrate", "--threshold"),
        ("segmenter evaluate", "--split"), ("segmenter heat", "--split"),
    }  # fmt: skip
    with_choices = {
        (" ".join(command), action.option_strings[0])
        for command, parser in COMMANDS.items()
        for action in parser._actions
        if action.choices is not None and action.option_strings
    }
    assert with_choices - {("data register", "--source")} == checked


def test_sources_are_the_adapter_registry() -> None:
    from cxrcore.data.adapters import ADAPTERS

    assert _option(("data", "register"), "--source").choices == sorted(ADAPTERS)
