"""Do the maps of a lesion-finding model point at the lesions? Pointing game and top-box IoU on phantoms.

Run: .venv/bin/python bench/bench_phantom_localisation.py [--checkpoint checkpoints/demo-resnet18.safetensors]

Scores CAM (= Grad-CAM at the last layer), CRM and the per-label CRM of the checkpoint on the lesion
images of the demo dataset's test split (synthetic phantoms the model never saw) against their true
boxes: the share of maps whose peak lies in a true box (target >= 0.9) and the mean IoU of the map's
best box with its true box (target >= 0.4). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxrcore.demo import DEMO_DATASET, prepare_demo
from cxrcore.evaluate.map_localisation import localisation_report
from cxrcore.store import Workspace

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "demo-resnet18.safetensors"))
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--layer", help="an inner layer for CAM / Grad-CAM, e.g. net.layer3")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        ws = Workspace(home)
        prepare_demo(ws)
        out: dict[str, object] = {
            "checkpoint": Path(args.checkpoint).name,
            "dataset": DEMO_DATASET,
            "cam_layer": args.layer or "last",
        }
        for method in ("cam", "crm", "crm_label"):
            layer = args.layer if method == "cam" else None
            report = localisation_report(
                [args.checkpoint],
                ws,
                DEMO_DATASET,
                "test",
                method=method,
                layer=layer,
                max_images=args.images,
            )
            row = report.table.iloc[0]
            out[method] = {
                "pairs": int(row["pairs"]),
                "pointing": round(float(row["pointing"]), 3),
                "top_box_iou": round(float(row["top_box_iou"]), 3),
                "peerj_map": round(float(row["peerj_map"]), 3),
            }
        out["meets_target"] = any(
            v["pointing"] >= 0.9 and v["top_box_iou"] >= 0.4 for k, v in out.items() if isinstance(v, dict)
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
