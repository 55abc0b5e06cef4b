"""Background predictions: one low-priority worker per table, its progress, failures, and the pages' view.

The workers are real processes running a bundled demo model over the demo phantoms (about 48 test
images), so each test that waits for one takes a few seconds (mostly PyTorch's import).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from page_harness import ROOT, page, run, wait_for_background_predictions

from cxrcore.evaluate import background as bg
from cxrcore.evaluate.predict import predict
from cxrcore.models.catalog import BUNDLED_DIR
from cxrcore.store import Workspace

TINY = BUNDLED_DIR / "demo-tiny.safetensors"
DATASET, SPLIT = "demo-phantoms", "test"


def _workers(key: str) -> list[int]:
    """Pids of the live worker processes of one key."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if (
            bg.WORKER_MODULE.encode() in cmdline
            and key.encode() in cmdline
            and bg.process_alive(int(proc.name), b"")
        ):
            found.append(int(proc.name))
    return found


def _started(key: str, timeout: float = 10.0) -> list[int]:
    """``_workers(key)`` once at least one is seen: a worker just launched passes through ``chrt`` and
    ``nice`` before Python, and while a program is being replaced its command line reads empty."""
    deadline = time.monotonic() + timeout
    while not (found := _workers(key)):
        assert time.monotonic() < deadline, f"no worker of {key} seen within {timeout:g} s"
        time.sleep(0.02)
    return found


def _wait(ws: Workspace, timeout: float = 120.0) -> bg.PredictionStatus:
    """The status once the worker is no longer running."""
    deadline = time.monotonic() + timeout
    while (found := bg.status(TINY, ws, DATASET, SPLIT)).state == bg.RUNNING:
        assert time.monotonic() < deadline, f"still running after {timeout:g} s: {found}"
        time.sleep(0.2)
    return found


def _exited(key: str, timeout: float = 30.0) -> None:
    """Wait until the key's worker process has exited (it stores the table, then ends)."""
    deadline = time.monotonic() + timeout
    while _workers(key):
        assert time.monotonic() < deadline, "the worker did not exit"
        time.sleep(0.1)


def _files(ws: Workspace, key: str) -> dict[str, Path]:
    folder = ws.predictions_dir / "background"
    return {s: folder / f"{key}{s}" for s in (".claim", ".progress.json", ".log")}


def test_sessions_asking_at_once_start_one_worker_that_stores_what_predict_reads(demo_ws: Workspace) -> None:
    total = bg.split_size(demo_ws, DATASET, SPLIT)
    assert total > 0 and bg.status(TINY, demo_ws, DATASET, SPLIT).state == bg.MISSING
    results: list[bg.PredictionStatus] = []
    threads = [
        threading.Thread(target=lambda: results.append(bg.start(TINY, demo_ws, DATASET, SPLIT)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.state for r in results} == {bg.RUNNING} and len({r.key for r in results}) == 1
    key = results[0].key
    assert len(_started(key)) == 1
    assert bg.start(TINY, demo_ws, DATASET, SPLIT).state == bg.RUNNING  # asked again: still the one
    assert len(_started(key)) == 1
    done = _wait(demo_ws)
    assert done.state == bg.READY
    _exited(key)
    files = _files(demo_ws, key)
    assert json.loads(files[".progress.json"].read_text()) | {"updated_at": 0} == {
        "state": bg.READY,
        "done": total,
        "total": total,
        "error": "",
        "updated_at": 0,
    }
    assert not files[".claim"].exists()
    preds = predict(TINY, demo_ws, DATASET, SPLIT)
    assert preds.from_cache and len(preds.table) == total
    assert preds.meta["key"] == key  # the same table predict() would have made
    assert bg.start(TINY, demo_ws, DATASET, SPLIT).state == bg.READY and not _workers(key)


def test_a_claim_whose_worker_has_gone_is_taken_over(demo_ws: Workspace) -> None:
    key = bg.status(TINY, demo_ws, DATASET, SPLIT).key
    files = _files(demo_ws, key)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    files[".claim"].parent.mkdir(parents=True)
    files[".claim"].write_text(json.dumps({"pid": gone.pid, "claimed_at": time.time()}))
    bg.write_progress(files[".progress.json"], bg.RUNNING, 5, 48)
    found = bg.status(TINY, demo_ws, DATASET, SPLIT)
    assert found.state == bg.FAILED and "ended without finishing" in found.error and found.done == 5
    started = bg.start(TINY, demo_ws, DATASET, SPLIT)  # no retry needed: the worker never reported
    assert started.state == bg.RUNNING and started.done == 0
    pid = json.loads(files[".claim"].read_text())["pid"]
    assert pid != gone.pid and _started(key) == [pid]
    os.killpg(pid, signal.SIGKILL)  # killed before it finishes: reported as gone, with its log
    found = _wait(demo_ws)
    assert found.state == bg.FAILED and "ended without finishing" in found.error


def test_a_delayed_worker_waits_before_loading_pytorch(demo_ws: Workspace) -> None:
    started = bg.start(TINY, demo_ws, DATASET, SPLIT, delay_s=60)
    assert started.state == bg.RUNNING
    [pid] = _started(started.key)
    try:
        time.sleep(3)  # ample for the worker's own imports; PyTorch would take seconds more
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "libtorch" not in maps, "the worker loaded PyTorch during its delay"
        assert bg.status(TINY, demo_ws, DATASET, SPLIT).done == 0
        assert "--delay" in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    finally:
        os.killpg(pid, signal.SIGKILL)


def test_a_failed_worker_reports_its_error_and_is_started_again_only_on_retry(
    demo_ws: Workspace, tmp_path: Path
) -> None:
    from conftest import write_png

    from cxrcore.data.adapters import load_source

    root = tmp_path / "tb"
    for i, cls in enumerate(("normal", "tuberculosis") * 40):  # labels demo-tiny does not predict
        write_png(root / "test" / cls / f"{cls}{i}.png", size=(64, 64), seed=i)
    demo_ws.register_dataset("tb", "folder", {"root": str(root)}, load_source("folder", root=root))
    first = bg.start(TINY, demo_ws, "tb", SPLIT)
    assert first.state == bg.RUNNING and first.total == 80
    deadline = time.monotonic() + 120
    while (found := bg.status(TINY, demo_ws, "tb", SPLIT)).state == bg.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert found.state == bg.FAILED
    assert "none of the model's labels" in found.error and "DatasetError" in found.log_tail
    assert bg.start(TINY, demo_ws, "tb", SPLIT) == found  # not restarted in a loop
    assert not _workers(found.key)
    assert bg.start(TINY, demo_ws, "tb", SPLIT, retry=True).state == bg.RUNNING
    assert len(_started(found.key)) == 1
    wait_for_background_predictions(demo_ws.home)


def test_progress_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append((str(a), str(b))), real_replace(a, b)))
    target = tmp_path / "k.progress.json"
    bg.write_progress(target, bg.RUNNING, 3, 10)
    assert len(replaced) == 1 and replaced[0][1] == str(target) and replaced[0][0] != str(target)
    assert json.loads(target.read_text())["done"] == 3 and list(tmp_path.iterdir()) == [target]


def test_the_evaluate_page_shows_progress_then_the_charts(
    demo_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    for path in BUNDLED_DIR.glob("demo-tiny.*"):
        (bundled / path.name).symlink_to(path)
    monkeypatch.setenv("CXR_CHECKPOINTS", str(bundled))
    monkeypatch.setattr(bg, "INLINE_MAX_IMAGES", 30)  # the test split (48) runs in the background
    assert bg.split_size(demo_ws, DATASET, "valid") <= 30 < bg.split_size(demo_ws, DATASET, SPLIT)
    at = page("pages/3_Evaluate.py")
    run(at)
    bars = [p.proto.text for p in at.get("progress")]
    assert len(bars) == 1 and bars[0].startswith("Predicting demo-tiny on the test split: ")
    assert bars[0].endswith(" images") and not at.get("plotly_chart") and not at.tabs
    assert at.selectbox(key="eval_split").value == SPLIT  # the controls stay usable
    assert bg.status(TINY, demo_ws, DATASET, "valid").state == bg.READY  # the small split: in the page
    wait_for_background_predictions(demo_ws.home)
    run(at)
    assert not at.get("progress") and len(at.get("plotly_chart")) == 2  # the open tab's: ROC and PR


def test_the_pages_modules_import_without_pytorch() -> None:
    code = (
        "import sys\n"
        "import cxrcore.ui.evaluate, cxrcore.ui.lungs, cxrcore.ui.detect_eval, cxrcore.ui.page\n"
        "import cxrcore.evaluate.report, cxrcore.evaluate.lung_heat, cxrcore.evaluate.background\n"
        "heavy = [m for m in ('torch', 'timm', 'torchvision', 'cxrcore.models.checkpoint',"
        " 'cxrcore.explain.engine') if m in sys.modules]\n"
        "print('heavy:', heavy)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "heavy: []" in out.stdout
