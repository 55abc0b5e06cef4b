"""Explanation speed: predictions + CAM for every label + CRM against the forward pass alone, against
the grad-cam package's Grad-CAM called once per label, and, from the image file on, against
torchxrayvision's input pipeline followed by the grad-cam package.

Run: .venv/bin/python bench/bench_explain.py [--model densenet121] [--size 224] [--repeats 5]

Untrained weights (timing does not depend on them), 14 labels. The in-memory timings use one random
grey image. The from-file timings go from one PNG on disk (the first real NIH image when
CXR_DATA_DIR is set, else a generated grey PNG) to 14 heat maps:
- ours: the file's bytes through ``cxrcore.io.read_image`` and ``explain(cam + crm)``, as the
  dashboard handles an upload;
- torchxrayvision: its README's pipeline (skimage read, ``normalize(img, 255)``, ``XRayCenterCrop``,
  ``XRayResizer``) into ``xrv.models.DenseNet(weights=None)``, then ``pytorch_grad_cam.GradCAM``
  once per NIH label with an explicit target.
``xrv_import_s`` is the import of torchxrayvision with torch already loaded. Prints one JSON object;
the target is explain(cam + crm) <= 1.25x the forward pass.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from cxrcore.explain.engine import explain, model_input
from cxrcore.io import read_image
from cxrcore.labels import NIH14_LABELS
from cxrcore.models import Checkpoint, ModelCard, create_model
from cxrcore.models.registry import CXRModel

TARGET_RATIO = 1.25
Timed = Callable[[], object]


def _median_s(fn: Timed, repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls, after one warm-up call."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _image_file(tmp: Path) -> tuple[Path, str]:
    """The first real NIH PNG when CXR_DATA_DIR is set, else a generated 512 px grey PNG."""
    data = os.environ.get("CXR_DATA_DIR")
    folder = Path(data) / "nih14" / "images" if data else None
    if folder is not None and folder.is_dir():
        found = sorted(folder.glob("*.png"))
        if found:
            return found[0], "nih14"
    ramp = np.linspace(0, 200, 512, dtype=np.float32)[None, :] + np.zeros((512, 1), np.float32)
    noise = np.random.default_rng(0).normal(0, 20, (512, 512))
    path = tmp / "generated.png"
    cv2.imwrite(str(path), np.clip(ramp + noise, 0, 255).astype(np.uint8))
    return path, "generated"


def _import_xrv() -> tuple[ModuleType | None, float]:
    """torchxrayvision and the seconds its import took, or None when it is not installed."""
    start = time.perf_counter()
    try:
        xrv = importlib.import_module("torchxrayvision")
    except ImportError:
        return None, 0.0
    return xrv, time.perf_counter() - start


def _xrv_contender(xrv: ModuleType, path: Path, size: int) -> tuple[Timed, Timed]:
    """torchxrayvision's read + preprocess, and the same followed by per-label Grad-CAM."""
    import skimage.io  # installed with torchxrayvision
    from torchvision.transforms import Compose

    torch.manual_seed(0)
    model = xrv.models.DenseNet(weights=None).eval()
    nih = [i for i, name in enumerate(model.targets) if name.replace("_", " ") in NIH14_LABELS]
    transform = Compose([xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(size)])

    def read_prepare() -> torch.Tensor:
        img = skimage.io.imread(path)
        img = xrv.datasets.normalize(img, 255)
        img = img.mean(2) if img.ndim == 3 else img
        return torch.from_numpy(transform(img[None, ...]))[None]

    def gradcam_per_label() -> None:
        x = read_prepare()
        cam = GradCAM(model=model, target_layers=[model.features[-1]])
        try:
            for i in nih:
                cam(input_tensor=x, targets=[ClassifierOutputTarget(i)])
        finally:
            cam.activations_and_grads.release()

    return read_prepare, gradcam_per_label


def _from_file(model: CXRModel, path: Path, args: argparse.Namespace, out: dict) -> None:
    """Upload-to-explanation timings of ours and of torchxrayvision + grad-cam on one file."""
    checkpoint = Checkpoint(model, ModelCard.for_spec(model.spec))  # default preprocessing at args.size

    def ours_read_prepare() -> None:
        pixels, _ = read_image(path.read_bytes())
        model_input(checkpoint, pixels)

    def ours() -> None:
        pixels, _ = read_image(path.read_bytes())
        explain(checkpoint, pixels, methods=("cam", "crm"))

    out["ours_read_preprocess_s"] = round(_median_s(ours_read_prepare, args.repeats), 4)
    out["ours_from_file_s"] = round(_median_s(ours, args.repeats), 4)
    xrv, import_s = _import_xrv()
    if xrv is None:
        out["torchxrayvision"] = "not installed"
        return
    out["torchxrayvision"] = xrv.__version__
    out["xrv_import_s"] = round(import_s, 2)
    read_prepare, gradcam = _xrv_contender(xrv, path, args.size)
    out["xrv_read_preprocess_s"] = round(_median_s(read_prepare, args.repeats), 4)
    out["xrv_gradcam_from_file_s"] = round(_median_s(gradcam, max(2, args.repeats // 2)), 4)
    out["speedup_vs_xrv_gradcam"] = round(out["xrv_gradcam_from_file_s"] / out["ours_from_file_s"], 1)
    out["preprocess_speedup_vs_xrv"] = round(out["xrv_read_preprocess_s"] / out["ours_read_preprocess_s"], 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="densenet121")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = create_model(args.model, labels=NIH14_LABELS, input_size=args.size, mean=0.5, std=0.25).eval()
    pixels = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    x, _ = model_input(model, pixels)

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    def ours() -> None:
        explain(model, x, methods=("cam", "crm"))

    def package_per_label() -> None:
        cam = GradCAM(model=model, target_layers=[model.cam_module()])
        try:
            for i in range(len(NIH14_LABELS)):
                cam(input_tensor=x, targets=[ClassifierOutputTarget(i)])
        finally:
            cam.activations_and_grads.release()

    out = {
        "model": args.model,
        "size": args.size,
        "labels": len(NIH14_LABELS),
        "threads": torch.get_num_threads(),
    }
    out["forward_s"] = round(_median_s(forward, args.repeats), 4)
    out["predict_cam_crm_s"] = round(_median_s(ours, args.repeats), 4)
    out["ratio_to_forward"] = round(out["predict_cam_crm_s"] / out["forward_s"], 3)
    out["package_gradcam_14_labels_s"] = round(_median_s(package_per_label, max(2, args.repeats // 2)), 4)
    out["speedup_over_package"] = round(out["package_gradcam_14_labels_s"] / out["predict_cam_crm_s"], 1)
    out["meets_target"] = out["ratio_to_forward"] <= TARGET_RATIO
    with tempfile.TemporaryDirectory() as tmp:
        path, out["image"] = _image_file(Path(tmp))
        _from_file(model, path, args, out)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
