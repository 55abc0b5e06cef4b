"""The dashboard's speed in a real browser, as a new user meets it: every page's first draw on a fresh
server and workspace, server start to home page, upload to result, and a slider's redraw.

Run: .venv/bin/python bench/bench_browser.py [--runs 5] [--page-runs 3]
(needs Debian's /usr/bin/chromium; with CXR_DATA_DIR set, the workspace holds the real datasets that
``make run`` registers and the uploads are real NIH PNGs and RSNA DICOMs, else phantoms).

- Pages: for each page and run, a copy of a freshly prepared workspace (``demo prepare``, no stored
  predictions) in which ``demo prepare`` runs again, as ``make run`` does before the server starts (it
  starts the Evaluate and Ensembles pages' predictions in the background), then a new server and a new
  browser context; the time from opening the page's address until its title is drawn and its script
  has finished (a page showing the progress of background predictions, with its controls, counts as
  drawn). Server start to home page adds the seconds the server took to answer its health check. On
  Evaluate, the time until its first chart also is kept, from opening it and from ``demo prepare``.
  The background workers of each run are stopped before the next.
- Uploads: one server, warmed by one visit; per run a new session (a new browser context) opens
  Explain and, once the page is on screen (its table drawn), uploads one file. Two times: until the
  probabilities and the maps are on screen (the readings table and the CAM / CRM tiles of this run,
  pictures loaded: the target), and until the whole page is (the lesion detector's boxes, the lung
  section, the panel's download button, script finished). Both count in the page's own clock from the
  file input's change event, as when a person picks the file; ``upload_*_from_call_median_s`` counts
  from Playwright's call, which adds its handing of the file to the browser (the figures before
  round 5 were timed that way).
  Then the opacity slider is moved one step: the time until the maps are drawn again.

Prints one JSON object, with the targets of the live-demo issue and whether each is met.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from browser_harness import (  # noqa: E402
    PAGES,
    browser_missing,
    dashboard_process,
    rss_mb,
    time_first_draw,
    time_slider_step,
    time_upload_stages,
    wait_settled,
)

TARGETS = {"upload_s": 1.5, "slider_s": 0.5, "page_first_draw_s": 3.0, "start_to_home_s": 5.0}


def demo_prepare(home: Path) -> None:
    """``python -m cxrcore demo prepare`` into ``home``: registers the data, starts the predictions."""
    env = {**os.environ, "CXR_HOME": str(home)}
    command = [sys.executable, "-m", "cxrcore", "demo", "prepare"]
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)


def stop_background(home: Path) -> None:
    """Stop the background prediction workers of a workspace (each leads its own process group): those
    its claim files name, and any other process of that workspace (one a page started just now)."""
    pids = set()
    for claim in (home / "predictions" / "background").glob("*.claim"):
        try:
            pids.add(int(json.loads(claim.read_text()).get("pid") or 0))
        except (OSError, ValueError):
            continue
    marker = f"CXR_HOME={home}".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                pids.add(int(environ.parent.name))
        except OSError:
            continue
    for pid in pids - {0, os.getpid()}:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            try:
                os.kill(pid, signal.SIGKILL)  # not a group leader
            except OSError:
                continue


def prepare_workspace(where: Path) -> Path:
    """A fresh workspace as ``make run`` leaves it (demo, and real data when CXR_DATA_DIR is set), with
    no stored predictions and no background work (each page run starts its own)."""
    home = where / "template"
    demo_prepare(home)
    stop_background(home)
    shutil.rmtree(home / "predictions", ignore_errors=True)
    return home


def fresh_copy(template: Path, where: Path, name: str) -> Path:
    home = where / name
    shutil.copytree(template, home)
    return home


def upload_files(home: Path, kind: str, count: int) -> list[Path]:
    """Real X-rays of ``kind`` ("png": NIH, "dicom": RSNA) from CXR_DATA_DIR, else generated ones; only
    files the upload guard of the Explain page's default model accepts (a flagged one shows a warning
    instead of the result), repeated in turn when fewer than ``count`` are found."""
    data = Path(os.environ.get("CXR_DATA_DIR", "/nonexistent"))
    if kind == "png":
        found = sorted((data / "nih14" / "images").glob("*.png"))
        candidates = iter(found or sorted((home / "demo" / "phantoms" / "images").glob("*.png")))
    else:
        found = [p for p in sorted((data / "dicom").glob("*.dcm")) if not p.name.startswith("Fake")]
        candidates = iter(found or (_generated_dicom(home, seed) for seed in range(8 * count)))
    accepted = guard_accepted(home, candidates, count)
    if not accepted:
        raise RuntimeError(f"the upload guard of the default model flags every {kind} file tried")
    return [accepted[i % len(accepted)] for i in range(count)]


def guard_accepted(home: Path, candidates: Iterator[Path], count: int) -> list[Path]:
    """Up to ``count`` of ``candidates`` that the default classifier's upload guard accepts."""
    from cxrcore.io import read_image
    from cxrcore.models.catalog import list_checkpoints
    from cxrcore.models.checkpoint import load_checkpoint
    from cxrcore.models.guard import assess

    default = next(e for e in list_checkpoints(home) if e.info.get("task") == "classify")
    checkpoint = load_checkpoint(default.path)
    accepted: list[Path] = []
    for path in candidates:
        pixels, _ = read_image(path)
        if not assess(checkpoint, pixels, path.read_bytes()).suspicious:
            accepted.append(path)
        if len(accepted) == count:
            break
    return accepted


def _generated_dicom(home: Path, seed: int) -> Path:
    import numpy as np
    from io_corpus import dicom_bytes, dicom_dataset

    from cxrcore.data.phantoms import render_phantom

    image, _ = render_phantom(np.random.default_rng(seed), 512, ["Opacity"])
    path = home / f"generated-{seed}.dcm"
    path.write_bytes(dicom_bytes(dicom_dataset(np.round(image * 4095).astype(np.uint16), bits_stored=12)))
    return path


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def time_pages(
    browser: object, template: Path, where: Path, runs: int, pages: list[str], settle_s: float = 0.0
) -> dict[str, object]:
    """Each page's first draw on a fresh server and workspace, ``runs`` times; ``settle_s`` seconds pass
    between ``demo prepare`` and the server's start (the background predictions then run meanwhile)."""
    out: dict[str, object] = {}
    starts: list[float] = []
    for name in pages:
        path = PAGES[name]
        draws = []
        for run in range(runs):
            home = fresh_copy(template, where, f"{name}-{run}")
            prepared = time.perf_counter()
            demo_prepare(home)  # as `make run`: the data are registered, the predictions start
            time.sleep(settle_s)
            with dashboard_process(home) as (url, healthy_s, _):
                context = browser.new_context(viewport={"width": 1400, "height": 1600})
                page = context.new_page()
                opened = time.perf_counter()
                draws.append(time_first_draw(page, f"{url}/{path}", timeout_ms=600_000))
                print(f"{name} run {run}: drawn in {draws[-1]:.2f} s", file=sys.stderr, flush=True)
                if name == "home":
                    starts.append(healthy_s + draws[-1])
                if name == "evaluate" and run == 0:  # until the ROC curves are on screen
                    page.wait_for_selector('[data-testid="stPlotlyChart"]', timeout=600_000)
                    out["evaluate_first_chart_s"] = round(time.perf_counter() - opened, 2)
                    out["evaluate_first_chart_after_demo_prepare_s"] = round(
                        time.perf_counter() - prepared, 2
                    )
                context.close()
            stop_background(home)
            shutil.rmtree(home, ignore_errors=True)
        out[f"first_draw_{name}_s"] = [round(d, 2) for d in draws]
    medians = {name: _median(out[f"first_draw_{name}_s"]) for name in pages}
    out["first_draw_median_s"] = medians
    if starts:
        out["start_to_home_s"] = [round(s, 2) for s in starts]
        out["start_to_home_median_s"] = _median(starts)
    return out


def time_uploads(browser: object, template: Path, where: Path, runs: int) -> dict[str, object]:
    """Upload to result and one slider step, per file kind, each in a new session of a warm server."""
    home = fresh_copy(template, where, "uploads")
    out: dict[str, object] = {}
    with dashboard_process(home) as (url, _, proc):
        warm = browser.new_context()
        time_first_draw(warm.new_page(), url)  # the server's first visit, as a presenter's rehearsal
        warm.close()
        for kind in ("png", "dicom"):
            shown, uploads, slides, from_call = [], [], [], []
            for path in upload_files(home, kind, runs):
                context = browser.new_context(viewport={"width": 1400, "height": 1600})
                page = context.new_page()
                time_first_draw(page, f"{url}/Explain")
                wait_settled(page)  # the user picks a file once the page is on screen
                stages = time_upload_stages(page, path)
                shown.append(stages["maps_s"])
                uploads.append(stages["done_s"])
                from_call.append(stages["call_done_s"])
                slides.append(time_slider_step(page, "Opacity"))
                context.close()
            out[f"maps_{kind}_s"] = [round(t, 3) for t in shown]
            out[f"maps_{kind}_median_s"] = _median(shown)
            out[f"upload_{kind}_s"] = [round(t, 3) for t in uploads]
            out[f"upload_{kind}_median_s"] = _median(uploads)
            # from Playwright's call: with its handing of the file to the browser
            out[f"upload_{kind}_from_call_median_s"] = _median(from_call)
            out[f"slider_{kind}_s"] = [round(t, 3) for t in slides]
            out[f"slider_{kind}_median_s"] = _median(slides)
        out["server_rss_mb"] = round(rss_mb(proc.pid), 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="uploads per file kind (default 5)")
    parser.add_argument("--page-runs", type=int, default=3, help="fresh servers per page (default 3)")
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="seconds between demo prepare and the server's start (default 0, as make run; 20 times the "
        "pages while the background predictions run)",
    )
    parser.add_argument("--skip-pages", action="store_true", help="time the uploads only")
    parser.add_argument("--skip-uploads", action="store_true", help="time the pages only")
    parser.add_argument(
        "--pages", default=",".join(PAGES), help=f"pages to time, comma-separated (default {','.join(PAGES)})"
    )
    args = parser.parse_args()
    pages = [name.strip() for name in args.pages.split(",") if name.strip()]
    unknown = sorted(set(pages) - set(PAGES))
    if unknown:
        parser.error(f"unknown page(s) {', '.join(unknown)}; valid options: {', '.join(PAGES)}")
    missing = browser_missing()
    if missing:
        print(json.dumps({"skipped": missing}))
        return 0
    from browser_harness import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    out: dict[str, object] = {"real_data": bool(os.environ.get("CXR_DATA_DIR")), "cpus": os.cpu_count()}
    if args.settle:
        out["settle_s"] = args.settle
    with tempfile.TemporaryDirectory(prefix="bench-browser-") as tmp, sync_playwright() as p:
        where = Path(tmp)
        template = prepare_workspace(where)
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            if not args.skip_uploads:
                out.update(time_uploads(browser, template, where, args.runs))
            if not args.skip_pages:
                out.update(time_pages(browser, template, where, args.page_runs, pages, args.settle))
        finally:
            browser.close()
    met = {}
    if not args.skip_uploads:
        # The target: the probabilities and the maps on screen; the whole page's time is reported too.
        met["upload_s"] = max(out["maps_png_median_s"], out["maps_dicom_median_s"]) <= TARGETS["upload_s"]
        met["slider_s"] = max(out["slider_png_median_s"], out["slider_dicom_median_s"]) <= TARGETS["slider_s"]
    if not args.skip_pages:
        met["page_first_draw_s"] = max(out["first_draw_median_s"].values()) <= TARGETS["page_first_draw_s"]
        if "start_to_home_median_s" in out:
            met["start_to_home_s"] = out["start_to_home_median_s"] <= TARGETS["start_to_home_s"]
    out["targets"] = TARGETS
    out["met"] = met
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
