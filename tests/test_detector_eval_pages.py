"""Evaluate and Ensembles pages with detectors: box metrics, FROC curves and fused boxes (AppTest)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from page_harness import page, run

from cxrcore.models import create_model, save_checkpoint
from cxrcore.store import Workspace
from cxrcore.ui import state

pytestmark = pytest.mark.slow  # each page runs two small detectors over the demo's test split


@pytest.fixture
def detectors(demo_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    monkeypatch.setenv("CXR_CHECKPOINTS", str(tmp_path / "no-bundled"))  # only the workspace's runs
    paths = []
    for seed, name in enumerate(("det-a", "det-b")):
        torch.manual_seed(seed)
        model = create_model("faster_rcnn_resnet18", labels=["Effusion", "Nodule", "Opacity"], input_size=96)
        paths.append(save_checkpoint(demo_ws.home / "runs" / name / "best", model, {"detector": {}}))
    return paths


def test_evaluate_page_scores_a_detector_per_class_with_froc_curves(demo_ws: Workspace, detectors) -> None:
    at = page("pages/3_Evaluate.py")
    at.session_state[state.CHECKPOINT] = str(detectors[0].resolve())
    run(at)
    table = at.dataframe[0].value
    assert list(table.index)[-1] == "overall" and {"mAP@0.5", "RSNA score", "FROC (CPM)"} <= set(
        table.columns
    )
    assert len(at.get("plotly_chart")) == 1  # the FROC curves
    image_level = at.dataframe[1].value
    assert {"macro", "micro"} <= set(image_level.index)
    assert len(demo_ws.list_predictions()) == 0  # a detector stores detections, not classifier predictions


def test_ensembles_page_fuses_detectors_boxes(demo_ws: Workspace, detectors) -> None:
    at = page("pages/4_Ensembles.py")
    run(at)
    at.multiselect[0].set_value([str(p.resolve()) for p in detectors])
    run(at)
    table = at.dataframe[0].value
    assert list(table.index) == ["det-a/best", "det-b/best", "weighted box fusion", "NMS", "soft-NMS"]
    assert list(table["kind"]) == ["member", "member", "ensemble", "ensemble", "ensemble"]
