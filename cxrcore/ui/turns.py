"""Turns at the CPU for the dashboard's sessions: a room of people uploading at once is served in order,
each upload's probabilities and maps before anyone's later sections.

The server runs each session's script in a thread of its own. Six uploads arriving together used to
share the two cores evenly, so every one of them advanced slowly and all finished near the end. Here at
most ``slots`` (the CPU cores) heavy sections run at once; the rest wait in line, and a waiting
section of priority ``FIRST`` (an image's explanation, guard, probabilities and maps) goes before any
waiting ``LATER`` one (the lesion detector's boxes, the lungs' share of the heat, the extra sections,
the review of a set of several uploads). Within a priority it is first come, first served. Reading the
uploaded file itself takes no turn.

On 2 cores, six sessions uploading real X-rays at once without browsers (``bench/bench_load_server.py``,
two runs of three rounds each way): the maps were on screen after 0.44-0.45 s (median) instead of
0.74-0.76 s, p95 0.66-0.67 s instead of 0.82-0.84 s; the whole pages' p95 1.28-1.29 s instead of
1.35-1.42 s (the CPU work is the same).

A thread that holds a turn passes through any turn it asks for inside it. A section never waits longer
than ``max_wait_s`` for its turn: it then runs anyway (and says so in the log), so one stuck script can
delay the others but never stop them.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cxrcore.processes import count_from_env

log = logging.getLogger(__name__)

FIRST = 0  # an image's probabilities and maps
LATER = 1  # what is drawn below the maps: detector boxes, lung shares, ensembles, internals
SLOTS_ENV = "CXR_COMPUTE_SLOTS"
MAX_WAIT_S = 60.0


def default_slots() -> int:
    """``CXR_COMPUTE_SLOTS`` when set to a whole number >= 1, else the number of CPU cores."""
    return count_from_env(SLOTS_ENV, max(1, os.cpu_count() or 1))


class TurnGate:
    """At most ``slots`` sections at once; waiting ones admitted by priority (lower first), then in order
    of arrival. Re-entrant: a thread inside a section enters nested sections without waiting."""

    def __init__(self, slots: int, max_wait_s: float = MAX_WAIT_S) -> None:
        if slots < 1:
            raise ValueError(f"a gate needs at least one slot, got {slots}")
        self.slots = slots
        self.max_wait_s = max_wait_s
        self._cond = threading.Condition(threading.Lock())
        self._running = 0
        self._line: list[tuple[int, int]] = []  # (priority, arrival) of the waiting sections, a heap
        self._arrivals = itertools.count()
        self._held: dict[int, list[int]] = {}  # thread -> [priority of its turn, nesting depth]

    @property
    def running(self) -> int:
        """Sections running now."""
        with self._cond:
            return self._running

    @property
    def waiting(self) -> int:
        """Sections waiting for their turn."""
        with self._cond:
            return len(self._line)

    def held(self) -> int | None:
        """The priority of the turn this thread is in (None when it is in none)."""
        with self._cond:
            entry = self._held.get(threading.get_ident())
            return None if entry is None else entry[0]

    def ahead(self, priority: int) -> int:
        """How many sections a new one of ``priority`` would wait for: 0 when it would start at once, else
        those running plus those waiting that go before it."""
        with self._cond:
            if threading.get_ident() in self._held:
                return 0
            before = sum(1 for p, _ in self._line if p <= priority)
            if self._running < self.slots and not before:
                return 0
            return self._running + before

    @contextmanager
    def turn(self, priority: int = FIRST, on_wait: Callable[[int], None] | None = None) -> Iterator[None]:
        """Hold a slot for the ``with`` block; ``on_wait(ahead)`` is called once, before waiting, when the
        section cannot start at once."""
        me = threading.get_ident()
        with self._cond:
            nested = me in self._held
            if nested:
                self._held[me][1] += 1
        if nested:
            try:
                yield
            finally:
                with self._cond:
                    self._held[me][1] -= 1
            return
        ahead = self.ahead(priority)
        if ahead and on_wait is not None:
            on_wait(ahead)
        self._enter(me, priority)
        try:
            yield
        finally:
            with self._cond:
                del self._held[me]
                self._running -= 1
                self._cond.notify_all()

    def _enter(self, me: int, priority: int) -> None:
        """Wait in line for a slot (at most ``max_wait_s``) and take it."""
        ticket = (priority, next(self._arrivals))
        started = time.monotonic()
        with self._cond:
            heapq.heappush(self._line, ticket)
            admitted = self._cond.wait_for(
                lambda: self._running < self.slots and self._line[0] == ticket, timeout=self.max_wait_s
            )
            self._line.remove(ticket)
            heapq.heapify(self._line)
            self._running += 1
            self._held[me] = [priority, 1]
            self._cond.notify_all()  # the next in line may be admitted too, when a slot is free
        if not admitted:
            log.warning(
                "a section waited %.0f s for its turn (%d slots busy); it runs anyway",
                time.monotonic() - started,
                self.slots,
            )


_GATE: TurnGate | None = None
_GATE_LOCK = threading.Lock()


def gate() -> TurnGate:
    """The process's one gate, with ``default_slots()`` slots (made on first use)."""
    global _GATE
    with _GATE_LOCK:
        if _GATE is None:
            _GATE = TurnGate(default_slots())
        return _GATE
