"""The dashboard's launcher (``python -m cxrcore.ui.serve``): the home page's modules load before the
server starts, read from the pages' own import statements."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cxrcore.processes import SERVER_THREADS_MARK, child_environment, start_detached
from cxrcore.ui import serve

ROOT = Path(__file__).resolve().parents[1]


def _last_line(code: str) -> str:
    """The last line ``code`` prints, run in a fresh interpreter (nothing imported yet)."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def test_the_pages_are_home_then_the_pages_folder_in_order() -> None:
    pages = serve.page_files()
    assert pages[0] == ROOT / "Home.py"
    assert [p.name for p in pages[1:]] == sorted(p.name for p in (ROOT / "pages").glob("*.py"))
    assert len(pages) == 7


def test_a_pages_imports_are_read_from_its_top_level_statements(tmp_path: Path) -> None:
    script = tmp_path / "page.py"
    script.write_text(
        "from __future__ import annotations\n"
        "import json, os.path as osp\n"
        "from cxrcore.ui import home, state\n"
        "from cxrcore.ui.page import setup_page\n"
        "from . import nothing\n"
        "def later():\n"
        "    import torch\n"
    )
    assert serve.page_imports(script) == [
        "json",
        "os.path",
        "cxrcore.ui",
        "cxrcore.ui.home",
        "cxrcore.ui.state",
        "cxrcore.ui.page",
        "cxrcore.ui.page.setup_page",
    ]


def test_preloading_a_page_with_a_missing_module_logs_it_and_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = tmp_path / "page.py"
    script.write_text("import cxrcore_no_such_module\nfrom cxrcore.ui.page import setup_page\n")
    with caplog.at_level(logging.WARNING, logger="cxrcore.ui.serve"):
        spent = serve.preload([script])
    assert set(spent) == {"page.py"}
    assert "cxrcore_no_such_module" in caplog.text and "setup_page" not in caplog.text


def test_the_home_page_preload_loads_its_modules_but_not_pytorch() -> None:
    probe = (
        "import sys\n"
        "from cxrcore.ui.serve import HOME_PAGE, preload\n"
        "preload([HOME_PAGE])\n"
        "print(sorted(m for m in ('cxrcore.ui.home', 'cxrcore.train.jobs', 'pandas', 'torch', 'sklearn')"
        " if m in sys.modules))\n"
    )
    assert _last_line(probe) == "['cxrcore.train.jobs', 'cxrcore.ui.home', 'pandas']"


def test_the_server_gives_pytorch_half_the_cores_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(serve.THREADS_ENV, raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert serve.server_threads() == 4
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert serve.server_threads() == 1
    monkeypatch.setenv(serve.THREADS_ENV, "3")
    assert serve.server_threads() == 3
    monkeypatch.setenv(serve.THREADS_ENV, "many")
    assert serve.server_threads() == 1  # a bad value: half the cores, with a warning


def test_the_thread_limit_is_the_servers_own_and_not_passed_to_its_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.delenv(serve.THREADS_ENV, raising=False)
    environ = {"PATH": "/usr/bin"}
    serve.limit_threads(environ)
    assert environ == {"PATH": "/usr/bin", "OMP_NUM_THREADS": "1", SERVER_THREADS_MARK: "1"}
    chosen = {"OMP_NUM_THREADS": "2"}
    serve.limit_threads(chosen)  # a value set by the person starting the server stays, and is passed on
    assert chosen == {"OMP_NUM_THREADS": "2"} and child_environment(chosen) == chosen
    log = tmp_path / "child.log"
    probe = f"import os; print(os.environ.get('OMP_NUM_THREADS'), os.environ.get({SERVER_THREADS_MARK!r}))"
    start_detached([sys.executable, "-c", probe], log, tmp_path, environ).wait(timeout=60)
    assert log.read_text().strip() == "None None"


def test_every_pages_modules_load_without_pytorch_scikit_learn_or_scipy() -> None:
    """What the pages import at their top: Evaluate and Ensembles load scikit-learn and SciPy only when
    they compute a metric, so their first draw while the predictions run in the background is quick."""
    probe = (
        "import sys\n"
        "from cxrcore.ui.serve import preload\n"
        "spent = preload()\n"
        "print(len(spent), sorted(m for m in ('torch', 'timm', 'torchvision', 'sklearn', 'scipy')"
        " if m in sys.modules))\n"
    )
    assert _last_line(probe) == "7 []"


def test_trim_memory_hands_freed_heap_memory_back_to_the_system() -> None:
    # 200 MB in blocks under glibc's mmap threshold (so they come from the heap), all freed but the last,
    # which keeps the heap from shrinking by itself: the memory stays resident until it is trimmed.
    code = (
        "import numpy as np\n"
        "from cxrcore.ui.serve import trim_memory\n"
        "def rss():\n"
        "    line = next(l for l in open('/proc/self/status') if l.startswith('VmRSS'))\n"
        "    return int(line.split()[1]) // 1024\n"
        "blocks = [np.ones(12_000) for _ in range(2_000)]\n"
        "last = blocks[-1]\n"
        "del blocks\n"
        "held = rss()\n"
        "trimmed = trim_memory()\n"
        "print(held - rss(), trimmed)\n"
    )
    if serve._malloc_trim() is None:
        pytest.skip("no glibc malloc_trim here")
    freed_mb, trimmed = _last_line(code).split()
    assert trimmed == "True" and int(freed_mb) > 100


def test_the_memory_trimmer_calls_trim_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    if serve._malloc_trim() is None:
        pytest.skip("no glibc malloc_trim here")
    calls: list[float] = []
    monkeypatch.setattr(serve, "trim_memory", lambda: calls.append(1.0) or True)
    stop = threading.Event()
    thread = serve.start_memory_trimmer(0.05, stop)
    assert thread is not None and thread.daemon and thread.name == "cxr-memory-trim"
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(5)
    assert len(calls) >= 3 and not thread.is_alive()
