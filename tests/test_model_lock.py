"""The model's lock: forward passes share it, changes hold it alone, and neither can interleave."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from cxrcore.models import create_model
from cxrcore.models.lock import ModelLock, inference_guard, model_guard, model_lock

WAIT_S = 5.0


def _in_thread(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_two_threads_share_the_lock_at_the_same_time() -> None:
    lock = ModelLock()
    both_inside = threading.Barrier(2, timeout=WAIT_S)  # breaks unless both are inside together

    def share() -> None:
        with lock.shared():
            both_inside.wait()

    threads = [_in_thread(share) for _ in range(2)]
    for thread in threads:
        thread.join(WAIT_S)
    assert not both_inside.broken and all(not t.is_alive() for t in threads)


def test_an_exclusive_holder_keeps_sharers_out_until_it_releases() -> None:
    lock = ModelLock()
    events: list[str] = []
    lock.acquire()
    sharer = _in_thread(lambda: (lock.shared().__enter__(), events.append("shared")))
    time.sleep(0.2)
    events.append("released")
    lock.release()
    sharer.join(WAIT_S)
    assert events == ["released", "shared"]


def test_a_waiting_exclusive_holder_goes_before_new_sharers() -> None:
    lock = ModelLock()
    events: list[str] = []
    first = lock.shared()
    first.__enter__()

    def exclusive() -> None:
        with lock:
            events.append("exclusive")

    def late_sharer() -> None:
        with lock.shared():
            events.append("late sharer")

    writer = _in_thread(exclusive)
    time.sleep(0.2)  # the writer now waits for the first sharer
    reader = _in_thread(late_sharer)
    time.sleep(0.2)
    assert events == []  # the late sharer waits behind the writer, the writer behind the first sharer
    first.__exit__(None, None, None)
    writer.join(WAIT_S)
    reader.join(WAIT_S)
    assert events == ["exclusive", "late sharer"]


def test_the_lock_is_reentrant_and_refuses_to_upgrade_a_shared_hold() -> None:
    lock = ModelLock()
    with lock, lock, lock.shared(), lock.shared():
        pass  # the holder's own forward pass, nested
    with lock.shared(), lock.shared(), pytest.raises(RuntimeError, match="cannot take it exclusively"):
        lock.acquire()
    with pytest.raises(RuntimeError, match="does not hold"):
        lock.release()
    taker = _in_thread(lock.acquire)
    taker.join(WAIT_S)
    assert not taker.is_alive()  # free again: another thread takes it


def test_model_lock_is_one_lock_per_model() -> None:
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    assert model_lock(a) is model_lock(a) and model_lock(a) is not model_lock(b)
    assert isinstance(model_lock(a), ModelLock)


def test_inference_guard_shares_an_eval_model_and_switches_a_training_one() -> None:
    model = create_model("tiny", labels=("Effusion", "Nodule"), input_size=32).eval()
    both_inside = threading.Barrier(2, timeout=WAIT_S)

    def forward() -> None:
        with inference_guard(model):
            both_inside.wait()  # two forward passes of an eval model run at once

    threads = [_in_thread(forward) for _ in range(2)]
    for thread in threads:
        thread.join(WAIT_S)
    assert not both_inside.broken

    model.train()
    next(model.children()).eval()  # modules in mixed modes, each to be restored
    modes = [m.training for m in model.modules()]
    with inference_guard(model):
        assert not any(m.training for m in model.modules())  # eval while it runs
        blocked = threading.Event()
        other = _in_thread(lambda: (model_lock(model).shared().__enter__(), blocked.set()))
        assert not blocked.wait(0.2)  # held exclusively: the mode switch is not shared
    other.join(WAIT_S)
    assert blocked.is_set()
    assert [m.training for m in model.modules()] == modes  # each module's own mode, restored


def test_model_guard_inside_a_shared_section_of_another_thread_waits() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2)).eval()
    entered = threading.Event()
    with inference_guard(model):
        guard = _in_thread(lambda: (model_guard(model).__enter__(), entered.set()))
        assert not entered.wait(0.2)  # a change waits for the forward pass to finish
    guard.join(WAIT_S)
    assert entered.is_set()
