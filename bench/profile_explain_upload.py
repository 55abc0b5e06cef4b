"""Where the Explain page's script spends its time on an upload: one AppTest run under cProfile.

Run: CXR_HOME=/tmp/ws .venv/bin/python bench/profile_explain_upload.py [OUT.txt]   (the demo is prepared
in CXR_HOME when missing; CXR_PROFILE_IMAGE=PATH uploads that file instead of the first demo phantom)

Opens the Explain page, uploads the first demo phantom PNG, and profiles that run (the model is loaded
by a first, unprofiled upload, as a running server would already have it); then moves the opacity
slider and times that run. Writes the cumulative-time summary (top 25) to OUT.txt, or prints it.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from page_harness import run, run_page  # noqa: E402
from streamlit.runtime.scriptrunner.script_runner import ScriptRunner  # noqa: E402

from cxrcore.store import Workspace  # noqa: E402
from cxrcore.workflows.demo import prepare_demo  # noqa: E402

PAGE = "pages/5_Explain.py"
PROFILE = cProfile.Profile()
_PROFILING = {"on": False}


def _profiled_run_script(original: Callable[..., None]) -> Callable[..., None]:
    """The page script runs in AppTest's own thread: profile there, not in the calling thread."""

    def wrapper(self: ScriptRunner, rerun_data: object) -> None:
        if not _PROFILING["on"]:
            return original(self, rerun_data)
        PROFILE.enable()
        try:
            return original(self, rerun_data)
        finally:
            PROFILE.disable()

    return wrapper


def main() -> int:
    ScriptRunner._run_script = _profiled_run_script(ScriptRunner._run_script)
    home = Path(os.environ.get("CXR_HOME", ROOT / "workspace"))
    prepare_demo(Workspace(home))
    image = Path(os.environ.get("CXR_PROFILE_IMAGE", "")) if os.environ.get("CXR_PROFILE_IMAGE") else None
    image = image or sorted((home / "demo" / "phantoms" / "images").glob("*.png"))[0]
    data = image.read_bytes()
    warm = run_page(PAGE)
    warm.file_uploader(key="explain_upload").upload(image.name, data)
    run(warm)  # loads the model into the resource cache, as a running server would have it

    at = run_page(PAGE)
    at.file_uploader(key="explain_upload").upload(image.name, data)
    started = time.perf_counter()
    _PROFILING["on"] = True
    run(at)
    _PROFILING["on"] = False
    upload_s = time.perf_counter() - started
    at.slider(key="explain_alpha").set_value(0.8)
    started = time.perf_counter()
    run(at)
    slider_s = time.perf_counter() - started

    header = (
        f"Explain page, AppTest, upload of {image.name}: script run {upload_s:.2f} s (profiled); "
        f"opacity slider moved afterwards: {slider_s:.2f} s (not profiled)"
    )
    write_summary(header, 25, sys.argv[1] if len(sys.argv) > 1 else None)
    return 0


def write_summary(header: str, top: int, out: str | None) -> None:
    """The profile's cumulative-time summary under ``header``, to the file ``out`` or printed."""
    text = io.StringIO()
    text.write(header + "\n")
    pstats.Stats(PROFILE, stream=text).sort_stats("cumulative").print_stats(top)
    summary = text.getvalue().replace(str(ROOT) + "/", "")
    if out:
        Path(out).write_text(summary)
    else:
        sys.stdout.write(summary)


if __name__ == "__main__":
    raise SystemExit(main())
