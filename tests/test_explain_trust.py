"""Per-label readings on the Explain page and in the engine: thresholds, calls, trust marks, training data."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from page_harness import html_tables, readings_tables, run, run_page
from PIL import Image

from cxrcore.data.phantoms import render_phantom
from cxrcore.evaluate.trust import (
    MIN_AUROC_LOWER,
    label_readings,
    label_trust,
    labels_table,
    training_summary,
)
from cxrcore.models import read_card
from cxrcore.models.readout import thresholds
from cxrcore.store import Workspace
from cxrcore.ui import state

BUNDLED = Path(__file__).resolve().parents[1] / "checkpoints"
TINY = BUNDLED / "demo-tiny.safetensors"


def test_readings_put_called_labels_first_and_mark_untrustworthy_ones() -> None:
    card = read_card(TINY)
    cut = thresholds(card)
    probabilities = {"Nodule": cut["Nodule"] - 0.01, "Opacity": 0.99, "Effusion": cut["Effusion"]}
    readings = label_readings(card, probabilities)
    assert readings["label"].tolist() == ["Opacity", "Effusion", "Nodule"]
    assert readings["call"].tolist() == ["above", "above", "below"]  # at the threshold counts as above
    trust = label_trust(card).loc["Effusion"]
    evaluation = card.evaluation["metrics"]["Effusion"]
    assert trust["auroc_lo"] == evaluation["auroc_lo"] < MIN_AUROC_LOWER
    assert not trust["reliable"] and "reaches below 0.6" in trust["why"]
    assert label_trust(card).loc["Nodule", "reliable"]  # 74 test positives, interval above 0.6
    bare = card.replace(evaluation=None, operating_points=None)
    readings = label_readings(bare, probabilities)
    assert set(readings["call"]) == {"no threshold"} and not readings["reliable"].any()
    assert readings["label"].tolist() == ["Opacity", "Effusion", "Nodule"]  # by probability


def test_the_labels_table_gives_each_labels_threshold_and_test_figures_before_any_image() -> None:
    card = read_card(TINY)
    table = labels_table(card)
    assert table.index.tolist() == list(card.labels)
    assert table["threshold"].to_dict() == {k: round(v, 3) for k, v in thresholds(card).items()}
    effusion = card.evaluation["metrics"]["Effusion"]
    assert table.loc["Effusion", "test AUROC [95% CI], positives"].startswith(f"{effusion['auroc']:.3f} [")
    assert table.loc["Effusion", "trust"].startswith("unreliable") and table.loc["Nodule", "trust"] == "ok"
    bare = labels_table(card.replace(evaluation=None, operating_points=None))
    assert bare["threshold"].isna().all()
    assert set(bare["trust"]) == {"unreliable: no test figures in the model card"}


def test_the_explain_page_lists_the_models_labels_before_an_image_is_chosen(demo_ws: Workspace) -> None:
    at = run_page("pages/5_Explain.py")
    at.session_state[state.CHECKPOINT] = str(TINY)
    run(at)
    assert any("What this model reads" in m.value for m in at.markdown)
    [table] = html_tables(at)  # a plain table, its index as the first column
    table = table.set_index("label")
    assert table.index.tolist() == list(read_card(TINY).labels)
    assert table.loc["Nodule", "trust"] == "ok"


def test_training_summary_reads_sources_images_and_input_size_from_the_card() -> None:
    real = training_summary(read_card(BUNDLED / "real-densenet121.safetensors"))
    assert real["sources"] == ["kermany", "nih14", "tbx11k"] and real["images"] == 1073
    assert real["input_size"] == 128 and real["calibration"] == "platt" and not real["synthetic"]
    demo = training_summary(read_card(TINY))
    assert demo["synthetic"] and demo["images"] == 2400 and demo["dataset"] == "demo-phantoms-train"


def _png() -> bytes:
    image, _ = render_phantom(np.random.default_rng(5), 128, ["Effusion"])
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow  # a page run with a model
def test_the_explain_page_marks_thresholds_calls_and_trust(demo_ws: Workspace) -> None:
    at = run_page("pages/5_Explain.py")
    at.session_state[state.CHECKPOINT] = str(TINY)
    at.file_uploader(key="explain_upload").upload("phantom.png", _png())
    run(at)
    assert not at.get("plotly_chart")  # the chart only on request
    at.toggle(key="explain_readings_chart").set_value(True)
    run(at)
    card = read_card(TINY)
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    bars, ticks = figure["data"]
    names = [name.removesuffix(" ⚠") for name in bars["y"]]
    assert dict(zip(names, ticks["x"], strict=True)) == pytest.approx(thresholds(card))
    assert "Effusion ⚠" in bars["y"] and "Nodule" in bars["y"]  # unreliable labels are marked
    [table] = readings_tables(at)
    assert list(table.columns[:3]) == ["probability", "threshold", "call"]
    assert table.loc["Effusion", "trust"].startswith("unreliable") and table.loc["Nodule", "trust"] == "ok"
    calls = table["call"].tolist()
    assert calls == sorted(calls, key=["above", "below", "no threshold"].index)  # positives first
    for label, row in table.iterrows():
        assert (row["call"] == "above") == (row["probability"] >= round(thresholds(card)[label], 3))
    assert at.multiselect(key="explain_labels").value == table.index.tolist()  # in the same order
    about = " ".join(m.value for m in at.expander[0].markdown)
    assert "feature distance" in about and "demo-phantoms-train" in about and "input 64 px" in about
    assert isinstance(table, pd.DataFrame)
