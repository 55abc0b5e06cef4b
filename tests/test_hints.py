"""The one "did you mean" helper: close matches, none, several, and the full unknown-choice message."""

from __future__ import annotations

import pytest

from cxrcore.hints import did_you_mean, unknown_choice

METHODS = ("cam", "crm", "gradcam", "gradcam++", "xgradcam", "scorecam")


@pytest.mark.parametrize(
    ("value", "options", "kwargs", "expected"),
    [
        ("gradcm", METHODS, {}, "; did you mean 'gradcam' or 'xgradcam' or 'gradcam++'?"),
        ("gradcm", METHODS, {"n": 1}, "; did you mean 'gradcam'?"),
        ("zzz", METHODS, {}, ""),
        ("", METHODS, {}, ""),
        ("resnet19", ("resnet18", "resnet50", "vgg16"), {}, "; did you mean 'resnet18' or 'resnet50'?"),
        ("Nodules", ("Nodule", "Opacity", "Effusion"), {}, "; did you mean 'Nodule'?"),
        ("abc", ("abd",), {"cutoff": 0.9}, ""),  # a stricter cutoff drops a match the default keeps
        ("abc", ("abd",), {}, "; did you mean 'abd'?"),
        (3, (1, 3, 30), {"n": 1}, "; did you mean '3'?"),  # non-strings are compared as text
        ("x", (), {}, ""),
    ],
)
def test_did_you_mean(value: object, options: tuple, kwargs: dict, expected: str) -> None:
    assert did_you_mean(value, options, **kwargs) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "gradcm",
            "unknown method 'gradcm'; did you mean 'gradcam' or 'xgradcam' or 'gradcam++'? valid options: ",
        ),
        ("zzz", "unknown method 'zzz'; valid options: "),
    ],
)
def test_unknown_choice_names_the_value_the_matches_and_every_option(value: str, expected: str) -> None:
    message = unknown_choice("method", value, METHODS)
    assert message == expected + ", ".join(METHODS)


def test_did_you_mean_accepts_any_iterable_of_options() -> None:
    assert did_you_mean("stak", {"stack": 1, "vote": 2}) == "; did you mean 'stack'?"
    assert did_you_mean("stak", (m for m in ("stack", "vote"))) == "; did you mean 'stack'?"
