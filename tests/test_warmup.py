"""The start-up warm-up: scheduled once per process, off when asked, and it leaves the default models
in the caches the pages read (so the first upload does not load them)."""

from __future__ import annotations

import pytest

from cxrcore.models.catalog import list_checkpoints
from cxrcore.store import Workspace
from cxrcore.ui import models as um
from cxrcore.ui import warmup


def test_the_delay_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(warmup.WARMUP_ENV, "off")
    assert warmup.warmup_delay() is None
    monkeypatch.setenv(warmup.WARMUP_ENV, "0.5")
    assert warmup.warmup_delay() == 0.5
    monkeypatch.setenv(warmup.WARMUP_ENV, "soon")
    assert warmup.warmup_delay() == warmup.DEFAULT_DELAY_S
    monkeypatch.delenv(warmup.WARMUP_ENV)
    assert warmup.warmup_delay() == warmup.DEFAULT_DELAY_S


def test_it_is_scheduled_once_per_process_and_never_when_off(
    monkeypatch: pytest.MonkeyPatch, demo_ws: Workspace
) -> None:
    ran: list[object] = []
    monkeypatch.setattr(warmup, "warm_up", ran.append)
    monkeypatch.setattr(warmup, "_STARTED", [])
    monkeypatch.setenv(warmup.WARMUP_ENV, "off")
    assert warmup.schedule_warmup(demo_ws.home) is False
    monkeypatch.setenv(warmup.WARMUP_ENV, "0")
    assert warmup.schedule_warmup(demo_ws.home) is True
    assert warmup.schedule_warmup(demo_ws.home) is False
    warmup._STARTED[0].join(timeout=10)
    assert ran == [demo_ws.home]


def test_the_warm_up_loads_the_models_the_explain_page_opens_with(
    monkeypatch: pytest.MonkeyPatch, demo_ws: Workspace
) -> None:
    um._load.clear()
    steps = warmup.warm_up(demo_ws.home)
    entries = list_checkpoints(demo_ws.home)
    assert {"pages", "import", "classifier", "detector", "segmenter"} <= set(steps)
    loads: list[str] = []
    monkeypatch.setattr("cxrcore.models.checkpoint.load_checkpoint", lambda path: loads.append(path))
    first_classifier = next(e for e in entries if e.info.get("task") == "classify")
    first_detector = next(e for e in entries if e.info.get("task") == "detect")
    assert um.load_model(first_classifier.path).path == first_classifier.path
    assert um.load_model(first_detector.path).path == first_detector.path
    assert loads == []  # both came from the shared cache the warm-up filled
