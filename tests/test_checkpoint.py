"""Tests for checkpoints (safetensors + model card, atomic writes) and importing foreign weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import torchvision

import cxrcore.models.checkpoint as checkpoint_module
from cxrcore.labels import NIH14_LABELS
from cxrcore.models import (
    CARD_VERSION,
    CheckpointError,
    CXRModel,
    create_model,
    describe_checkpoint,
    file_fingerprint,
    import_state_dict,
    load_checkpoint,
    read_card,
    save_checkpoint,
)
from cxrcore.models.card import raw_card
from cxrcore.models.checkpoint import Checkpoint, as_checkpoint, migrate_checkpoint
from cxrcore.models.model_card import CardError, DatasetRecord, ModelCard
from cxrcore.models.segmenter_card import SEGMENTER_FILE
from cxrcore.preprocess import PreprocessConfig

BUNDLED = Path(__file__).resolve().parents[1] / "checkpoints"
CARD = {
    "train_config": {"epochs": 3, "lr": 1e-3, "batch_size": 8},
    "dataset": "phantoms-200",
    "dataset_fingerprint": "abc123",
    "split_seed": 7,
    "history": [
        {"epoch": 1, "train_loss": 0.9, "val_loss": 0.8, "val_auroc": 0.61},
        {"epoch": 2, "train_loss": 0.7, "val_loss": 0.7, "val_auroc": 0.74},
        {"epoch": 3, "train_loss": 0.6, "val_loss": 0.75, "val_auroc": 0.70},
    ],
    "metrics": {"val_auroc": 0.70, "per_label": {"a": 0.6}},
    "norm_stats": {"mean": 0.45, "std": 0.22, "n_images": 160},
}


def _randomise_buffers(model: torch.nn.Module, seed: int) -> None:
    """Give batch-norm running statistics non-default values so that buffers are really compared."""
    g = torch.Generator().manual_seed(seed)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(torch.randn(buf.shape, generator=g) * 0.1)
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)


def tiny(seed: int = 0, labels: tuple[str, ...] = ("a", "b", "c")) -> CXRModel:
    """A tiny model with seeded weights."""
    torch.manual_seed(seed)
    model = create_model("tiny", labels=labels, mean=0.45, std=0.22)
    _randomise_buffers(model, seed)
    return model.eval()


def grey(size: int, n: int = 2) -> torch.Tensor:
    """A normalised one-channel batch."""
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(3))


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Both models hold identical state dicts."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# ---------------------------------------------------------------- save / load


@pytest.mark.parametrize("name", ["tiny", "custom_cnn"])
def test_round_trip_keeps_weights_spec_card_and_logits(tmp_path: Path, name: str) -> None:
    torch.manual_seed(1)
    model = create_model(name, labels=["x", "y"], input_size=64 if name == "custom_cnn" else None, mean=0.4)
    _randomise_buffers(model, 1)
    model.eval()
    written = save_checkpoint(tmp_path / "run", model, CARD)
    assert written == tmp_path / "run.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.safetensors"]

    checkpoint = load_checkpoint(written)
    loaded, card = checkpoint.model, checkpoint.card
    assert checkpoint.path == written and checkpoint.spec == model.spec and not loaded.training
    assert_same_weights(loaded, model)
    x = grey(64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    assert json.loads((tmp_path / "run.json").read_text())["format_version"] == CARD_VERSION == 2
    assert card.spec == model.spec and card.task == "classify"
    assert card.preprocess == PreprocessConfig(input_size=model.spec.input_size)
    assert set(card.package_versions) >= {"torch", "timm", "numpy", "cxrcore"}
    assert card.created_at.endswith("+00:00")
    assert card.num_parameters == sum(p.numel() for p in model.parameters())
    # The older key names of the mapping land in the typed fields.
    assert card.training_config == CARD["train_config"] and card.history == tuple(CARD["history"])
    assert card.dataset == DatasetRecord("phantoms-200", "abc123", {"seed": 7}, False)
    assert card.metrics == CARD["metrics"] and card.norm_images == 160 and card.extra == {}


def test_sidecar_holds_the_same_card_and_the_weights_hash(tmp_path: Path) -> None:
    weights = save_checkpoint(tmp_path / "run", tiny(), CARD)
    sidecar = json.loads((tmp_path / "run.json").read_text())
    record = sidecar.pop("weights_file")
    assert sidecar == read_card(weights).to_dict() == raw_card(weights)
    assert record["name"] == "run.safetensors" and record["bytes"] == weights.stat().st_size
    assert record["sha256"].startswith(file_fingerprint(weights))


def test_checkpoint_can_be_named_by_base_weights_or_sidecar(tmp_path: Path) -> None:
    model = tiny()
    save_checkpoint(tmp_path / "sub" / "epoch.3", model, {})
    for given in ("sub/epoch.3", "sub/epoch.3.safetensors", "sub/epoch.3.json"):
        assert_same_weights(load_checkpoint(tmp_path / given).model, model)


def test_read_card_does_not_load_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = save_checkpoint(tmp_path / "run", tiny(), CARD)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(safetensors.torch, "load_file", refuse)
    assert read_card(weights).dataset.split_seed == 7
    assert describe_checkpoint(weights)["architecture"] == "tiny"


def test_describe_checkpoint_summarises_the_card(tmp_path: Path) -> None:
    model = tiny()
    weights = save_checkpoint(tmp_path / "run", model, CARD)
    info = describe_checkpoint(weights)
    assert info["architecture"] == "tiny" and info["labels"] == ["a", "b", "c"]
    assert info["input_size"] == 64
    assert info["num_parameters"] == sum(p.numel() for p in model.parameters())
    assert info["dataset"] == "phantoms-200" and info["dataset_fingerprint"] == "abc123"
    assert info["split_seed"] == 7 and info["epochs_trained"] == 3
    assert info["best_validation"] == {"metric": "val_auroc", "value": 0.74, "epoch": 2}
    assert info["file_bytes"] == weights.stat().st_size
    assert info["sha256"] == file_fingerprint(weights) and len(info["sha256"]) == 16
    assert info["created_at"] and info["package_versions"]["timm"]


def test_best_validation_honours_monitor_and_falls_back_to_metrics(tmp_path: Path) -> None:
    by_loss = save_checkpoint(tmp_path / "a", tiny(), {**CARD, "monitor": "val_loss"})
    assert describe_checkpoint(by_loss)["best_validation"] == {"metric": "val_loss", "value": 0.7, "epoch": 2}
    no_history = save_checkpoint(tmp_path / "b", tiny(), {"metrics": {"val_auroc": 0.8}})
    info = describe_checkpoint(no_history)
    assert info["best_validation"] == {"metric": "val_auroc", "value": 0.8, "epoch": None}
    assert info["epochs_trained"] == 0


def test_describe_reads_a_nested_dataset_record(tmp_path: Path) -> None:
    card = {
        "dataset": {"name": "nih", "fingerprint": "f00d", "split": {"seed": 11, "val": 0.1}},
        "epoch": 4,
        "selected_by": "val_loss",
        "metrics": {"val_loss": 0.3, "val_auroc": 0.9},
    }
    info = describe_checkpoint(save_checkpoint(tmp_path / "best", tiny(), card))
    assert (info["dataset"], info["dataset_fingerprint"], info["split_seed"]) == ("nih", "f00d", 11)
    assert info["epochs_trained"] == 4
    assert info["best_validation"] == {"metric": "val_loss", "value": 0.3, "epoch": None}


def test_file_fingerprint_follows_the_weights(tmp_path: Path) -> None:
    first = file_fingerprint(save_checkpoint(tmp_path / "run", tiny(seed=0), {}))
    assert first == file_fingerprint(tmp_path / "run")
    second = file_fingerprint(save_checkpoint(tmp_path / "run", tiny(seed=1), {}))
    assert first != second and all(c in "0123456789abcdef" for c in second)


def test_card_values_that_are_not_json_are_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="object is not JSON-serialisable"):
        save_checkpoint(tmp_path / "run", tiny(), {"train_config": object()})
    assert list(tmp_path.iterdir()) == []


def test_card_converts_paths_and_numpy_values(tmp_path: Path) -> None:
    import numpy as np

    weights = save_checkpoint(tmp_path / "run", tiny(), {"data": tmp_path, "auc": np.float32(0.5)})
    card = read_card(weights)
    assert card.extra == {"data": str(tmp_path), "auc": 0.5}


def _v1_card(weights: Path, **top: object) -> dict:
    """The card of a version 1 file for the same model: sizes and statistics stored twice, flat keys."""
    card = raw_card(weights)
    spec = card["spec"]
    return {
        "format_version": 1,
        "spec": spec,
        "created_at": "2026-01-02T03:04:05+00:00",
        "package_versions": card["package_versions"],
        "num_parameters": card["num_parameters"],
        "training_config": {"dataset": "demo", "model": "tiny", "image_size": 64, "epochs": 2},
        "dataset": {"name": "demo", "fingerprint": "f00d", "split": {"seed": 3}, "synthetic": True},
        "preprocess": {"size": 64, "fit": "crop", "clahe": True, "clahe_clip": 2.0, "clahe_tile": 8,
                       "lung_crop": False},
        "norm": {"mean": spec["mean"], "std": spec["std"], "n_images": 40},
        "history": [{"epoch": 1, "val_auroc": 0.5}, {"epoch": 2, "val_auroc": 0.6}],
        "epoch": 2,
        "monitor": "val_auroc",
        "metrics": {"val_auroc": 0.6},
        "weights_dtype": "float32",
        "how_made": {"command": "python -m cxrcore demo models"},
        **top,
    }  # fmt: skip


def _write_raw(weights: Path, card: dict) -> None:
    tensors = safetensors.torch.load_file(str(weights))
    safetensors.torch.save_file(tensors, str(weights), metadata={"cxr_model_card": json.dumps(card)})


def test_a_version_1_card_is_migrated_on_load_and_by_migrate_checkpoint(tmp_path: Path) -> None:
    model = tiny()
    weights = save_checkpoint(tmp_path / "old", model, {})
    _write_raw(weights, _v1_card(weights, custom_note="kept"))
    checkpoint = load_checkpoint(weights)
    card = checkpoint.card
    assert_same_weights(checkpoint.model, model)
    assert checkpoint.preprocess == PreprocessConfig(input_size=64, fit="crop", clahe=True)
    assert card.training_config["input_size"] == 64 and "image_size" not in card.training_config
    assert card.dataset == DatasetRecord("demo", "f00d", {"seed": 3}, True) and card.synthetic
    assert (card.selected_by, card.norm_images, card.epoch) == ("val_auroc", 40, 2)
    assert card.extra == {"custom_note": "kept"}
    assert describe_checkpoint(weights)["card_version"] == 1
    assert migrate_checkpoint(weights) is True
    stored = raw_card(weights)
    assert stored["format_version"] == 2 and stored["preprocess"] == {
        "fit": "crop", "clahe": True, "clahe_clip": 2.0, "clahe_tile": 8, "lung_crop": False
    }  # fmt: skip
    assert "norm" not in stored and "monitor" not in stored and stored["custom_note"] == "kept"
    assert stored["created_at"] == "2026-01-02T03:04:05+00:00"  # the weights' own provenance stays
    assert load_checkpoint(weights).card == card
    assert_same_weights(load_checkpoint(weights).model, model)
    assert migrate_checkpoint(weights) is False  # already current


def test_a_version_1_card_whose_sizes_disagree_takes_the_preprocessing_size(tmp_path: Path) -> None:
    weights = save_checkpoint(tmp_path / "repurposed", tiny(), {})
    card = _v1_card(weights)
    card["preprocess"]["size"] = 96  # a repurposed run trained at 96 px kept its source's 64 in the spec
    _write_raw(weights, card)
    checkpoint = load_checkpoint(weights)
    assert checkpoint.input_size == checkpoint.preprocess.input_size == checkpoint.spec.input_size == 96


def test_a_card_whose_preprocessing_size_differs_from_the_model_is_refused(tmp_path: Path) -> None:
    model = tiny()
    message = "preprocessing input size 96 differs from the model's input size 64"
    with pytest.raises(CardError, match=message):
        ModelCard.for_spec(model.spec, preprocess=PreprocessConfig(input_size=96))
    with pytest.raises(CheckpointError, match=message):
        save_checkpoint(tmp_path / "run", model, {"preprocess": {"input_size": 96, "fit": "pad"}})
    assert list(tmp_path.iterdir()) == []


def test_unknown_task_and_newer_versions_are_refused(tmp_path: Path) -> None:
    weights = save_checkpoint(tmp_path / "run", tiny(), {})
    card = raw_card(weights)
    _write_raw(weights, {**card, "task": "segment"})
    with pytest.raises(CheckpointError, match=r"unknown task 'segment'; valid options: classify"):
        load_checkpoint(weights)
    _write_raw(weights, {**card, "format_version": 3})
    with pytest.raises(CheckpointError, match="format_version 3"):
        read_card(weights)


def test_a_bare_model_is_a_checkpoint_with_default_preprocessing() -> None:
    model = tiny()
    checkpoint = as_checkpoint(model)
    assert checkpoint.model is model and checkpoint.path is None and checkpoint.fingerprint() is None
    assert checkpoint.preprocess == PreprocessConfig(input_size=64) and checkpoint.labels == ("a", "b", "c")
    assert as_checkpoint(checkpoint) is checkpoint
    with pytest.raises(CheckpointError, match="does not describe the model"):
        Checkpoint(model, checkpoint.card.replace(spec=model.spec.with_labels(["x", "y", "z"])))
    x, image01 = checkpoint.input_tensor(np.full((80, 50), 0.5, np.float32))
    assert x.shape == (1, 1, 64, 64) and image01.shape == (64, 64)


def test_bundled_checkpoints_are_stored_in_the_current_card_version() -> None:
    bundled = sorted(
        p
        for p in BUNDLED.glob("*.safetensors")
        if not p.name.endswith(".guard.safetensors") and p.name != SEGMENTER_FILE  # a card of its own kind
    )
    assert len(bundled) >= 5
    for weights in bundled:
        stored = raw_card(weights)
        assert stored["format_version"] == CARD_VERSION, weights.name
        assert json.loads(weights.with_suffix(".json").read_text())["format_version"] == CARD_VERSION
        assert read_card(weights).to_dict() == stored, weights.name


# ---------------------------------------------------------------- atomic writes


def test_crash_while_writing_weights_leaves_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tiny(seed=0)
    save_checkpoint(tmp_path / "run", old, CARD)
    old_sidecar = (tmp_path / "run.json").read_bytes()

    def crash(tensors: dict, filename: str, metadata: dict | None = None) -> None:
        Path(filename).write_bytes(b"partial weights")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "run", tiny(seed=5), CARD)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.safetensors"]
    assert (tmp_path / "run.json").read_bytes() == old_sidecar
    monkeypatch.undo()
    assert_same_weights(load_checkpoint(tmp_path / "run").model, old)


def _fail_weights_rename(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the final rename of the .safetensors file fail, as a power cut would."""
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        if str(dst).endswith(".safetensors"):
            raise OSError("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint_module.os, "replace", replace)


def test_crash_at_the_final_rename_restores_sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = tiny(seed=0)
    save_checkpoint(tmp_path / "run", old, CARD)
    old_sidecar = (tmp_path / "run.json").read_bytes()
    _fail_weights_rename(monkeypatch)
    with pytest.raises(OSError, match="power cut"):
        save_checkpoint(tmp_path / "run", tiny(seed=5), CARD)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.safetensors"]
    assert (tmp_path / "run.json").read_bytes() == old_sidecar
    assert_same_weights(load_checkpoint(tmp_path / "run").model, old)


def test_crash_on_first_save_leaves_nothing_visible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_weights_rename(monkeypatch)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "run", tiny(), CARD)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- refusing bad files


def test_missing_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing")
    assert issubclass(CheckpointError, ValueError)


def test_truncated_or_foreign_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    weights = save_checkpoint(tmp_path / "run", tiny(), CARD)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is not a readable safetensors file"):
        load_checkpoint(weights)
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="is not a readable safetensors file"):
        read_card(weights)


def test_safetensors_without_card_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bare.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match=r"has no model card.*import_state_dict"):
        load_checkpoint(path)


def _rewrite_card(weights: Path, **changes: object) -> None:
    """Rewrite a checkpoint with its card's spec changed (the weights stay as they are)."""
    card = raw_card(weights)
    card["spec"].update(changes)
    tensors = safetensors.torch.load_file(str(weights))
    safetensors.torch.save_file(tensors, str(weights), metadata={"cxr_model_card": json.dumps(card)})


def test_unknown_architecture_lists_valid_ones(tmp_path: Path) -> None:
    weights = save_checkpoint(tmp_path / "run", tiny(), CARD)
    _rewrite_card(weights, architecture="resnet19")
    with pytest.raises(
        CheckpointError, match=r"unknown model 'resnet19'; did you mean 'resnet18'.*densenet121"
    ):
        load_checkpoint(weights)


def test_shape_mismatch_names_the_first_bad_key(tmp_path: Path) -> None:
    weights = save_checkpoint(tmp_path / "run", tiny(), CARD)
    _rewrite_card(weights, labels=["a", "b", "c", "d", "e"])
    with pytest.raises(
        CheckpointError, match=r"'net\.classifier\.weight': checkpoint \(3, 64\), model \(5, 64\)"
    ):
        load_checkpoint(weights)


def test_unsupported_format_version_is_refused(tmp_path: Path) -> None:
    weights = save_checkpoint(tmp_path / "run", tiny(), CARD)
    card = raw_card(weights)
    card["format_version"] = 99
    tensors = safetensors.torch.load_file(str(weights))
    safetensors.torch.save_file(tensors, str(weights), metadata={"cxr_model_card": json.dumps(card)})
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_checkpoint(weights)


# ---------------------------------------------------------------- importing foreign weights


class NotATensor:
    """An arbitrary object a safe loader must refuse to unpickle."""


def _torchvision_densenet(num_classes: int = 14) -> torch.nn.Module:
    """A torchvision DenseNet-121 with seeded weights and non-default batch-norm statistics."""
    torch.manual_seed(2)
    net = torchvision.models.densenet121(weights=None, num_classes=num_classes)
    _randomise_buffers(net, 2)
    return net.eval()


def _chexnet_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The key layout of CheXNet checkpoints: DataParallel + wrapper prefixes, old names, Sequential head."""
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue  # written by PyTorch versions older than CheXNet's
        for new, old in (("norm1", "norm.1"), ("conv1", "conv.1"), ("norm2", "norm.2"), ("conv2", "conv.2")):
            if "denselayer" in key:
                key = key.replace(f".{new}.", f".{old}.")
        key = key.replace("classifier.", "classifier.0.")
        out[f"module.densenet121.{key}"] = value
    return out


def _assert_matches_torchvision(model: CXRModel, tv: torch.nn.Module) -> None:
    """Every backbone tensor equals its source, and grey logits equal RGB-repeated torchvision logits."""
    ours = model.net.state_dict()
    for key, value in tv.state_dict().items():
        expected = value.sum(dim=1, keepdim=True) if key == "features.conv0.weight" else value
        assert torch.equal(ours[key], expected), key
    x = grey(32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(x.repeat(1, 3, 1, 1)), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def torchvision_densenet() -> torch.nn.Module:
    return _torchvision_densenet()


def test_import_torchvision_densenet_state_dict(
    tmp_path: Path, torchvision_densenet: torch.nn.Module
) -> None:
    path = tmp_path / "densenet121.pth"
    torch.save(torchvision_densenet.state_dict(), path)
    model = import_state_dict(path)
    assert model.spec.architecture == "densenet121" and model.spec.labels == NIH14_LABELS
    assert model.spec.in_chans == 1 and not model.training
    _assert_matches_torchvision(model, torchvision_densenet)


def test_import_chexnet_checkpoint(tmp_path: Path, torchvision_densenet: torch.nn.Module) -> None:
    state = _chexnet_layout(torchvision_densenet.state_dict())
    assert "module.densenet121.features.denseblock1.denselayer1.norm.1.weight" in state
    assert "module.densenet121.classifier.0.weight" in state
    path = tmp_path / "m-25012018-123527.pth.tar"
    torch.save({"epoch": 10, "state_dict": state, "best_loss": 0.14, "optimizer": {"lr": 1e-4}}, path)
    model = import_state_dict(path, labels=NIH14_LABELS)
    _assert_matches_torchvision(model, torchvision_densenet)


def test_import_from_safetensors_and_from_a_mapping(
    tmp_path: Path, torchvision_densenet: torch.nn.Module
) -> None:
    path = tmp_path / "densenet.safetensors"
    safetensors.torch.save_file(torchvision_densenet.state_dict(), str(path))
    _assert_matches_torchvision(import_state_dict(path), torchvision_densenet)
    wrapped = {"model": dict(torchvision_densenet.state_dict())}
    _assert_matches_torchvision(import_state_dict(wrapped), torchvision_densenet)


def test_import_with_other_labels_resets_the_head(torchvision_densenet: torch.nn.Module) -> None:
    model = import_state_dict(torchvision_densenet.state_dict(), labels=["Nodule", "Effusion"])
    assert model.spec.labels == ("Nodule", "Effusion")
    assert model.classifier_module().out_features == 2
    src = torchvision_densenet.state_dict()
    assert torch.equal(
        model.net.state_dict()["features.norm5.running_var"], src["features.norm5.running_var"]
    )


def test_import_torchvision_resnet18() -> None:
    torch.manual_seed(4)
    tv = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    _randomise_buffers(tv, 4)
    model = import_state_dict(tv.state_dict(), architecture="resnet18")
    assert model.spec.labels == ("label_0", "label_1", "label_2")
    x = grey(64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(x.repeat(1, 3, 1, 1)), atol=1e-4, rtol=0)


def test_import_refuses_a_backbone_of_another_architecture() -> None:
    resnet = torchvision.models.resnet18(weights=None).state_dict()
    with pytest.raises(CheckpointError, match=r"\(as densenet121\).*missing \(first: .*unexpected \(first: "):
        import_state_dict(resnet, architecture="densenet121")


def test_import_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": NotATensor()}, path)
    with pytest.raises(CheckpointError, match=r"refused to load.*weights_only=True"):
        import_state_dict(path)


def test_import_errors_for_missing_files_and_non_state_dicts(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        import_state_dict(tmp_path / "none.pth")
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "notes": "no weights"}, path)
    with pytest.raises(CheckpointError, match=r"no state dict of tensors found.*\['epoch', 'notes'\]"):
        import_state_dict(path)


def test_written_files_get_ordinary_permissions(tmp_path: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    weights = save_checkpoint(tmp_path / "run", tiny(seed=0), {})
    sidecar = weights.with_suffix(".json")
    for path in (weights, sidecar):  # not the owner-only mode of a temporary file
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    os.chmod(weights, 0o640)
    save_checkpoint(tmp_path / "run", tiny(seed=1), {})  # a replaced file keeps its mode
    assert weights.stat().st_mode & 0o777 == 0o640
