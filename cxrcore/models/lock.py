"""The per-model lock: one re-entrant lock per model object, and a guard that also holds it in eval mode.

A model object may be shared by many threads (the dashboard caches one per checkpoint). Anything that
registers hooks, swaps layers, changes train/eval mode or copies the weights runs under the model's
own lock; ``model_guard`` adds eval mode for every module and restores each module's previous mode
after. The explanation engine, the upload guard and the ONNX export all take this one lock.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The one re-entrant lock of this model object (created on first use, dropped with the model)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextmanager
def model_guard(model: nn.Module) -> Iterator[None]:
    """Hold the model's lock with every module in eval mode, restoring each module's own mode after."""
    with model_lock(model):
        modes = [(module, module.training) for module in model.modules()]
        model.eval()
        try:
            yield
        finally:
            for module, training in modes:
                module.training = training
