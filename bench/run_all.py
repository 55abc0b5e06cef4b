"""Run every benchmark in bench/ and write their JSON into bench/RESULTS.md.

Run: make bench   (or: CXR_DATA_DIR=../shared/data .venv/bin/python bench/run_all.py [SCRIPT ...])

Naming scripts (e.g. ``bench_predict.py``) runs only those and keeps the other rows of RESULTS.md.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


ROW = re.compile(r"^\| `(bench_[^`]+)` \| `(.*)` \| ([0-9.]+) \|$")


def _previous_rows() -> dict[str, tuple[dict, float]]:
    """The rows of the current RESULTS.md, by script name."""
    path = HERE / "RESULTS.md"
    found = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        match = ROW.match(line)
        if match:
            found[match.group(1)] = (json.loads(match.group(2)), float(match.group(3)))
    return found


def main() -> int:
    only = set(sys.argv[1:])
    kept = _previous_rows() if only else {}
    rows = []
    for script in sorted(HERE.glob("bench_*.py")):
        if only and script.name not in only:
            if script.name in kept:
                rows.append((script.name, *kept[script.name]))
            continue
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=HERE.parent)
        elapsed = time.perf_counter() - started
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            result = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
        rows.append((script.name, result, elapsed))
        print(f"{script.name}: {json.dumps(result)}", flush=True)
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {time.strftime('%Y-%m-%d')}, "
        f"{platform.processor() or platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}.",
        "",
        "| script | result | wall time (s) |",
        "|---|---|---|",
    ]
    lines += [f"| `{name}` | `{json.dumps(result)}` | {elapsed:.1f} |" for name, result, elapsed in rows]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
