"""The per-model lock: one lock per model object, held exclusively by anything that changes the model and
shared by plain forward passes.

A model object may be shared by many threads (the dashboard caches one per checkpoint). Anything that
registers hooks, swaps layers, changes train/eval mode or copies the weights holds the model's lock
exclusively (re-entrant): ``model_guard`` does, and adds eval mode for every module, restoring each
module's previous mode after. The explanation engine and the ONNX export take it this way.

A forward pass that changes nothing (the lesion detector's boxes) only needs the model to stay as it is
while it runs: ``inference_guard`` shares the lock with other such passes, so two sessions' detections
run on two cores at once, and waits for (and holds off) any exclusive holder.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


class ModelLock:
    """Exclusive (re-entrant) for changes, shared for plain forward passes.

    ``with lock:`` takes it exclusively; ``with lock.shared():`` shares it. A thread that holds it
    exclusively may also share it (its own forward pass), and may share it again inside a shared
    section. Asking for it exclusively while sharing it would wait for ever on oneself: that raises
    ``RuntimeError``. Threads waiting to take it exclusively go before new sharers, so a stream of
    forward passes cannot keep an explanation waiting.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._sharers: Counter[int] = Counter()
        self._waiting = 0

    def acquire(self) -> None:
        """Take the lock exclusively (again, if this thread holds it)."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return
            if self._sharers[me]:
                raise RuntimeError("this thread shares the model's lock: it cannot take it exclusively")
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: self._owner is None and not self._sharers)
            finally:
                self._waiting -= 1
            self._owner, self._depth = me, 1

    def release(self) -> None:
        """Give up one exclusive hold."""
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a model's lock this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def __enter__(self) -> ModelLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the lock shared with other forward passes for the ``with`` block."""
        me = threading.get_ident()
        with self._cond:
            if self._owner != me and not self._sharers[me]:
                self._cond.wait_for(lambda: self._owner is None and not self._waiting)
            self._sharers[me] += 1
        try:
            yield
        finally:
            with self._cond:
                self._sharers[me] -= 1
                if not self._sharers[me]:
                    del self._sharers[me]
                    self._cond.notify_all()


_LOCKS: weakref.WeakKeyDictionary[nn.Module, ModelLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> ModelLock:
    """The one lock of this model object (created on first use, dropped with the model)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = ModelLock()
        return lock


@contextmanager
def model_guard(model: nn.Module) -> Iterator[None]:
    """Hold the model's lock exclusively with every module in eval mode, restoring each module's own mode
    after."""
    with model_lock(model):
        modes = [(module, module.training) for module in model.modules()]
        model.eval()
        try:
            yield
        finally:
            for module, training in modes:
                module.training = training


@contextmanager
def inference_guard(model: nn.Module) -> Iterator[None]:
    """For a forward pass that changes nothing: every module in eval mode while the block runs.

    A model already in eval mode (as the dashboard loads every model) is shared with other forward
    passes; one with any module in training mode is switched by ``model_guard``, exclusively. Modes only
    change under the exclusive lock, so the check cannot race with a change.
    """
    lock = model_lock(model)
    with lock.shared():
        in_eval = not any(module.training for module in model.modules())
        if in_eval:
            yield
            return
    with model_guard(model):
        yield
