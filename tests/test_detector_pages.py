"""Lesion detectors on the dashboard (AppTest): the Train form's detector fields, the Explain page's
detector panel (run once per image, the threshold only filters), the Models page's detector card."""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DETECTOR_CLASSES, save_detector, write_png
from page_harness import count_calls, html_tables, page, panel_rows, run, run_page
from PIL import Image
from streamlit.testing.v1 import AppTest

from cxrcore.data.adapters import load_source
from cxrcore.evaluate.detector_threshold import detector_operating_points
from cxrcore.explain.panel import beside_first_row, detection_tile, panel_png
from cxrcore.io import read_image
from cxrcore.models import detection, load_checkpoint
from cxrcore.models.card import read_card
from cxrcore.models.catalog import BUNDLED_DIR
from cxrcore.models.checkpoint import write_card
from cxrcore.models.detection import DEFAULT_SCORE_THRESHOLD, detect
from cxrcore.models.detector_names import DETECTOR_BACKBONES, DETECTOR_KINDS
from cxrcore.store import Workspace
from cxrcore.train import jobs
from cxrcore.train.config import DETECT_DEFAULTS
from cxrcore.ui import detections as ud
from cxrcore.ui import state
from cxrcore.ui.charts import loss_figure, score_figure
from cxrcore.workflows.demo import DEMO_DATASET

TRAIN, EXPLAIN, MODELS = "pages/2_Train.py", "pages/5_Explain.py", "pages/6_Models.py"
CLASSES = list(DETECTOR_CLASSES)
CLASSIFIER = "demo-localiser"  # a bundled classifier of the demo labels; the only one the pages see here


@pytest.fixture
def ws(demo_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The demo workspace with one bundled classifier (the demo localiser) and no detector."""
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    for path in BUNDLED_DIR.glob(f"{CLASSIFIER}.*"):
        shutil.copy(path, bundled / path.name)
    monkeypatch.setenv("CXR_CHECKPOINTS", str(bundled))
    return demo_ws


def _phantom_png(ws: Workspace) -> Path:
    return sorted((ws.home / "demo" / "phantoms" / "images").glob("*.png"))[0]


def _upload(ws: Workspace) -> AppTest:
    at = run_page(EXPLAIN)
    path = _phantom_png(ws)
    at.file_uploader(key="explain_upload").upload(path.name, path.read_bytes())
    return run(at)


def _keys(at: AppTest, kind: str) -> set[str]:
    return {w.key for w in at.get(kind) if getattr(w, "key", None)}


def _texts(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("markdown", "caption", "info", "error") for e in at.get(kind))


def _detector_caption(at: AppTest) -> str:
    """The caption of the one picture of the detector's boxes."""
    captions = [image.caption for element in at.get("image") for image in element.proto.imgs]
    (found,) = [c for c in captions if c.startswith("Faster R-CNN: ")]
    return found


def test_the_train_form_shows_detector_fields_for_a_detector_and_launches_one(ws: Workspace) -> None:
    at = run_page(TRAIN)
    assert {"train_loss", "train_model"} <= _keys(at, "selectbox")
    assert "train_label_mode" in _keys(at, "radio")
    at.radio(key="train_task").set_value("detect")
    run(at)
    assert at.selectbox(key="train_det_dataset").options == [DEMO_DATASET]
    assert at.selectbox(key="train_det_kind").options == [
        "Faster R-CNN",
        "Mask R-CNN (box-filled masks)",
    ]
    assert len(at.selectbox(key="train_det_backbone").options) == len(DETECTOR_BACKBONES)
    assert at.multiselect(key=f"train_det_classes_{DEMO_DATASET}").value == CLASSES
    assert at.number_input(key="train_det_size").value == 512
    assert at.number_input(key="train_det_lr").value == pytest.approx(DETECT_DEFAULTS["lr"])
    assert at.number_input(key="train_det_batch_size").value == DETECT_DEFAULTS["batch_size"]
    assert at.selectbox(key="train_det_init_resnet18").options == ["Random"]  # no resnet18 classifier here
    assert at.radio(key="train_det_training").value is False  # complete
    # Classifier-only fields are gone; the shared advanced settings stay, without a second freeze box.
    assert not {"train_loss", "train_model"} & _keys(at, "selectbox")
    assert "train_label_mode" not in _keys(at, "radio")
    assert "train_labels" not in _keys(at, "multiselect")
    assert "train_freeze" not in _keys(at, "checkbox") and "train_steps" in _keys(at, "number_input")
    # Head only on a random trunk is refused; a complete run is launched as a detect job.
    at.radio(key="train_det_training").set_value(True)
    next(b for b in at.button if b.label == "Launch").click()
    run(at, expect_error="Head only keeps the trunk as initialised")
    assert jobs.list_jobs(ws) == []
    at.radio(key="train_det_training").set_value(False)
    at.selectbox(key="train_det_kind").set_value("mask_rcnn")
    at.multiselect(key=f"train_det_classes_{DEMO_DATASET}").set_value(["Nodule"])
    at.number_input(key="train_det_size").set_value(96)
    at.number_input(key="train_steps").set_value(1)
    next(b for b in at.button if b.label == "Launch").click()
    run(at)
    assert [s.value for s in at.success] == ["Job 1 launched."]
    config = jobs.get_job(ws, 1).config
    assert (config["task"], config["model"], config["labels"]) == ("detect", "mask_rcnn_resnet18", ["Nodule"])
    assert (config["input_size"], config["lr"], config["freeze_backbone"]) == (96, 3e-4, False)


def test_without_a_dataset_with_boxes_the_detector_form_says_so(workspace_home: Path, tmp_path: Path) -> None:
    for i in range(3):
        write_png(tmp_path / "flat" / "normal" / f"0000000{i}_000.png", seed=i)
    ws = Workspace()
    ws.register_dataset("flat", "folder", {}, load_source("folder", root=str(tmp_path / "flat")))
    at = page(TRAIN)
    at.session_state[state.DATASET] = "flat"
    run(at)
    at.radio(key="train_task").set_value("detect")
    run(at)
    assert any("No registered dataset has boxes" in i.value for i in at.info)
    assert not any(b.label == "Launch" for b in at.button)


def test_explain_shows_a_hint_and_nothing_else_without_a_detector(ws: Workspace) -> None:
    at = _upload(ws)
    assert "No lesion detector yet" in _texts(at)
    assert ud.DETECTOR_WIDGET not in _keys(at, "selectbox")
    assert len(at.get("image")) == 3 and len(panel_rows(at)) == 3  # a picture per label, as before


def test_explain_draws_the_detectors_boxes_and_the_threshold_does_not_run_it_again(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_detector(ws.home)
    detected = count_calls(monkeypatch, detection, "detect")
    at = _upload(ws)
    # The detector is not offered as the classifier; it is picked by default as the lesion detector.
    assert not any("runs/det" in p for p in at.selectbox(key="sidebar_checkpoint").options)
    assert at.selectbox(key=ud.DETECTOR_WIDGET).value == str(path.resolve())
    slider = ud.threshold_key(str(path.resolve()))
    assert at.slider(key=slider).value == pytest.approx(DEFAULT_SCORE_THRESHOLD)
    assert detected[0] == 1
    assert len(at.get("image")) == 3 + 1 and len(panel_rows(at)) == 3  # the detector's picture beside
    assert "box(es) scoring 0.50 or more" in _detector_caption(at)
    pixels, _ = read_image(_phantom_png(ws).read_bytes())
    expected = detect(load_checkpoint(path), pixels)  # the same image and weights give the same boxes
    assert len(expected) > 0
    for threshold in (0.0, 0.3, 0.05):
        at.slider(key=slider).set_value(threshold)
        run(at)
        kept = expected[expected["score"] >= threshold]
        tables = [t for t in html_tables(at) if "class" in t.columns]  # the boxes table
        assert len(tables) == (len(kept) > 0) and sum(len(t) for t in tables) == len(kept)
        assert f"{len(kept)} box(es) scoring {threshold:.2f} or more" in _detector_caption(at)
    (table,) = tables
    assert list(table.columns) == ["class", "score", "x", "y", "w", "h"]
    assert set(table["class"]) <= set(CLASSES) and table["score"].is_monotonic_decreasing
    assert detected[0] == 1  # the threshold only filters the boxes found on upload
    at.selectbox(key=ud.DETECTOR_WIDGET).set_value(ud.NO_DETECTOR)
    run(at)
    assert len(at.get("image")) == 3 and detected[0] == 1


def test_explain_takes_the_maps_in_a_first_turn_and_the_detector_and_lungs_in_a_later_one(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a room of uploads, everyone's maps go before anyone's detector boxes (``cxrcore.ui.turns``):
    the page runs the model in a FIRST turn, the detector and the lung segmenter in LATER ones."""
    from cxrcore.explain import engine
    from cxrcore.models import segmenter
    from cxrcore.ui import turns

    gate = turns.TurnGate(slots=2)
    monkeypatch.setattr(turns, "_GATE", gate)
    seen: list[tuple[str, int | None]] = []

    def recorded(module: object, name: str) -> None:
        original = getattr(module, name)

        def call(*args: object, **kwargs: object) -> object:
            seen.append((name, gate.held()))
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, call)

    recorded(engine, "explain")
    recorded(detection, "detect")
    recorded(segmenter, "segment_lungs")
    save_detector(ws.home)
    bundled = Path(os.environ["CXR_CHECKPOINTS"])
    for path in BUNDLED_DIR.glob("lung-segmenter.*"):  # the lungs' section runs only with its segmenter
        shutil.copy(path, bundled / path.name)
    at = _upload(ws)
    assert not at.exception and len(panel_rows(at)) == 3
    assert seen == [
        ("explain", turns.FIRST),
        ("detect", turns.LATER),
        ("segment_lungs", turns.LATER),
    ]
    assert gate.running == 0 and gate.held() is None


def _with_cut(path: Path, cut: float) -> Path:
    """The detector's card with a score threshold stored as if chosen on the demo's validation split."""
    card = read_card(path)
    fitted = {"dataset": DEMO_DATASET, "split": "valid", "n_images": 24, "n_boxes": 30}
    sweep = pd.DataFrame({"f1": [0.5]}, index=pd.Index([cut], name="score_threshold"))
    write_card(path, card.replace(operating_points=detector_operating_points(cut, CLASSES, fitted, sweep)))
    return path


def test_explain_starts_the_threshold_at_the_detectors_stored_cut_and_resets_it_per_detector(
    ws: Workspace,
) -> None:
    plain = str(save_detector(ws.home, name="det-plain").resolve())
    tuned = str(_with_cut(save_detector(ws.home, name="det-tuned"), 0.3).resolve())
    at = _upload(ws)
    at.selectbox(key=ud.DETECTOR_WIDGET).set_value(tuned)
    run(at)
    assert at.slider(key=ud.threshold_key(tuned)).value == pytest.approx(0.3)
    assert "box(es) scoring 0.30 or more" in _detector_caption(at)
    assert "Starts at 0.30: chosen on validation (demo-phantoms/valid" in _texts(at)
    at.slider(key=ud.threshold_key(tuned)).set_value(0.05)
    run(at)
    assert "box(es) scoring 0.05 or more" in _detector_caption(at)
    at.selectbox(key=ud.DETECTOR_WIDGET).set_value(plain)  # another detector: its own default
    run(at)
    assert at.slider(key=ud.threshold_key(plain)).value == pytest.approx(DEFAULT_SCORE_THRESHOLD)
    assert "box(es) scoring 0.50 or more" in _detector_caption(at)
    assert "Starts at 0.50: default 0.5 (no cut chosen on validation in the model card)" in _texts(at)
    at.selectbox(key=ud.DETECTOR_WIDGET).set_value(tuned)  # and back: the stored cut again
    run(at)
    assert at.slider(key=ud.threshold_key(tuned)).value == pytest.approx(0.3)


def test_a_detector_of_the_classifiers_labels_is_no_ensemble_member(ws: Workspace) -> None:
    classifier = load_checkpoint(BUNDLED_DIR / f"{CLASSIFIER}.safetensors")
    save_detector(ws.home, classes=classifier.labels)  # the same names in the same order
    at = _upload(ws)
    at.toggle(key="explain_show_ensemble").set_value(True)
    run(at)
    assert "No other checkpoint with the same labels." in _texts(at)


def test_the_detector_tile_draws_boxes_and_joins_the_panel_png() -> None:
    pixels = np.full((100, 200), 0.5, np.float32)
    boxes = pd.DataFrame(
        {"label": ["Nodule"], "x": [20.0], "y": [10.0], "w": [60.0], "h": [40.0], "score": [0.9]}
    )
    tile = detection_tile(pixels, boxes, CLASSES, tile=100)
    assert tile.rgb.shape == (50, 100, 3) and tile.boxes.equals(boxes)
    assert (tile.rgb[5:25, 10] != 128).any()  # the box's left edge at x = 20 * 100 / 200
    plain = detection_tile(pixels, boxes.iloc[:0], CLASSES, tile=100)
    assert (plain.rgb == 128).all()
    rows = beside_first_row([[plain], [plain]], tile)
    assert [len(r) for r in rows] == [2, 1]
    assert Image.open(io.BytesIO(panel_png(rows))).size == (2 * (100 + 4), 2 * (50 + 4))


def test_history_charts_cope_with_a_detectors_records() -> None:
    history = [
        {"epoch": 1, "train_loss": 2.0, "val_map50": 0.1, "val_ap50_per_label": {"Nodule": 0.1}},
        {"epoch": 2, "train_loss": 1.5, "val_map50": 0.3, "val_ap50_per_label": {"Nodule": 0.3}},
    ]
    assert [t.name for t in loss_figure(history).data] == ["train"]  # no validation loss recorded
    scores = score_figure(history, "val_map50", "val_ap50_per_label", "Validation mAP@0.5")
    assert [t.name for t in scores.data] == ["Nodule", "macro"] and list(scores.data[1].y) == [0.1, 0.3]


def test_the_models_page_lists_the_detector_by_task_with_its_card(ws: Workspace) -> None:
    path = save_detector(ws.home)
    at = run_page(MODELS)
    table = at.dataframe[0].value.set_index("checkpoint")
    assert table.loc["det/best.safetensors", "task"] == "detect"
    assert table.loc[f"bundled/{CLASSIFIER}.safetensors", "task"] == "classify"
    at.selectbox(key="models_card").set_value(str(path.resolve()))
    run(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Detector"] == "Faster R-CNN" and metrics["Backbone"] == "ResNet-18"
    assert metrics["Training"] == "complete" and metrics["Validation mAP@0.5"] == "0.250"
    ap = at.dataframe[1].value  # after the checkpoints table
    assert ap.set_index("class")["AP@0.5"].to_dict() == {"Effusion": 0.25, "Nodule": 0.1, "Opacity": 0.4}
    text = _texts(at)
    assert "180 images, 211 boxes, augmented" in text and "**Initialisation:** random" in text
    assert "**Box score threshold:** 0.50, default 0.5" in text and "checkpoint calibrate" in text
    assert not any(b.key == "onnx_prepare" for b in at.button)  # ONNX export is for classifiers


def test_the_registry_table_has_a_task_column(ws: Workspace) -> None:
    at = run_page(MODELS)
    at.toggle(key="models_registry").set_value(True)
    run(at)
    registry = at.dataframe[-1].value.set_index("architecture")
    assert registry.loc["faster_rcnn_resnet18", "task"] == "detect"
    assert registry.loc["resnet18", "task"] == "classify"
    assert list(registry.columns[:2]) == ["task", "summary"]
    assert {f"{k}_{b}" for k in DETECTOR_KINDS for b in DETECTOR_BACKBONES} <= set(registry.index)


@pytest.mark.slow  # trains a detector for two steps in a background job and follows it on the page
def test_a_detector_job_shows_its_validation_map_live(ws: Workspace) -> None:
    at = run_page(TRAIN)
    at.radio(key="train_task").set_value("detect")
    run(at)
    at.number_input(key="train_det_size").set_value(96)
    at.number_input(key="train_det_epochs").set_value(1)
    at.number_input(key="train_det_batch_size").set_value(2)
    at.number_input(key="train_steps").set_value(2)
    next(b for b in at.button if b.label == "Launch").click()
    run(at)
    deadline = time.monotonic() + 180
    while (job := jobs.get_job(ws, 1)).active:
        assert time.monotonic() < deadline, jobs.log_tail(ws, 1)
        time.sleep(0.5)
    assert job.status == "finished", job.error
    at = run_page(TRAIN)  # a new session: the finished job from the database alone
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Val mAP@0.5"] == f"{job.metrics['val_map50']:.3f}"
    assert "Val image AUROC" in metrics and "Val AUROC" not in metrics
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert len(titles) == 3 and any("Validation mAP@0.5" in t for t in titles)
    table = at.dataframe[0].value
    assert table["task"].tolist() == ["detect"] and table["val_map50"].iloc[0] == job.metrics["val_map50"]
