"""Evaluate and Ensembles pages with detectors: box metrics, FROC curves and fused boxes (AppTest)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from page_harness import page, run

from cxrcore.evaluate.detector_threshold import detector_operating_points
from cxrcore.models import create_model, save_checkpoint
from cxrcore.models.card import read_card
from cxrcore.models.checkpoint import write_card
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


def _store_cut(path: Path, cut: float) -> None:
    """Store a score threshold in the detector's card as if chosen on the demo's validation split."""
    card = read_card(path)
    fitted = {"dataset": "demo-phantoms", "split": "valid", "n_images": 24, "n_boxes": 30}
    sweep = pd.DataFrame({"f1": [0.5]}, index=pd.Index([cut], name="score_threshold"))
    write_card(
        path, card.replace(operating_points=detector_operating_points(cut, card.labels, fitted, sweep))
    )


def _captions(at) -> str:
    return " ".join(str(c.value) for c in at.caption)


def test_evaluate_page_scores_a_detector_per_class_with_froc_curves(demo_ws: Workspace, detectors) -> None:
    _store_cut(detectors[0], 0.3)
    at = page("pages/3_Evaluate.py")
    at.session_state[state.CHECKPOINT] = str(detectors[0].resolve())
    run(at)
    (slider,) = [s for s in at.slider if s.label == "Box score threshold"]
    assert slider.value == pytest.approx(0.3)
    assert "count boxes scoring 0.30 or more; the slider starts at 0.30: chosen on validation" in _captions(
        at
    )
    table = at.dataframe[0].value
    assert list(table.index)[-1] == "overall" and {"mAP@0.5", "RSNA score", "FROC (CPM)"} <= set(
        table.columns
    )
    assert len(at.get("plotly_chart")) == 1  # the FROC curves
    image_level = at.dataframe[1].value
    assert {"macro", "micro"} <= set(image_level.index)
    assert len(demo_ws.list_predictions()) == 0  # a detector stores detections, not classifier predictions


def test_ensembles_page_fuses_detectors_boxes(demo_ws: Workspace, detectors) -> None:
    _store_cut(detectors[1], 0.3)
    at = page("pages/4_Ensembles.py")
    run(at)
    at.multiselect[0].set_value([str(p.resolve()) for p in detectors])
    run(at)
    (slider,) = [s for s in at.slider if s.label == "Box score threshold"]
    assert slider.value == pytest.approx(0.3)  # the lowest of the members' defaults
    assert "0.50 (default), 0.30 (chosen on validation)" in _captions(at)
    table = at.dataframe[0].value
    assert list(table.index) == ["det-a/best", "det-b/best", "weighted box fusion", "NMS", "soft-NMS"]
    assert list(table["kind"]) == ["member", "member", "ensemble", "ensemble", "ensemble"]
