"""Where a page's first run goes on a fresh server process: one AppTest run under cProfile.

Run: CXR_HOME=/tmp/ws .venv/bin/python bench/profile_first_draw.py PAGE [OUT.txt]
(PAGE: Home.py or pages/3_Evaluate.py, ...; the workspace should be as ``make run`` leaves it)

Streamlit itself is imported before profiling, as the server has it before the first visit; the run
profiled is the page's first, so the imports of the engine and the libraries are in it. Writes the
cumulative-time summary (top 40) to OUT.txt, or prints it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from page_harness import page  # noqa: E402
from profile_explain_upload import _PROFILING, _profiled_run_script, write_summary  # noqa: E402
from streamlit.runtime.scriptrunner.script_runner import ScriptRunner  # noqa: E402


def main() -> int:
    ScriptRunner._run_script = _profiled_run_script(ScriptRunner._run_script)
    at = page(sys.argv[1], timeout=600)
    started = time.perf_counter()
    _PROFILING["on"] = True
    at.run()
    _PROFILING["on"] = False
    seconds = time.perf_counter() - started
    header = f"{sys.argv[1]}, first AppTest run in a fresh process: {seconds:.2f} s"
    write_summary(header, 40, sys.argv[2] if len(sys.argv) > 2 else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
