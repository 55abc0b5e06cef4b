"""Run every benchmark in bench/ and write their JSON into bench/RESULTS.md.

Run: make bench   (or: CXR_DATA_DIR=../shared/data .venv/bin/python bench/run_all.py)
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    rows = []
    for script in sorted(HERE.glob("bench_*.py")):
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
