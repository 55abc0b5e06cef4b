"""Time `data stats` on the full NIH ChestX-ray14 label file (112,120 rows); prints one JSON object.

Run: CXR_DATA_DIR=../shared/data .venv/bin/python bench/bench_nih_stats.py [--repeats 5]

Measures, each as the best of --repeats runs:
- index_s: reading Data_Entry_2017 (.csv.gz) into the index contract (label-only mode);
- stats_s: every statistic of `dataset_statistics` on that index;
- cli_stats_s: the whole `python -m cxrcore data stats NAME --json` command on a registered copy
  (process start, imports, reading the stored index, statistics, JSON output).
The target is under 2 s for `data stats`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxrcore.data.adapters import load_source
from cxrcore.data.stats import dataset_statistics
from cxrcore.store import Workspace


def best_of(repeats: int, fn) -> tuple[float, object]:
    """Fastest wall time of several calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    data = os.environ.get("CXR_DATA_DIR")
    if not data:
        print(json.dumps({"skipped": "CXR_DATA_DIR is not set"}))
        return 0
    csv = Path(data) / "nih14" / "Data_Entry_2017_v2020.csv.gz"
    index_s, dataset = best_of(args.repeats, lambda: load_source("nih14", labels_csv=csv))
    stats_s, stats = best_of(args.repeats, lambda: dataset_statistics(dataset.index))
    with tempfile.TemporaryDirectory() as home:
        Workspace(home).register_dataset("nih-labels", "nih14", {"labels_csv": str(csv)}, dataset)
        env = {**os.environ, "CXR_HOME": home}
        cmd = [sys.executable, "-m", "cxrcore", "data", "stats", "nih-labels", "--json"]
        cli_s, _ = best_of(
            args.repeats,
            lambda: subprocess.run(
                cmd, env=env, check=True, capture_output=True, cwd=Path(__file__).parents[1]
            ),
        )
    print(
        json.dumps(
            {
                "rows": len(dataset.index),
                "patients": stats["overview"]["patients"],
                "index_s": round(index_s, 3),
                "stats_s": round(stats_s, 3),
                "cli_stats_s": round(cli_s, 3),
                "target_s": 2.0,
                "meets_target": cli_s < 2.0,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
