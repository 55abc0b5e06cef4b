"""The server's model work for several uploads at once: one thread per upload, sharing one copy of each
bundled model, as the dashboard's sessions do.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/bench_concurrency.py [--sessions 6] [--repeats 3]
(real NIH PNGs with CXR_DATA_DIR set, else phantoms; ``OMP_NUM_THREADS=1`` is what the dashboard's
launcher gives its server on 2 cores).

Per upload, the work the Explain page asks of the engine: the explanation (one forward and backward pass
with every label's CAM and CRM, whose features the upload guard measures), the lesion detector's boxes,
and the lung segmentation. Timed alone (median of single uploads, one after another) and ``--sessions``
at once (wall time until the last finishes, median of ``--repeats``), for each part alone and for the
whole. The explanation holds the classifier's lock alone (it registers hooks); the detector's forward
passes share the detector's lock; the segmenter takes none.

Prints one JSON object. This is the model work only: the page's own drawing, Streamlit and the browser
come on top (``bench_load.py`` measures those).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cxrcore.explain.engine import explain  # noqa: E402
from cxrcore.explain.methods import DEFAULT_METHODS  # noqa: E402
from cxrcore.models import detection  # noqa: E402
from cxrcore.models.checkpoint import load_checkpoint  # noqa: E402
from cxrcore.models.guard import assess  # noqa: E402
from cxrcore.models.segmenter import load_segmenter  # noqa: E402

CLASSIFIER = ROOT / "checkpoints" / "real-densenet121.safetensors"
DETECTOR = ROOT / "checkpoints" / "real-detector.safetensors"
SEGMENTER = ROOT / "checkpoints" / "lung-segmenter.safetensors"


def images(count: int) -> tuple[list[np.ndarray], bool]:
    """``count`` grey [0, 1] images: real NIH PNGs when CXR_DATA_DIR is set, else phantoms; and which."""
    from cxrcore.io.reader import read_image

    data = os.environ.get("CXR_DATA_DIR")
    if data and (Path(data) / "nih14" / "images").is_dir():
        paths = sorted((Path(data) / "nih14" / "images").glob("*.png"))[:count]
        return [read_image(p)[0] for p in paths], True
    from cxrcore.data.phantoms import render_phantom

    rng = np.random.default_rng(0)
    return [render_phantom(rng, size=512)[0] for _ in range(count)], False


def parts() -> dict[str, Callable[[np.ndarray], object]]:
    """Each part of one upload's model work, as a function of the image."""
    classifier, detector, segmenter = (
        load_checkpoint(CLASSIFIER),
        load_checkpoint(DETECTOR),
        load_segmenter(SEGMENTER),
    )

    def explained(pixels: np.ndarray) -> object:
        result = explain(classifier, pixels, None, DEFAULT_METHODS)
        return assess(classifier, pixels, None, model_pixels=pixels, features=result.pooled_features)

    return {
        "explain": explained,
        "detect": lambda pixels: detection.detect(detector, pixels),
        "segment": segmenter.segment,
    }


def at_once(work: Callable[[np.ndarray], object], batch: list[np.ndarray]) -> float:
    """Seconds until ``work`` has run on every image of ``batch``, one thread each, started together."""
    start = threading.Barrier(len(batch) + 1)

    def run(pixels: np.ndarray) -> None:
        start.wait()
        work(pixels)

    threads = [threading.Thread(target=run, args=(p,)) for p in batch]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began


def alone(work: Callable[[np.ndarray], object], pixels: np.ndarray) -> float:
    began = time.perf_counter()
    work(pixels)
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=6, help="uploads at once (default 6)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of uploads at once (default 3)")
    args = parser.parse_args()
    missing = [p.name for p in (CLASSIFIER, DETECTOR, SEGMENTER) if not p.exists()]
    if missing:
        print(json.dumps({"skipped": f"bundled checkpoints missing: {missing}"}))
        return 0
    pictures, real = images(args.sessions + 1)
    work = parts()
    work["all"] = lambda pixels: [part(pixels) for part in list(work.values())[:3]]
    work["all"](pictures[-1])  # first use: weights paged in, kernels chosen
    out: dict[str, object] = {
        "real_data": real,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "sessions": args.sessions,
    }
    for name, function in work.items():
        single = statistics.median(alone(function, p) for p in pictures[: args.sessions])
        together = statistics.median(
            at_once(function, pictures[: args.sessions]) for _ in range(args.repeats)
        )
        out[name] = {
            "single_s": round(single, 3),
            "at_once_s": round(together, 3),
            "at_once_over_single": round(together / single, 2),
            "serial_s": round(single * args.sessions, 3),  # one after another, for comparison
        }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
