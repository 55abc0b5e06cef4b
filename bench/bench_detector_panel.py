"""The Explain page's lesion-detector panel: what it adds to an upload, and what a threshold move costs.

Run: .venv/bin/python bench/bench_detector_panel.py [--sizes 96 256 512] [--repeats 3] [--image-size 512]
     .venv/bin/python bench/bench_detector_panel.py --bundled   # the bundled real-data detector instead

For each detector input size, a Faster R-CNN on ResNet-18 (random weights: the time does not depend on
them) is saved in a throwaway workspace beside the bundled demo localiser, and the Explain page is driven
with Streamlit's AppTest: a phantom PNG is uploaded with the detector picked, and again with "none"; the
difference of the two first runs is the panel's cost on upload (loading the detector once, running it,
drawing its tile and table). Then the score threshold is moved, which must not run the detector again.
Also ``detect`` alone on the same image (median of ``--repeats``, in a worker thread as the page's
script runs). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "pages" / "5_Explain.py"
CLASSES = ["Effusion", "Nodule", "Opacity"]


def save_detector(home: Path, size: int) -> Path:
    """An untrained detector of the demo classes at ``size`` px, saved as a workspace run."""
    from cxrcore.models import create_model, save_checkpoint

    torch.manual_seed(0)
    model = create_model("faster_rcnn_resnet18", labels=CLASSES, input_size=size)
    detector = {"kind": "faster_rcnn", "backbone": "resnet18", "classes": CLASSES, "input_size": size}
    return save_checkpoint(home / "runs" / f"det{size}" / "best", model, {"detector": detector})


DETECT_CALLS = [0]


def count_detect_calls() -> None:
    """Count the page's calls of ``detect`` (the real function runs)."""
    from cxrcore.ui import detections as ud

    original = ud.detect

    def counted(*args: Any, **kwargs: Any) -> Any:
        DETECT_CALLS[0] += 1
        return original(*args, **kwargs)

    ud.detect = counted


def timed_upload(name: str, data: bytes, detector: str | None, threshold: float | None = None) -> dict:
    """Seconds of the page's run after an upload (detector picked or "none"), and after a threshold move."""
    from streamlit.testing.v1 import AppTest

    from cxrcore.ui import detections as ud

    calls = DETECT_CALLS[0]
    at = AppTest.from_file(str(PAGE), default_timeout=300)
    at.run()
    if detector is not None:
        at.session_state[ud.DETECTOR_WIDGET] = detector
    at.file_uploader(key="explain_upload").upload(name, data)
    started = time.perf_counter()
    at.run()
    out: dict[str, Any] = {"upload_s": time.perf_counter() - started, "errors": [e.value for e in at.error]}
    if threshold is not None:
        picked = at.selectbox(key=ud.DETECTOR_WIDGET).value
        at.slider(key=ud.threshold_key(picked)).set_value(threshold)
        started = time.perf_counter()
        at.run()
        out["threshold_move_s"] = time.perf_counter() - started
    out["detect_calls"] = DETECT_CALLS[0] - calls
    return out


def detect_times(checkpoint: Any, pixels: Any, repeats: int) -> list[float]:
    """Seconds of ``detect`` after a warm-up, in a worker thread as the page's script runs.

    On a busy machine the main thread's OpenMP team can be several times slower than a fresh thread's,
    so timing there would not describe what the page sees.
    """
    from cxrcore.models.detection import detect

    def run() -> list[float]:
        detect(checkpoint, pixels)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            detect(checkpoint, pixels)
            times.append(time.perf_counter() - started)
        return times

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=512, help="side of the uploaded phantom")
    parser.add_argument("--bundled", action="store_true", help="time checkpoints/real-detector instead")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cxr-bench-detpanel-"))
    bundled = tmp / "bundled"
    bundled.mkdir()
    for path in (ROOT / "checkpoints").glob("demo-localiser.*"):
        shutil.copy(path, bundled / path.name)
    os.environ["CXR_HOME"], os.environ["CXR_CHECKPOINTS"] = str(tmp / "workspace"), str(bundled)

    from cxrcore.io import read_image
    from cxrcore.models import load_checkpoint
    from cxrcore.ui.detections import NO_DETECTOR
    from cxrcore.workflows.demo import sample_phantom_png

    count_detect_calls()
    name, data = sample_phantom_png(0, size=args.image_size)
    pixels, _ = read_image(data)
    results: dict[str, Any] = {"image": list(pixels.shape), "torch_threads": torch.get_num_threads()}
    if args.bundled:
        for path in (ROOT / "checkpoints").glob("real-detector.*"):
            shutil.copy(path, bundled / path.name)
    for size in [0] if args.bundled else args.sizes:
        real = bundled / "real-detector.safetensors"
        path = str((real if args.bundled else save_detector(tmp / "workspace", size)).resolve())
        runs = detect_times(load_checkpoint(path), pixels, args.repeats)
        without = [timed_upload(name, data, NO_DETECTOR)["upload_s"] for _ in range(args.repeats)]
        pages = [timed_upload(name, data, path, threshold=0.3) for _ in range(args.repeats)]
        results["real-detector" if args.bundled else f"input_{size}"] = {
            "detect_median_s": round(statistics.median(runs), 3),
            "upload_without_detector_median_s": round(statistics.median(without), 3),
            "upload_with_detector_median_s": round(statistics.median(p["upload_s"] for p in pages), 3),
            "threshold_move_median_s": round(statistics.median(p["threshold_move_s"] for p in pages), 3),
            "detect_calls_per_upload_and_move": sorted({p["detect_calls"] for p in pages}),
            "errors": sorted({e for p in pages for e in p["errors"]}),
        }
        if not args.bundled:
            shutil.rmtree(Path(path).parent)  # the next size's detector is then the only one
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
