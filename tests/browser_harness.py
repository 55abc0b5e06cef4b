"""A real dashboard server and a real headless Chromium (Debian's), for the browser test and benchmark.

Nothing is downloaded: Playwright drives ``/usr/bin/chromium``; callers skip when it is absent.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dashboard(home: Path, timeout: float = 60.0) -> Iterator[tuple[str, float]]:
    """Start ``streamlit run Home.py`` on a free port; yields (base URL, seconds to healthy)."""
    port = _free_port()
    env = {**os.environ, "CXR_HOME": str(home)}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "Home.py",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
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
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise RuntimeError(f"the dashboard did not start:\n{out[-2000:]}")
            time.sleep(0.2)
        yield url, time.perf_counter() - started
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


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


def errors_on(page: object) -> list[str]:
    """Texts of exceptions and error boxes on the page."""
    found = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]')
    return [found.nth(i).inner_text() for i in range(found.count())]
