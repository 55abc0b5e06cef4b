"""Evaluate and Ensembles pages, driven by AppTest over two small models trained on the demo phantoms."""

from __future__ import annotations

from pathlib import Path

import pytest
from page_harness import open_tab, run, run_page

from cxrcore.store import Workspace

# Every test here uses trained_home: two models trained once per session (~11 s), then copied per test.
pytestmark = pytest.mark.slow


@pytest.fixture
def ws(trained_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("CXR_CHECKPOINTS", str(tmp_path / "no-bundled"))  # only the workspace's runs
    return trained_ws


def test_evaluate_page_shows_curves_table_and_threshold_tool(ws: Workspace) -> None:
    at = run_page("pages/3_Evaluate.py")
    # Only the open tab is drawn: ROC + PR first, the reliability diagram and the confusion matrix later.
    assert len(at.get("plotly_chart")) == 2 and not at.dataframe
    open_tab(at, "eval_tab", "Metrics table")
    summary = at.dataframe[0].value
    assert {"macro", "micro", "Nodule"} <= set(summary.index)
    nodule = summary.loc["Nodule"]
    assert nodule["auroc_lo"] <= nodule["auroc"] <= nodule["auroc_hi"]
    assert "predictions" in " ".join(b.label for b in at.get("download_button")).lower()
    # Calibration tab: the card's calibration (fitted when training ended) before and after, on test.
    open_tab(at, "eval_tab", "Calibration")
    assert len(at.get("plotly_chart")) == 1
    calibration = next(d.value for d in at.dataframe if "ECE after" in d.value.columns)
    assert {"Nodule", "mean"} <= set(calibration.index)
    assert calibration.loc["mean", "ECE after"] < calibration.loc["mean", "ECE before"]
    assert any("calibrated by Platt scaling" in c.value for c in at.caption)
    assert any("thresholds: Youden" in c.value for c in at.caption)
    # Moving the threshold to 1.0 predicts nothing positive: sensitivity 0.
    open_tab(at, "eval_tab", "Operating point")
    slider = next(s for s in at.slider if s.label == "Threshold")
    slider.set_value(1.0)
    run(at)
    metrics = at.dataframe[-1].value
    assert metrics.loc["sensitivity", "value"] == 0.0
    # Second visit: predictions are read back from the workspace.
    stored = ws.list_predictions()
    # The test split once; the validation splits were predicted when training ended (calibration).
    assert [p["split"] for p in stored].count("test") == 1
    at2 = run_page("pages/3_Evaluate.py")
    assert len(ws.list_predictions()) == len(stored)
    assert any("reused" in c.value for c in at2.caption)


def test_ensembles_page_compares_members_and_methods(ws: Workspace) -> None:
    at = run_page("pages/4_Ensembles.py")
    table = at.dataframe[0].value
    assert len(table) == 6  # the best checkpoints of the two runs + four ensembles
    assert any(str(v).endswith("*") for v in table["auroc"])
    assert len(at.expander) == 4  # what each method fitted
    at.selectbox(key="ens_label").set_value("Nodule")
    run(at)
    assert len(at.get("plotly_chart")) == 1
    table = at.dataframe[0].value
    assert table["p (DeLong)"].iloc[2:].map(lambda v: 0.0 <= float(v) <= 1.0).all()


def test_ensembles_page_scores_localisation_against_the_boxes(ws: Workspace) -> None:
    at = run_page("pages/4_Ensembles.py")
    assert not at.number_input  # the maps' controls stay closed (and PyTorch unloaded) until asked for
    at.toggle(key="loc_show").set_value(True)
    run(at)
    at.number_input(key="loc_images").set_value(5)
    at.button(key="loc_run").click()
    run(at)
    table = at.dataframe[-1].value
    assert set(table.index[:2]) == {"tiny/best", "resnet18/best"} and table.index[2] == "ensemble"
    assert table["peerj_map"].between(0, 1).all() and (table["pairs"] >= 5).all()
    assert (table["pointing_within"] >= table["pointing"]).all()  # 8 px of tolerance by default
    at.number_input(key="loc_tolerance").set_value(0)
    at.button(key="loc_run").click()
    run(at)
    assert "pointing_within" not in at.dataframe[-1].value.columns
