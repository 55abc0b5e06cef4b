"""Dashboard timings in a real browser: server start to first rendered page, and upload to heat map.

Run: .venv/bin/python bench/bench_browser.py   (needs Debian's /usr/bin/chromium; CXR_HOME must hold
the demo, e.g. after `make demo`)

Starts `streamlit run` on a free port, opens the home page in headless Chromium and waits until it is
drawn; then opens the Explain page, uploads a phantom PNG and waits until the heat maps are shown,
three times. Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from browser_harness import browser_missing, chromium_page, dashboard, wait_until_idle  # noqa: E402

from cxrcore.store import Workspace  # noqa: E402
from cxrcore.workflows.demo import prepare_demo  # noqa: E402


def main() -> int:
    missing = browser_missing()
    if missing:
        print(json.dumps({"skipped": missing}))
        return 0
    home = Path(os.environ.get("CXR_HOME", ROOT / "workspace"))
    prepare_demo(Workspace(home))
    image = sorted((home / "demo" / "phantoms" / "images").glob("*.png"))[0]
    out: dict[str, object] = {}
    with dashboard(home) as (url, healthy_s), chromium_page(height=1600) as page:
        started = time.perf_counter()
        page.goto(url)
        wait_until_idle(page)
        out["server_healthy_s"] = round(healthy_s, 2)
        out["server_start_to_first_page_s"] = round(healthy_s + time.perf_counter() - started, 2)
        times = []
        for _ in range(3):
            page.goto(f"{url}/Explain")
            wait_until_idle(page)
            started = time.perf_counter()
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(image))
            page.wait_for_function(
                "() => document.querySelectorAll('[data-testid=\"stImage\"]').length >= 6", timeout=120_000
            )
            wait_until_idle(page)
            times.append(time.perf_counter() - started)
        out["upload_to_heatmaps_s"] = [round(t, 2) for t in times]
        out["upload_to_heatmaps_median_s"] = round(statistics.median(times), 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
