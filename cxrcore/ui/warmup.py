"""Start-up warm-up: after the first page is drawn, load PyTorch and the default models in the background.

Pages draw without PyTorch (importing it takes about 5 s on 2 cores), so the first upload of a fresh
server would pay for it. A few seconds after the first page of the process starts drawing, one
background thread imports the modules every page imports at its top (scikit-learn and SciPy for
Evaluate and Ensembles; see ``cxrcore.ui.serve``), then PyTorch, loads the models the Explain page
opens with (the first classifier, the first lesion detector, the bundled lung segmenter) into the
caches every session shares, and runs each once on a synthetic phantom, so kernels are initialised
too. The delay keeps it off the first page's own draw; a page that needs a model sooner simply waits
for the same import.

``CXR_WARMUP_S`` sets the delay in seconds (default 3); ``off`` turns the warm-up off (the test suite
does, so that tests load only what they use).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

WARMUP_ENV = "CXR_WARMUP_S"
DEFAULT_DELAY_S = 3.0
_LOCK = threading.Lock()
_STARTED: list[threading.Timer] = []  # the one timer of this process, once scheduled


def warmup_delay() -> float | None:
    """Seconds from the first page to the warm-up, or None when ``CXR_WARMUP_S`` is ``off``."""
    value = os.environ.get(WARMUP_ENV, "").strip().lower()
    if value in ("off", "no", "false"):
        return None
    try:
        return max(0.0, float(value)) if value else DEFAULT_DELAY_S
    except ValueError:
        log.warning(
            "%s must be a number of seconds or 'off', got %r; using %s", WARMUP_ENV, value, DEFAULT_DELAY_S
        )
        return DEFAULT_DELAY_S


def schedule_warmup(home: Path) -> bool:
    """Schedule the warm-up once per process (the first call wins); whether this call scheduled it."""
    delay = warmup_delay()
    if delay is None:
        return False
    with _LOCK:
        if _STARTED:
            return False
        timer = threading.Timer(delay, warm_up, args=(home,))
        timer.daemon = True
        timer.name = "cxr-warmup"
        _STARTED.append(timer)
    timer.start()
    return True


def warm_up(home: Path) -> dict[str, float]:
    """Load and run the default models once; returns seconds per step (a failure is logged, not raised)."""
    steps: dict[str, float] = {}
    start = time.perf_counter()
    try:
        _warm(home, steps)
    except Exception:  # a warm-up must never take the server down; the page shows any real error later
        log.exception("warm-up failed after %.1f s", time.perf_counter() - start)
        return steps
    log.info("warm-up done in %.1f s: %s", time.perf_counter() - start, steps)
    return steps


def _timed(steps: dict[str, float], name: str, since: float) -> float:
    now = time.perf_counter()
    steps[name] = round(now - since, 3)
    return now


def _warm(home: Path, steps: dict[str, float]) -> None:
    """The warm-up's steps, each timed into ``steps``."""
    t = time.perf_counter()
    from cxrcore.ui.serve import preload

    preload()  # every page's modules (scikit-learn, SciPy, plotly), for the first visit of each page
    t = _timed(steps, "pages", t)
    import torch  # noqa: F401  (the import is the longest step)

    from cxrcore.explain.engine import explain
    from cxrcore.io import read_upload
    from cxrcore.models.catalog import list_checkpoints
    from cxrcore.models.detection import detect
    from cxrcore.models.guard import assess
    from cxrcore.models.segmenter import segment_lungs
    from cxrcore.models.segmenter_card import default_segmenter_path
    from cxrcore.ui.models import load_model
    from cxrcore.workflows.demo import sample_phantom_png

    t = _timed(steps, "import", t)
    entries = list_checkpoints(home)
    pixels, _ = read_upload(sample_phantom_png(0)[1])
    classifier = next((e for e in entries if e.info.get("task") == "classify"), None)
    if classifier is not None:
        loaded = load_model(classifier.path)
        explain(loaded, pixels)
        assess(loaded, pixels)
        t = _timed(steps, "classifier", t)
    detector = next((e for e in entries if e.info.get("task") == "detect"), None)
    if detector is not None:
        detect(load_model(detector.path), pixels)
        t = _timed(steps, "detector", t)
    if default_segmenter_path().exists():
        segment_lungs(pixels, default_segmenter_path())
        _timed(steps, "segmenter", t)
