"""Fuzz the image readers with >= 10,000 generated inputs, each under a time and a memory limit.

Run: .venv/bin/python bench/fuzz_readers.py [--inputs 10000] [--seed 0] [--workers 2]
     [--time-limit 5] [--memory-mb 2048] [--atheris-runs 0]

Inputs are the seed files of ``tests/reader_fuzz.py`` (every format and encoding the readers handle)
with one to four random mutations each (cut, flipped, inserted, deleted, overwritten, duplicated
bytes, header integers set to extreme values), drawn from a seeded generator, so a run is repeatable.
Each input is read in a worker process whose address space is limited (``RLIMIT_AS``); the parent
kills a worker that takes longer than the time limit and starts a new one. The property checked is
``reader_fuzz.check``: a valid image or ``ImageReadError``, nothing else.

Outcomes: ``decoded``, ``refused`` (ImageReadError), ``violation`` (the image broke the contract),
``crash`` (any other exception), ``timeout``, ``memory`` (MemoryError or a worker killed for memory),
``died`` (a worker ended by a signal). Inputs with a bad outcome are saved to ``bench/out/fuzz/``.

With ``--atheris-runs N`` a coverage-guided run of atheris (libFuzzer) follows, started from the same
seed files, with libFuzzer's own per-input time and memory limits.

Prints one JSON object: counts per outcome (and per seed), inputs per second, the slowest input, the
largest resident memory a worker reached and the input that raised it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import random
import re
import resource
import subprocess
import sys
import time
import warnings
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]
OUT = HERE / "out" / "fuzz"
BAD = ("violation", "crash", "timeout", "memory", "died")


def _worker(conn: Connection, memory_mb: int) -> None:
    """Read inputs from ``conn`` until None; answer (outcome, seconds, max RSS in MB, detail) for each."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    warnings.simplefilter("ignore")  # damaged files make Pillow and pydicom warn; outcomes say enough
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 2)  # and a panicking Rust decoder prints its message; the outcome is recorded
    from reader_fuzz import check

    while (data := conn.recv()) is not None:
        start = time.perf_counter()
        try:
            outcome, detail = check(data), ""
        except AssertionError as exc:
            outcome, detail = "violation", str(exc)[:200]
        except MemoryError:
            outcome, detail = "memory", "MemoryError"
        except BaseException as exc:  # anything else is the bug this run looks for
            outcome, detail = "crash", f"{type(exc).__name__}: {str(exc)[:200]}"
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        conn.send((outcome, time.perf_counter() - start, rss, detail))


class Pool:
    """Worker processes, each fed one input at a time; a worker over the time limit is killed."""

    def __init__(self, size: int, memory_mb: int) -> None:
        self.memory_mb = memory_mb
        self.ctx = mp.get_context("spawn")
        self.slots: list[tuple[Any, Connection]] = [self._start() for _ in range(size)]

    def _start(self) -> tuple[Any, Connection]:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker, args=(child, self.memory_mb), daemon=True)
        proc.start()
        return proc, parent

    def run(self, i: int, data: bytes, limit: float) -> tuple[str, float, float, str]:
        """Read one input in worker ``i`` (restarting it after a timeout or a death)."""
        proc, conn = self.slots[i]
        start = time.perf_counter()
        conn.send(data)
        if conn.poll(limit):
            try:
                return conn.recv()
            except EOFError:
                pass
        if proc.is_alive():
            proc.kill()
            outcome = "timeout"
        else:
            outcome = "memory" if proc.exitcode == -9 else "died"
        proc.join()
        self.slots[i] = self._start()
        return outcome, time.perf_counter() - start, 0.0, f"exit code {proc.exitcode}"

    def close(self) -> None:
        for proc, conn in self.slots:
            conn.send(None)
            proc.join(timeout=10)


def _feed(pool: Pool, inputs: list[tuple[str, list, bytes]], limit: float) -> list[tuple]:
    """Run every input; workers take turns (one thread per worker keeps them all busy)."""
    from concurrent.futures import ThreadPoolExecutor

    results: list[tuple] = [None] * len(inputs)  # type: ignore[list-item]

    def lane(i: int) -> None:
        for k in range(i, len(inputs), len(pool.slots)):
            results[k] = pool.run(i, inputs[k][2], limit)

    with ThreadPoolExecutor(len(pool.slots)) as lanes:
        list(lanes.map(lane, range(len(pool.slots))))
    return results


def _save(seed: str, mutations: list, data: bytes, outcome: str, detail: str) -> str:
    digest = hashlib.sha256(data).hexdigest()[:16]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{outcome}-{seed}-{digest}.bin").write_bytes(data)
    (OUT / f"{outcome}-{seed}-{digest}.json").write_text(
        json.dumps({"seed": seed, "mutations": [[k, w, p.hex()] for k, w, p in mutations], "detail": detail})
    )
    return digest


def generate(n: int, seed: int) -> list[tuple[str, list, bytes]]:
    """``n`` inputs: (seed file name, mutations, bytes), the seed files taken in turn."""
    from reader_fuzz import apply, random_mutations, seed_files

    seeds = seed_files()
    names = sorted(seeds)
    rng = random.Random(seed)
    out = []
    for k in range(n):
        name = names[k % len(names)]
        mutations = random_mutations(rng)
        out.append((name, mutations, apply(seeds[name], mutations)))
    return out


def atheris_run(runs: int, time_limit: float, memory_mb: int) -> dict[str, Any]:
    """A coverage-guided atheris run from the seed files; libFuzzer's summary, or why it did not run."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        return {"ran": False, "why": "atheris is not installed (pip install -r requirements-bench.txt)"}
    from reader_fuzz import seed_files

    corpus = OUT / "atheris-corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for name, data in seed_files().items():
        (corpus / name).write_bytes(data)
    flags = [f"-runs={runs}", f"-timeout={max(1, round(time_limit))}", f"-rss_limit_mb={memory_mb}"]
    start = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path[:2]), RUST_BACKTRACE="0")
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz_readers_atheris.py"),
            *flags,
            f"-artifact_prefix={OUT}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    log = proc.stderr
    done = re.search(r"Done (\d+) runs in (\d+) second", log)
    cov = re.findall(r"cov: (\d+) ft: (\d+)", log)
    return {
        "ran": True,
        "runs": int(done.group(1)) if done else None,
        "seconds": round(time.perf_counter() - start, 1),
        "exit_code": proc.returncode,
        "crash_found": proc.returncode != 0,
        "coverage_edges": int(cov[-1][0]) if cov else None,
        "features": int(cov[-1][1]) if cov else None,
        "last_lines": log.strip().splitlines()[-3:] if proc.returncode else [],
    }


def summarise(inputs: list[tuple[str, list, bytes]], results: list[tuple], seconds: float) -> dict[str, Any]:
    """Counts per outcome and per seed, the slowest input and the largest memory, bad inputs saved."""
    outcomes = Counter(r[0] for r in results)
    per_seed: dict[str, Counter] = {}
    saved = []
    for (seed, mutations, data), (outcome, _, _, detail) in zip(inputs, results, strict=True):
        per_seed.setdefault(seed, Counter())[outcome] += 1
        if outcome in BAD:
            name = _save(seed, mutations, data, outcome, detail)
            saved.append({"outcome": outcome, "seed": seed, "file": name, "detail": detail})
    slowest = max(range(len(results)), key=lambda k: results[k][1])
    peak = max(range(len(results)), key=lambda k: results[k][2])
    times = sorted(r[1] for r in results)
    return {
        "inputs": len(inputs),
        "seconds": round(seconds, 1),
        "inputs_per_s": round(len(inputs) / seconds, 1),
        "outcomes": dict(outcomes),
        "bad": sum(outcomes[k] for k in BAD),
        "per_seed": {k: dict(v) for k, v in sorted(per_seed.items())},
        "median_ms": round(1e3 * times[len(times) // 2], 2),
        "p99_ms": round(1e3 * times[int(0.99 * (len(times) - 1))], 2),
        "slowest": {
            "seed": inputs[slowest][0],
            "ms": round(1e3 * results[slowest][1], 1),
            "outcome": results[slowest][0],
            "bytes": len(inputs[slowest][2]),
            "sha256": hashlib.sha256(inputs[slowest][2]).hexdigest()[:16],
        },
        "max_rss_mb": round(results[peak][2], 1),
        "max_rss_input": {"seed": inputs[peak][0], "outcome": results[peak][0]},
        "saved": saved[:20],
    }


def main() -> None:
    """Generate, run and summarise; print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=5.0, help="seconds per input")
    parser.add_argument("--memory-mb", type=int, default=2048, help="address space per worker")
    parser.add_argument("--atheris-runs", type=int, default=0)
    args = parser.parse_args()
    inputs = generate(args.inputs, args.seed)
    pool = Pool(args.workers, args.memory_mb)
    start = time.perf_counter()
    try:
        results = _feed(pool, inputs, args.time_limit)
    finally:
        pool.close()
    report = {
        "seed": args.seed,
        "time_limit_s": args.time_limit,
        "memory_limit_mb": args.memory_mb,
        "workers": args.workers,
        **summarise(inputs, results, time.perf_counter() - start),
    }
    if args.atheris_runs:
        report["atheris"] = atheris_run(args.atheris_runs, args.time_limit, args.memory_mb)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
