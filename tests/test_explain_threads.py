"""One model shared by many threads: explanations equal the serial ones and leave the model as found."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from cxrcore.explain.engine import Explanation, explain
from cxrcore.models import create_model
from cxrcore.models.lock import model_lock

THREADS = 8
CALLS_PER_THREAD = 20
WAIT_S = 5.0
LABEL_SETS = (None, ["Effusion"], ["Mass", "Nodule"], [2])


def _call(model: torch.nn.Module, images: list[torch.Tensor], i: int) -> Explanation:
    """Call number ``i``: image and label set chosen by ``i``, Grad-CAM and CRM."""
    labels = LABEL_SETS[i % len(LABEL_SETS)]
    return explain(model, images[i % len(images)], labels=labels, methods=("gradcam", "crm"))


def test_shared_model_across_threads_matches_serial_results() -> None:
    torch.manual_seed(0)
    model = create_model("tiny", labels=("Effusion", "Nodule", "Mass"), input_size=32)
    model.train()  # the mode the model starts in must be the mode it ends in
    generator = torch.Generator().manual_seed(1)
    images = [torch.randn(1, 1, 32, 32, generator=generator) for _ in range(5)]
    n_calls = THREADS * CALLS_PER_THREAD
    serial = [_call(model, images, i) for i in range(len(images) * len(LABEL_SETS))]

    def work(thread: int) -> list[tuple[int, Explanation]]:
        calls = range(thread * CALLS_PER_THREAD, (thread + 1) * CALLS_PER_THREAD)
        return [(i, _call(model, images, i)) for i in calls]

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = [pair for chunk in pool.map(work, range(THREADS)) for pair in chunk]

    assert len(results) == n_calls
    for i, result in results:
        expected = serial[i % len(serial)]
        assert result.maps.keys() == expected.maps.keys()
        for key, saliency in expected.maps.items():
            assert np.allclose(result.maps[key].raw, saliency.raw)
            assert np.allclose(result.maps[key].display, saliency.display)
        assert result.probabilities == pytest.approx(expected.probabilities)
    hook_dicts = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    assert not model._forward_hooks and not model._backward_hooks
    for module in model.modules():
        for name in hook_dicts:
            assert not getattr(module, name), f"{name} left on {type(module).__name__}"
    assert all(module.training for module in model.modules())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_closed_form_maps_share_the_model_and_gradient_methods_wait_for_it() -> None:
    model = create_model("tiny", labels=("Effusion", "Nodule", "Mass"), input_size=32).eval()
    assert model.spec.pooling == "avg"  # CAM and CRM in closed form
    image = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    holding, release = threading.Event(), threading.Event()

    def another_forward_pass() -> None:  # e.g. another session's explanation, sharing the model
        with model_lock(model).shared():
            holding.set()
            release.wait(WAIT_S)

    other = threading.Thread(target=another_forward_pass, daemon=True)
    other.start()
    assert holding.wait(WAIT_S)
    done: list[str] = []
    shared = threading.Thread(target=lambda: done.append(explain(model, image).methods[0]), daemon=True)
    shared.start()
    shared.join(WAIT_S)
    assert done == ["cam"]  # ran while the other pass held the model
    hooked = threading.Thread(target=lambda: done.append(explain(model, image, methods="gradcam").methods[0]))
    hooked.start()
    hooked.join(0.3)
    assert hooked.is_alive() and done == ["cam"]  # Grad-CAM's hooks wait until the model is free
    release.set()
    hooked.join(WAIT_S)
    assert done == ["cam", "gradcam"]
