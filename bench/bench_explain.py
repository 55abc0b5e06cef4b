"""Explanation speed: predictions + CAM for every label + CRM against the forward pass alone, and
against the grad-cam package's Grad-CAM called once per label.

Run: .venv/bin/python bench/bench_explain.py [--model densenet121] [--size 224] [--repeats 5]

Untrained weights (timing does not depend on them), 14 labels, one grey image. Prints one JSON
object; the target is explain(cam + crm) <= 1.25x the forward pass.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from cxrcore.explain.engine import explain, model_input
from cxrcore.labels import NIH14_LABELS
from cxrcore.models import create_model

TARGET_RATIO = 1.25


def _median_s(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
