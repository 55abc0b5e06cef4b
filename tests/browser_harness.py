"""A real dashboard server and a real headless Chromium (Debian's), for the browser test and benchmark.

Nothing is downloaded: Playwright drives ``/usr/bin/chromium``; callers skip when it is absent.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CXR_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PAGES = {
    "home": "",
    "explorer": "Dataset_Explorer",
    "train": "Train",
    "evaluate": "Evaluate",
    "ensembles": "Ensembles",
    "explain": "Explain",
    "models": "Models",
}


def browser_missing() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    if not CHROMIUM.exists():
        return f"Chromium not found at {CHROMIUM} (Debian packages chromium and chromium-driver)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (make test installs requirements-dev.txt)"
    return None


def free_port() -> int:
    """A TCP port on this machine that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dashboard(home: Path, timeout: float = 60.0) -> Iterator[tuple[str, float]]:
    """Start ``streamlit run Home.py`` on a free port; yields (base URL, seconds to healthy)."""
    with dashboard_process(home, timeout) as (url, healthy_s, _):
        yield url, healthy_s


@contextmanager
def dashboard_process(home: Path, timeout: float = 60.0) -> Iterator[tuple[str, float, subprocess.Popen]]:
    """``dashboard``, also yielding the server process (for its memory).

    The server's output goes to a file, not a pipe: an unread pipe fills up and stalls the server.
    """
    port = free_port()
    env = {"MALLOC_ARENA_MAX": "2", **os.environ, "CXR_HOME": str(home)}  # as `make run` starts it
    log_file = tempfile.TemporaryFile()  # noqa: SIM115 (closed when the server stops)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cxrcore.ui.serve",  # as `make run` starts it: streamlit run Home.py, its modules loaded first
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
        ],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.perf_counter() - started > timeout:
                log_file.seek(0)
                out = log_file.read().decode(errors="replace")
                raise RuntimeError(f"the dashboard did not start:\n{out[-2000:]}")
            time.sleep(0.2)
        yield url, time.perf_counter() - started, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log_file.close()


@contextmanager
def chromium_page(width: int = 1400, height: int = 2400) -> Iterator[object]:
    """A page of a fresh headless Chromium (tall, because the app scrolls inside its main area)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def wait_until_idle(page: object, timeout_ms: float = 90_000) -> None:
    """Wait until the app has drawn something and has not been running its script for a moment."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    idle = """() => {
        const app = document.querySelector('[data-testid="stApp"]');
        const main = document.querySelector('[data-testid="stMain"]');
        const state = app && app.getAttribute("data-test-script-state");
        return main && main.innerText.trim().length > 0 && state === "notRunning";
    }"""
    for _ in range(2):  # twice, a moment apart: a rerun can start just after the first check
        page.wait_for_function(idle, timeout=timeout_ms)
        page.wait_for_timeout(700)
    page.wait_for_function(idle, timeout=timeout_ms)


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it (Linux /proc)."""
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        try:
            todo += [int(c) for c in Path(f"/proc/{current}/task/{current}/children").read_text().split()]
        except OSError:
            continue
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB (Linux /proc)."""
    total = 0
    for current in descendants(pid):
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total / 1024


def errors_on(page: object) -> list[str]:
    """Texts of exceptions and error boxes on the page."""
    found = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]')
    return [found.nth(i).inner_text() for i in range(found.count())]


# When the script has finished and the page shows its title: the page's first draw.
_DRAWN = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    const main = document.querySelector('[data-testid="stMain"]');
    return app !== null && main !== null && main.querySelector("h1") !== null
        && app.getAttribute("data-test-script-state") === "notRunning";
}"""
# An Explain result on screen: the panel's download button is drawn after the probabilities and the
# maps, and the script has finished (so the sections below it are drawn too).
_EXPLAINED = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute("data-test-script-state") !== "notRunning") return false;
    const buttons = [...document.querySelectorAll('[data-testid="stDownloadButton"]')];
    return buttons.some(b => b.innerText.includes("Download the panel"))
        && document.querySelectorAll('[data-testid="stImage"] img').length >= 3;
}"""
# The probabilities and the maps on screen (what a user waits for; the lesion detector's boxes and the
# lung section follow): the readings table and a label's row of CAM and CRM of this run, its picture loaded.
_MAPS_SHOWN = """() => {
    const fresh = el => !el.closest('[data-stale="true"]');
    const tables = [...document.querySelectorAll('[data-testid="stHtml"] table')].filter(fresh);
    const maps = [...document.querySelectorAll('[data-testid="stImage"]')].filter(fresh)
        .filter(i => /CAM.*CRM/.test(i.innerText || ""));
    const loaded = maps.every(i => {
        const img = i.querySelector("img");
        return img && img.complete && img.naturalWidth > 0;
    });
    return tables.length > 0 && maps.length >= 1 && loaded;
}"""
# The images' sources: a redrawn map gets a new media URL.
_IMAGE_SOURCES = """() => [...document.querySelectorAll('[data-testid="stImage"] img')]
    .map(i => i.src).join("|")"""
_REDRAWN = """(before) => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute("data-test-script-state") !== "notRunning") return false;
    const now = [...document.querySelectorAll('[data-testid="stImage"] img')].map(i => i.src).join("|");
    return now !== before && now.length > 0;
}"""
# The page as a person sees it before acting: every table drawn (its canvas), every picture loaded.
_SETTLED = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute("data-test-script-state") !== "notRunning") return false;
    const tables = [...document.querySelectorAll('[data-testid="stDataFrame"]')];
    const images = [...document.querySelectorAll('[data-testid="stImage"] img')];
    return tables.every(t => t.querySelector("canvas") !== null)
        && images.every(i => i.complete && i.naturalWidth > 0);
}"""
POLL_MS = 25


def time_first_draw(page: object, url: str, timeout_ms: float = 90_000, poll_ms: int = POLL_MS) -> float:
    """Open ``url`` and return the seconds until its title is drawn and its script has finished (checked
    in the page every ``poll_ms``)."""
    started = time.perf_counter()
    page.goto(url, wait_until="commit")  # the app draws over its websocket, after the document loads
    page.wait_for_function(_DRAWN, polling=poll_ms, timeout=timeout_ms)
    return time.perf_counter() - started


def wait_settled(page: object, timeout_ms: float = 60_000, poll_ms: int = POLL_MS) -> None:
    """Wait until the drawn page is fully on screen (tables drawn, pictures loaded): what a person sees
    before picking a file, so an upload's time does not include the rest of the page's own drawing."""
    page.wait_for_function(_SETTLED, polling=poll_ms, timeout=timeout_ms)


def time_upload(page: object, path: Path, timeout_ms: float = 120_000) -> float:
    """Upload a file on the Explain page (already drawn) and return the seconds until the whole result is
    on screen. A guard warning ("Show the predictions anyway") is a failure here: pick images it accepts."""
    return time_upload_stages(page, path, timeout_ms)["done_s"]


# The moment the page has the file, in the page's own clock: the file input's change event, as when a
# person picks a file. Set before each upload; the listener is added once per page.
_WATCH_PICK = """() => {
    window.__cxrPicked = null;
    if (!window.__cxrWatching) {
        window.__cxrWatching = true;
        document.addEventListener("change", e => {
            const input = e.target;
            const file = input instanceof HTMLInputElement && input.type === "file";
            if (file) window.__cxrPicked = performance.now();
        }, {capture: true});
    }
}"""
# The page's times of the pick and of the upload's request to the server.
_PICK_TIMES = """() => {
    const picked = window.__cxrPicked;
    const sent = performance.getEntriesByType("resource")
        .filter(e => e.name.includes("/_stcore/upload_file") && picked !== null && e.startTime >= picked);
    return [picked, sent.length ? sent[0].startTime : null];
}"""


def _when(condition: str) -> str:
    """A check that returns the page's clock (ms) once ``condition`` holds, and false until then."""
    return f"() => ({condition})() && performance.now()"


def time_upload_stages(
    page: object, path: Path, timeout_ms: float = 120_000, poll_ms: int = POLL_MS
) -> dict[str, float]:
    """``time_upload``, in two stages: ``maps_s`` until the probabilities and the maps are on screen,
    ``done_s`` until the whole page is (the detector's boxes, the lung section, the download button).

    Both count in the page's own clock from the moment it has the file (the input's change event), as a
    person picks one; ``request_s`` is how long after that the upload's request left. ``call_maps_s``
    and ``call_done_s`` count from the call instead, so they include Playwright's handing the file to
    the browser, which is the test rig's work, not the dashboard's (it grows when several drivers
    share the machine). The page checks every ``poll_ms``: with several sessions on one machine, a
    coarser check leaves more of it to the sessions being measured."""
    page.evaluate(_WATCH_PICK)
    started = time.perf_counter()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(path))
    try:
        maps_at = page.wait_for_function(_when(_MAPS_SHOWN), polling=poll_ms, timeout=timeout_ms).json_value()
        call_maps = time.perf_counter() - started
        done_at = page.wait_for_function(_when(_EXPLAINED), polling=poll_ms, timeout=timeout_ms).json_value()
        call_done = time.perf_counter() - started
    except Exception:
        if page.get_by_text("Show the predictions anyway").count():
            raise RuntimeError(f"the upload guard flagged {path}; time an image it accepts") from None
        raise
    picked, sent = page.evaluate(_PICK_TIMES)
    if picked is None:
        raise RuntimeError("the page saw no change event of its file input")
    return {
        "maps_s": (maps_at - picked) / 1000,
        "done_s": (done_at - picked) / 1000,
        "request_s": None if sent is None else (sent - picked) / 1000,
        "call_maps_s": call_maps,
        "call_done_s": call_done,
    }


def time_slider_step(page: object, label: str, timeout_ms: float = 60_000) -> float:
    """Move the slider called ``label`` one step right with the keyboard; seconds until the maps are
    drawn again and the script has finished."""
    before = page.evaluate(_IMAGE_SOURCES)
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text=label).first.get_by_role("slider")
    thumb.focus()
    started = time.perf_counter()
    thumb.press("ArrowRight")
    page.wait_for_function(_REDRAWN, arg=before, polling=POLL_MS, timeout=timeout_ms)
    return time.perf_counter() - started
