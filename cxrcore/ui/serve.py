"""Start the dashboard with the home page's modules already loaded.

``python -m cxrcore.ui.serve [streamlit options]`` is ``streamlit run Home.py [options]``, after
importing what the home page imports at its top (pandas, pydicom, the ``cxrcore`` UI modules: about
1.2 s on 2 CPU cores). Streamlit runs a page's imports only when a session first opens it, so
otherwise the first visitor of a fresh server waits for them after the browser has loaded the app.
The other pages' modules (scikit-learn and SciPy for Evaluate and Ensembles, plotly) load in the
warm-up thread (``cxrcore.ui.warmup``) once the first page is drawn, before PyTorch and the default
models. Importing them here too would delay the server's start by about 1 s; importing them in a
thread while the first browser loads the app slowed its loading by about 0.5 s (the thread and the
server's file serving share one interpreter lock). ``make run`` starts the dashboard this way;
``streamlit run Home.py`` works as before, without the head start.

The lists are read from the pages themselves (their top-level ``import`` statements), so they follow
the pages as they change. The launcher also gives PyTorch half the cores in the server's process
(``server_threads``), and every ``TRIM_INTERVAL_S`` hands the memory freed by closed sessions back to
the system (``trim_memory``).
"""

from __future__ import annotations

import ast
import ctypes
import ctypes.util
import functools
import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path

from cxrcore.processes import SERVER_THREADS_MARK, count_from_env

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
HOME_PAGE = ROOT / "Home.py"
THREADS_ENV = "CXR_SERVER_THREADS"
# Streamlit drops a closed session (its upload, pixels, maps) two minutes after its browser left; the
# arrays are freed then, but glibc keeps most of the freed memory in its heaps for reuse: after two
# rounds of six uploads the server stayed 186 MB up, 32 MB with every large block given back at once
# (which slowed each upload by about 0.2 s). Trimming every 30 s gives it back without that cost.
TRIM_INTERVAL_S = 30.0


def page_files() -> list[Path]:
    """The dashboard's page scripts, in the order the sidebar lists them: Home, then ``pages/``."""
    return [HOME_PAGE, *sorted((ROOT / "pages").glob("*.py"))]


def page_imports(path: Path) -> list[str]:
    """The modules a page script imports at its top level, in order; ``from a import b`` names ``a.b``
    too (it may be a module; ``preload`` skips names that are not)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*"]
    return list(dict.fromkeys(names))


def preload(pages: list[Path] | None = None) -> dict[str, float]:
    """Import what ``pages`` import (default: every page); returns seconds per page. A module that fails
    to import is logged and skipped: the page itself shows the error when it is opened."""
    spent: dict[str, float] = {}
    for path in pages if pages is not None else page_files():
        started = time.perf_counter()
        for name in page_imports(path):
            if name in sys.modules:
                continue
            parent, _, child = name.rpartition(".")
            if parent and parent in sys.modules and hasattr(sys.modules[parent], child):
                continue  # `from a import b` where b is a function, a class or an imported module
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if not (parent and exc.name == name):  # else `from a import b`, b not a module of a
                    log.warning("preloading %s for %s failed: %s", name, path.name, exc)
            except Exception as exc:  # a broken module must not stop the server; the page says why
                log.warning("preloading %s for %s failed: %s", name, path.name, exc)
        spent[path.name] = round(time.perf_counter() - started, 3)
    log.info("pages' modules preloaded in %.2f s: %s", sum(spent.values()), spent)
    return spent


def server_threads() -> int:
    """PyTorch's threads in the dashboard's process: ``CXR_SERVER_THREADS``, else half the CPU cores (at
    least one). The rest is left to the browser (on the presenter's own machine it shares the cores) and
    to the other sessions: on 2 cores, one thread brought an upload's probabilities and maps on screen in
    1.2 s instead of 1.4 s, and the whole page in 1.5 s instead of 2.2 s."""
    return count_from_env(THREADS_ENV, max(1, (os.cpu_count() or 2) // 2))


def limit_threads(environ: MutableMapping[str, str]) -> None:
    """Set OMP_NUM_THREADS to ``server_threads()`` in ``environ`` unless it is set already (PyTorch reads it
    when it loads, for every thread; ``torch.set_num_threads`` would not reach the script threads that
    already ran a model). The processes the dashboard starts do not inherit it
    (``cxrcore.processes.child_environment``)."""
    if "OMP_NUM_THREADS" not in environ:
        environ["OMP_NUM_THREADS"] = str(server_threads())
        environ[SERVER_THREADS_MARK] = "1"


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (looked up once)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def trim_memory() -> bool:
    """Hand the C allocator's free memory back to the system; whether any was (False without glibc)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


def start_memory_trimmer(
    interval_s: float = TRIM_INTERVAL_S, stop: threading.Event | None = None
) -> threading.Thread | None:
    """A daemon thread that calls ``trim_memory`` every ``interval_s`` seconds until ``stop`` is set
    (None without glibc)."""
    if _malloc_trim() is None:
        return None
    stopped = stop or threading.Event()

    def run() -> None:
        while not stopped.wait(interval_s):
            trim_memory()

    thread = threading.Thread(target=run, name="cxr-memory-trim", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> None:
    """``streamlit run Home.py`` with ``argv`` as its options, the home page's modules loaded first."""
    from streamlit.web import cli

    limit_threads(os.environ)
    start_memory_trimmer()
    preload([HOME_PAGE])
    sys.argv = ["streamlit", "run", str(HOME_PAGE), *(sys.argv[1:] if argv is None else argv)]
    cli.main()


if __name__ == "__main__":
    main()
