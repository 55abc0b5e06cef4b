"""Turns at the CPU: at most ``slots`` sections at once, waiting ones by priority then arrival, nested
sections pass through, and a stuck holder delays others by at most ``max_wait_s``."""

from __future__ import annotations

import os
import threading
import time

import pytest

from cxrcore.ui import turns
from cxrcore.ui.turns import FIRST, LATER, TurnGate

WAIT_S = 5.0


def _wait_until(condition, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def _queue(gate: TurnGate, priority: int, name: str, order: list[str], release: threading.Event):
    """A thread that waits for a turn of ``priority``, notes ``name`` when admitted, then holds until
    ``release``."""

    def run() -> None:
        with gate.turn(priority):
            order.append(name)
            release.wait(WAIT_S)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _hold(gate: TurnGate, priority: int) -> threading.Event:
    """A thread that takes a turn of ``priority`` and holds it until the returned event is set; returns
    once it holds it."""
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with gate.turn(priority):
            inside.set()
            leave.wait(WAIT_S)

    threading.Thread(target=hold, daemon=True).start()
    assert inside.wait(WAIT_S)
    return leave


def test_waiting_sections_go_by_priority_then_arrival() -> None:
    gate = TurnGate(slots=1)
    order: list[str] = []
    release = threading.Event()
    holder_out = _hold(gate, FIRST)
    threads = []
    for priority, name in [(LATER, "later-1"), (FIRST, "first-1"), (LATER, "later-2"), (FIRST, "first-2")]:
        threads.append(_queue(gate, priority, name, order, release))
        arrived = len(threads)
        _wait_until(lambda: gate.waiting == arrived)  # noqa: B023 (they arrive in this order)
    assert gate.ahead(FIRST) == 3  # the holder and the two FIRST sections waiting
    assert gate.ahead(LATER) == 5
    release.set()
    holder_out.set()
    for thread in threads:
        thread.join(WAIT_S)
    assert order == ["first-1", "first-2", "later-1", "later-2"]
    assert gate.running == 0


def test_no_more_sections_run_than_slots() -> None:
    gate = TurnGate(slots=2)
    lock = threading.Lock()
    now, peak = [0], [0]

    def work() -> None:
        with gate.turn(FIRST):
            with lock:
                now[0] += 1
                peak[0] = max(peak[0], now[0])
            time.sleep(0.02)
            with lock:
                now[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert peak[0] == 2
    assert gate.running == 0


def test_nested_sections_pass_through_and_a_free_gate_does_not_call_on_wait() -> None:
    gate = TurnGate(slots=1)
    waits: list[int] = []
    with gate.turn(FIRST, on_wait=waits.append):
        assert gate.ahead(LATER) == 0  # this thread would pass through
        with gate.turn(LATER, on_wait=waits.append):
            assert gate.running == 1
    assert waits == []
    assert gate.running == 0


def test_on_wait_hears_how_many_are_ahead() -> None:
    gate = TurnGate(slots=1)
    leave = _hold(gate, LATER)
    waits: list[int] = []
    timer = threading.Timer(0.05, leave.set)
    timer.start()
    with gate.turn(FIRST, on_wait=waits.append):
        assert leave.is_set()  # admitted only once the holder left
    assert waits == [1]


def test_a_stuck_holder_delays_others_by_at_most_max_wait(caplog: pytest.LogCaptureFixture) -> None:
    gate = TurnGate(slots=1, max_wait_s=0.1)
    leave = _hold(gate, FIRST)
    started = time.monotonic()
    with gate.turn(FIRST):
        assert gate.running == 2
    assert 0.1 <= time.monotonic() - started < 2.0
    assert "runs anyway" in caplog.text
    leave.set()


def test_an_exception_gives_the_slot_back() -> None:
    gate = TurnGate(slots=1)
    with pytest.raises(RuntimeError), gate.turn(FIRST):
        raise RuntimeError("boom")
    assert gate.running == 0
    assert gate.ahead(FIRST) == 0


def test_slots_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(turns.SLOTS_ENV, "3")
    assert turns.default_slots() == 3
    monkeypatch.setenv(turns.SLOTS_ENV, "many")
    assert turns.default_slots() == max(1, os.cpu_count() or 1)  # the cores, and a line in the log
    monkeypatch.setenv(turns.SLOTS_ENV, "0")
    assert turns.default_slots() == 1
    with pytest.raises(ValueError, match="at least one slot"):
        TurnGate(slots=0)
