"""Benchmark: PNG decode + resize throughput and the speed-up of the preprocessed-image cache.

Run from the repository root:

    .venv/bin/python bench/bench_decode_cache.py [--n 64] [--size 224]

It writes N synthetic 1024x1024 8-bit grey PNGs (smooth anatomy-like shading plus noise, so the
PNG compression ratio and decode cost resemble real radiographs) to a temporary folder and
measures, single process: decode only, decode + resize to ``size``, a first pass through
``PreprocessCache`` (cold: decode, prepare, write) and a second pass (warm: read entries only;
the median of three passes, each with a fresh cache object as a new epoch or process would have).
When ``CXR_DATA_DIR`` is set it repeats the decode+resize and cache passes on the real 512 px NIH
PNGs in ``$CXR_DATA_DIR/nih14/images``. Source files and entries sit in the OS page cache in both
passes, so the speed-up is decode work saved, not disk I/O saved. It also times reading the same
entries stored as ``.npy`` files, the storage format the cache does not use.

Prints one JSON object on stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxrcore.data.cache import PreprocessCache
from cxrcore.io import read_image
from cxrcore.preprocess import PreprocessConfig, prepare

logger = logging.getLogger("bench_decode_cache")


def synthetic_radiograph(rng: np.random.Generator, size: int = 1024) -> np.ndarray:
    """A uint8 image with body-like shading, two darker lung-like fields, soft texture and noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    body = np.exp(-((((xx - 0.5) / 0.38) ** 2 + ((yy - 0.55) / 0.5) ** 2) ** 2))
    lungs = sum(
        np.exp(-((((xx - cx) / 0.13) ** 2 + ((yy - 0.45) / 0.25) ** 2) ** 2))
        for cx in (0.5 - rng.uniform(0.15, 0.2), 0.5 + rng.uniform(0.15, 0.2))
    )
    texture = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 6)
    image = 40 + 170 * body - 90 * lungs + 10 * texture / (texture.std() + 1e-6)
    image += rng.normal(0, 2.0, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8)


def per_second(fn: Callable[[Path], object], paths: Sequence[Path]) -> float:
    """Images per second for one pass of ``fn`` over ``paths``."""
    start = time.perf_counter()
    for p in paths:
        fn(p)
    return len(paths) / (time.perf_counter() - start)


def cache_passes(paths: Sequence[Path], root: Path, cfg: PreprocessConfig) -> dict[str, float]:
    """Cold pass (fills the cache) and the median of three warm passes through PreprocessCache."""
    cold_cache = PreprocessCache(root, cfg)
    cold = per_second(cold_cache.get, paths)
    assert cold_cache.stats.misses == len(paths), cold_cache.stats
    warm_rates = []
    for _ in range(3):
        warm_cache = PreprocessCache(root, cfg)
        warm_rates.append(per_second(warm_cache.get, paths))
        assert warm_cache.stats.misses == 0 and warm_cache.stats.hits == len(paths), warm_cache.stats
    warm = statistics.median(warm_rates)
    return {"cache_cold_per_s": cold, "cache_warm_per_s": warm, "cache_speedup": warm / cold}


def entry_read_comparison(paths: Sequence[Path], root: Path, cfg: PreprocessConfig) -> dict[str, float]:
    """Microseconds per entry read: the cache's raw format against the same pixels as .npy files."""
    cache = PreprocessCache(root, cfg)
    entries = [cache.entry_path(cache.key_for(p)) for p in paths]
    npy_dir = root / "npy"
    npy_dir.mkdir()
    npys = []
    for i, entry in enumerate(entries):
        npys.append(npy_dir / f"{i}.npy")
        np.save(npys[-1], np.fromfile(entry, dtype=np.uint8).reshape(cfg.input_size, cfg.input_size))
    timings = {}
    for name, reader, files in (
        ("raw", lambda e: cache._load(e), entries),
        ("npy", np.load, npys),
    ):
        start = time.perf_counter()
        for _ in range(5):
            for f in files:
                reader(f)
        timings[f"entry_read_{name}_us"] = 1e6 * (time.perf_counter() - start) / (5 * len(files))
    return timings


def bench_synthetic(n: int, cfg: PreprocessConfig, work: Path) -> dict[str, float]:
    """Decode, decode+resize and cache figures on N synthetic 1024 px PNGs."""
    rng = np.random.default_rng(0)
    src = work / "png1024"
    src.mkdir()
    paths = []
    for i in range(n):
        paths.append(src / f"synthetic_{i:04d}.png")
        Image.fromarray(synthetic_radiograph(rng), mode="L").save(paths[-1])
    mean_kb = sum(p.stat().st_size for p in paths) / n / 1024
    logger.info("wrote %d synthetic 1024 px PNGs, %.0f KiB each on average", n, mean_kb)
    result = {
        "png_1024_mean_kib": mean_kb,
        "decode_1024_png_per_s": per_second(read_image, paths),
        "decode_resize_1024_png_per_s": per_second(lambda p: prepare(read_image(p)[0], cfg), paths),
    }
    result |= cache_passes(paths, work / "cache1024", cfg)
    result |= entry_read_comparison(paths, work / "cache1024", cfg)
    return result


def bench_nih(n: int, cfg: PreprocessConfig, work: Path) -> dict[str, float]:
    """The same figures on the real 512 px NIH PNGs, when CXR_DATA_DIR points at them."""
    data_dir = os.environ.get("CXR_DATA_DIR")
    folder = Path(data_dir or "") / "nih14" / "images"
    if not data_dir or not folder.is_dir():
        logger.info("CXR_DATA_DIR not set or has no nih14/images; skipping the real-data figures")
        return {}
    paths = sorted(folder.glob("*.png"))[:n]
    for p in paths:  # bring the sources into the page cache so every pass starts alike
        p.read_bytes()
    rates = {
        "decode_resize_per_s": per_second(lambda p: prepare(read_image(p)[0], cfg), paths),
        **cache_passes(paths, work / "cache_nih", cfg),
    }
    return {"nih512_n_images": len(paths)} | {f"nih512_{k}": v for k, v in rates.items()}


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, run the benchmark and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    parser.add_argument("--size", type=int, default=224, help="output size (default 224)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    cfg = PreprocessConfig(input_size=args.size)
    with tempfile.TemporaryDirectory(prefix="cxr_bench_") as tmp:
        result: dict[str, float | int | str] = {"n_images": args.n, "size": args.size}
        result |= bench_synthetic(args.n, cfg, Path(tmp))
        result |= bench_nih(args.n, cfg, Path(tmp))
    result |= {"cv2_threads": cv2.getNumThreads(), "cpu_count": os.cpu_count() or 0}
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
