"""Run every benchmark in bench/ and write their JSON into bench/RESULTS.md.

Run: make bench   (or: CXR_DATA_DIR=../shared/data .venv/bin/python bench/run_all.py [SCRIPT ...])

Naming scripts (e.g. ``bench_predict.py``) runs only those and keeps the other rows of RESULTS.md.
Every script runs with its default options; one that fails (non-zero exit status, or no JSON object
on its last stdout line) gets an error row and the others still run.
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
    """The rows of the current RESULTS.md, by script name (a row that does not parse is dropped)."""
    path = HERE / "RESULTS.md"
    found = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        match = ROW.match(line)
        if match:
            try:
                found[match.group(1)] = (json.loads(match.group(2)), float(match.group(3)))
            except json.JSONDecodeError:
                continue
    return found


def _error(text: str) -> dict:
    """An error row's result; backticks and bars are replaced so the Markdown row stays one cell."""
    return {"error": text.replace("`", "'").replace("|", "/")}


def _run(script: Path) -> dict:
    """Run one benchmark with its default options; its last stdout line, or an error row if it failed."""
    try:
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=HERE.parent)
    except OSError as exc:
        return _error(f"could not start: {exc}")
    last_error = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    if proc.returncode != 0:
        return _error(f"exit status {proc.returncode}: {last_error}")
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return _error(last_error)
    return result if isinstance(result, dict) else _error(f"last line is not a JSON object: {result!r}")


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
        result = _run(script)
        elapsed = time.perf_counter() - started
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
