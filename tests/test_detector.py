"""Lesion detectors: registry entries by task, checkpoints, trunk transfer, boxes in the right pixel space."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cxrcore.data.augment import Augment, keep_boxes, warp_boxes
from cxrcore.data.detections import DETECTION_COLUMNS
from cxrcore.models import create_model, list_models, load_checkpoint, model_info, save_checkpoint
from cxrcore.models.checkpoint import Checkpoint, as_checkpoint
from cxrcore.models.detection import detect, outputs_to_frame
from cxrcore.models.detector import CXRDetector, anchor_sizes, load_trunk_weights, parse_name
from cxrcore.models.model_card import ModelCard
from cxrcore.preprocess import PreprocessConfig, boxes_from_input, boxes_to_input

SMALL = {"labels": ["Nodule", "Mass"], "input_size": 96}


def test_the_registry_lists_detectors_and_classifiers_by_task() -> None:
    detectors, classifiers = list_models(task="detect"), list_models(task="classify")
    assert {"faster_rcnn_resnet18", "faster_rcnn_resnet50", "mask_rcnn_resnet18"} <= set(detectors)
    assert "faster_rcnn_mobilenetv3_large_100" in detectors
    assert not set(detectors) & set(classifiers)
    assert sorted(detectors + classifiers) == list_models()
    assert model_info("faster_rcnn_resnet18")["task"] == "detect"
    assert model_info("resnet18")["task"] == "classify"
    with pytest.raises(ValueError, match="valid options: classify, detect"):
        list_models(task="segment")
    assert parse_name("mask_rcnn_densenet121") == ("mask_rcnn", "densenet121")


def test_a_detector_returns_boxes_per_class_with_zero_based_labels() -> None:
    model = create_model("faster_rcnn_resnet18", **SMALL)
    assert isinstance(model, CXRDetector) and model.labels == ("Nodule", "Mass")
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(1, 96, 96)])[0]
    assert out["boxes"].shape[1] == 4
    assert set(out["labels"].tolist()) <= {0, 1}
    model.train()
    losses = model(
        [torch.rand(1, 96, 96)], [{"boxes": torch.tensor([[10.0, 10, 40, 50]]), "labels": torch.tensor([1])}]
    )
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} == set(losses)
    with pytest.raises(ValueError, match="float images"):
        model([torch.rand(3, 96, 96)])


def test_anchor_sizes_follow_the_input_size() -> None:
    assert anchor_sizes(512)[0] == (32.0, 32.0 * 1.41)
    assert anchor_sizes(256)[-1][0] == 128.0


def test_detector_checkpoint_round_trip_keeps_task_weights_and_normalisation(tmp_path) -> None:
    model = create_model("mask_rcnn_resnet18", mean=0.41, std=0.22, **SMALL)
    path = save_checkpoint(tmp_path / "det", model, {"detector": {"kind": "mask_rcnn"}})
    loaded = load_checkpoint(path)
    assert loaded.task == "detect" and loaded.card.detector == {"kind": "mask_rcnn"}
    assert isinstance(loaded.model, CXRDetector) and loaded.model.net.transform.image_mean == [0.41]
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key
    with pytest.raises(Exception, match="task 'classify' but the model is a detect model"):
        Checkpoint(model, ModelCard.for_spec(model.spec))
    assert as_checkpoint(model).task == "detect"


def test_a_classifier_initialises_the_detector_trunk_by_name() -> None:
    classifier = create_model("resnet18", labels=["a"], input_size=64)
    detector = create_model("faster_rcnn_resnet18", **SMALL)
    loaded = load_trunk_weights(detector, classifier.state_dict())
    assert loaded == len(detector.trunk().state_dict())
    assert torch.equal(detector.trunk().conv1.weight, classifier.net.conv1.weight)
    dense = create_model("faster_rcnn_densenet121", **SMALL)
    assert load_trunk_weights(dense, create_model("densenet121", labels=["a"]).state_dict()) > 700
    with pytest.raises(ValueError, match="same backbone \\(resnet18\\)"):
        load_trunk_weights(detector, create_model("tiny", labels=["a"]).state_dict())


def test_boxes_move_onto_the_input_square_and_back() -> None:
    cfg = PreprocessConfig(input_size=128, fit="pad")
    boxes = pd.DataFrame({"x": [10.0, 200.0], "y": [40.0, 5.0], "w": [30.0, 50.0], "h": [20.0, 60.0]})
    moved = boxes_to_input(boxes, 256, 128, cfg)  # a wide image: scaled by 0.5, padded 32 px on top
    assert moved.iloc[0].tolist() == [5.0, 52.0, 15.0, 10.0]
    back = boxes_from_input(moved[["x", "y", "w", "h"]].to_numpy(), 256, 128, cfg)
    np.testing.assert_allclose(back, boxes.to_numpy(), atol=1e-9)


def test_network_boxes_come_back_in_the_original_image_pixels() -> None:
    model = create_model("faster_rcnn_resnet18", **SMALL)
    checkpoint = as_checkpoint(model)  # preprocessing: pad into 96 px
    outputs = {
        "boxes": torch.tensor([[24.0, 36.0, 48.0, 60.0], [0.0, 0.0, 96.0, 10.0]]),
        "labels": torch.tensor([1, 0]),
        "scores": torch.tensor([0.9, 0.2]),
    }
    frame = outputs_to_frame(outputs, "img", model.labels, (100, 200), checkpoint, score_threshold=0.5)
    # a 200 x 100 image is shrunk by 96 / 200 and padded by 24 px above: (24, 36) -> (50, 25)
    assert list(frame.columns) == list(DETECTION_COLUMNS)
    assert frame.iloc[0][["label", "x", "y", "w", "h"]].tolist() == ["Mass", 50.0, 25.0, 50.0, 50.0]
    assert len(frame) == 1  # the 0.2 box is below the threshold


def test_detect_on_an_image_gives_sorted_boxes_inside_it_and_refuses_a_classifier() -> None:
    checkpoint = as_checkpoint(create_model("faster_rcnn_resnet18", **SMALL))
    pixels = np.random.default_rng(0).random((120, 90), dtype=np.float32)
    frame = detect(checkpoint, pixels, image_id="x")
    assert len(frame) > 0 and (frame["image_id"] == "x").all()
    assert (frame["x"] >= 0).all() and (frame["x"] + frame["w"] <= 90 + 1e-6).all()
    assert (frame["y"] + frame["h"] <= 120 + 1e-6).all()
    assert frame["score"].is_monotonic_decreasing
    with pytest.raises(ValueError, match="not a detector"):
        detect(as_checkpoint(create_model("tiny", labels=["a"])), pixels)


def test_augmentation_moves_boxes_with_the_image() -> None:
    image = np.zeros((64, 64), np.uint8)
    image[20:30, 10:40] = 255
    matrix = Augment(degrees=0.0, hflip=False).matrix(image.shape, np.random.default_rng(3))
    from cxrcore.data.augment import warp

    moved = warp(image, matrix)
    box = warp_boxes(np.array([[10.0, 20.0, 40.0, 30.0]]), matrix, image.shape)[0]
    ys, xs = np.nonzero(moved > 127)
    assert abs(xs.min() - box[0]) <= 1.5 and abs(xs.max() + 1 - box[2]) <= 1.5
    assert abs(ys.min() - box[1]) <= 1.5 and abs(ys.max() + 1 - box[3]) <= 1.5
    assert keep_boxes(np.array([[0.0, 0.0, 1.0, 10.0], [0.0, 0.0, 5.0, 5.0]])).tolist() == [False, True]


@pytest.mark.slow
def test_a_detector_trained_for_a_few_steps_on_phantoms_writes_a_usable_checkpoint(demo_ws, capsys) -> None:
    from cxrcore.cli import main
    from cxrcore.workflows.demo import DEMO_DATASET

    args = [
        "train",
        "--task",
        "detect",
        "--dataset",
        DEMO_DATASET,
        "--model",
        "resnet18",
        "--input-size",
        "96",
    ]
    args += [
        "--epochs",
        "1",
        "--steps-per-epoch",
        "4",
        "--batch-size",
        "2",
        "--run-name",
        "det",
        "--lr",
        "3e-4",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "val mAP@0.5" in out and "best checkpoint" in out
    checkpoint = load_checkpoint(demo_ws.home / "runs" / "det" / "best.safetensors")
    card = checkpoint.card
    assert checkpoint.task == "detect" and card.spec.architecture == "faster_rcnn_resnet18"
    assert card.detector["classes"] == ["Effusion", "Nodule", "Opacity"] == list(checkpoint.labels)
    assert card.detector["training"] == "complete" and card.detector["init"] == "random"
    assert card.selected_by == "val_map50" and "val_ap50_per_label" in card.metrics
    assert card.training_config["task"] == "detect"
    index = demo_ws.load_dataset(DEMO_DATASET).index
    from cxrcore.io.reader import read_image

    pixels, _ = read_image(index["path"].iloc[0])
    frame = detect(checkpoint, pixels)
    h, w = pixels.shape
    assert set(frame["label"]) <= set(checkpoint.labels)
    assert ((frame["x"] + frame["w"]) <= w + 1e-6).all() and ((frame["y"] + frame["h"]) <= h + 1e-6).all()


def test_training_refuses_a_detector_for_classification_and_a_dataset_without_boxes(demo_ws, capsys) -> None:
    from cxrcore.cli import main
    from cxrcore.workflows.demo import DEMO_DATASET

    assert main(["train", "--dataset", DEMO_DATASET, "--model", "faster_rcnn_resnet18", "--epochs", "1"]) != 0
    assert "is a detect model, not a classify one" in capsys.readouterr().err


def _saved_detector(ws, name: str, seed: int) -> str:
    torch.manual_seed(seed)
    model = create_model("faster_rcnn_resnet18", labels=["Effusion", "Nodule", "Opacity"], input_size=96)
    return str(save_checkpoint(ws.home / "runs" / name, model, {"detector": {"kind": "faster_rcnn"}}))


@pytest.mark.slow
def test_cli_evaluates_a_detector_with_heat_map_boxes_beside_it_and_fuses_detectors(demo_ws, capsys) -> None:
    import json
    from pathlib import Path

    from cxrcore.cli import main
    from cxrcore.workflows.demo import DEMO_DATASET

    first, second = _saved_detector(demo_ws, "det-a", 0), _saved_detector(demo_ws, "det-b", 1)
    tiny = str(Path(__file__).resolve().parents[1] / "checkpoints" / "demo-tiny.safetensors")
    args = ["evaluate", first, "--dataset", DEMO_DATASET, "--bootstrap", "20", "--heatmaps", tiny, "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "detect" and out["n_images"] > 0
    classes = [row["class"] for row in out["boxes"]]
    assert classes[-1] == "overall" and set(classes[:-1]) <= {"Effusion", "Nodule", "Opacity"}
    assert {"mAP@0.5", "rsna", "froc@1", "cpm", "coco_mAP"} <= set(out["boxes"][0])
    assert [row["label"] for row in out["image_level"]][-2:] == ["macro", "micro"]
    sources = {row["source"] for row in out["heat_map_comparison"]}
    assert sources == {"runs/det-a", "checkpoints/demo-tiny (CRM boxes)"}
    assert main(["ensemble", first, second, "--dataset", DEMO_DATASET, "--json"]) == 0
    table = json.loads(capsys.readouterr().out)["table"]
    assert [row["model"] for row in table] == [
        "runs/det-a",
        "runs/det-b",
        "weighted box fusion",
        "NMS",
        "soft-NMS",
    ]
    assert main(["ensemble", first, tiny, "--dataset", DEMO_DATASET]) != 0
    assert "classifiers or of detectors, not both" in capsys.readouterr().err
