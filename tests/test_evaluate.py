"""Batch prediction stored in the workspace, checkpoint evaluation and ensemble comparison, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxrcore.cli import main
from cxrcore.data.index import DatasetError
from cxrcore.data.split import split_rows
from cxrcore.evaluate.predict import predict
from cxrcore.evaluate.report import compare_ensembles, evaluate_checkpoint
from cxrcore.models import load_checkpoint, read_card
from cxrcore.models.readout import calibrate_logits
from cxrcore.store import Workspace

# Every test here uses trained_home: two models trained once per session (~11 s), then copied per test.
pytestmark = pytest.mark.slow

DATASET = "demo-phantoms"


def _ckpt(ws: Workspace, run: str) -> Path:
    return ws.home / "runs" / run / "best.safetensors"


def test_predictions_match_the_model_and_are_stored_and_reused(trained_ws: Workspace) -> None:
    ckpt = _ckpt(trained_ws, "tiny")
    seen: list[tuple[int, int]] = []
    first = predict(
        ckpt, trained_ws, DATASET, "test", batch_size=7, progress=lambda d, t: seen.append((d, t))
    )
    rows = split_rows(trained_ws.load_dataset(DATASET).index, "test")
    assert not first.from_cache
    assert list(first.table["image_id"]) == list(rows["image_id"])
    assert seen[-1] == (len(rows), len(rows)) and len(seen) == -(-len(rows) // 7)
    # The stored logits are the model's own on the same preprocessed input.
    model = load_checkpoint(ckpt).model
    assert first.labels == model.labels
    np.testing.assert_allclose(first.raw_prob, 1 / (1 + np.exp(-first.logits)), atol=1e-12)
    # Training calibrated the checkpoint on validation: the table's probabilities are the card's.
    card = read_card(ckpt)
    assert card.calibration is not None and card.operating_points["thresholds"]
    np.testing.assert_allclose(first.y_prob, calibrate_logits(card.calibration, card.labels, first.logits))
    truth = rows[list(first.labels)].to_numpy(dtype=float)
    np.testing.assert_array_equal(np.isnan(first.y_true), np.isnan(truth))
    np.testing.assert_array_equal(np.nan_to_num(first.y_true, nan=-1), np.nan_to_num(truth, nan=-1))
    again = predict(ckpt, trained_ws, DATASET, "test", progress=lambda d, t: seen.append((d, t)))
    assert again.from_cache and len(seen) == -(-len(rows) // 7)  # no forward pass the second time
    pd.testing.assert_frame_equal(again.table, first.table)
    listed = [p for p in trained_ws.list_predictions(DATASET) if p["split"] == "test"]  # valid: calibration
    assert [(p["split"], p["n_images"]) for p in listed] == [("test", len(rows))]


def test_a_new_split_or_checkpoint_makes_a_new_prediction_table(trained_ws: Workspace) -> None:
    from cxrcore.data.split import patient_split

    a = predict(_ckpt(trained_ws, "tiny"), trained_ws, DATASET, "test")
    b = predict(_ckpt(trained_ws, "resnet18"), trained_ws, DATASET, "test")
    assert a.meta["key"] != b.meta["key"] and not b.from_cache
    index = patient_split(trained_ws.load_dataset(DATASET).index, (0.5, 0.25, 0.25), seed=3)
    trained_ws.save_split(DATASET, index, fractions=[0.5, 0.25, 0.25], seed=3)
    c = predict(_ckpt(trained_ws, "tiny"), trained_ws, DATASET, "test")
    assert not c.from_cache and c.meta["key"] != a.meta["key"]
    assert len(c.table) == int((index["split"] == "test").sum())


def test_evaluation_uses_validation_thresholds_and_matches_sklearn(trained_ws: Workspace) -> None:
    result = evaluate_checkpoint(_ckpt(trained_ws, "resnet18"), trained_ws, DATASET, "test", n_boot=200)
    preds = result.predictions
    assert set(result.thresholds) == set(preds.labels)
    assert all(0.0 <= t <= 1.0 for t in result.thresholds.values())
    for j, label in enumerate(preds.labels):
        known = ~np.isnan(preds.y_true[:, j])
        expected = roc_auc_score(preds.y_true[known, j], preds.y_prob[known, j])
        row = result.summary.loc[label]
        assert row["auroc"] == pytest.approx(expected, abs=1e-9)
        assert row["auroc_lo"] <= row["auroc"] <= row["auroc_hi"]
        assert row["threshold"] == pytest.approx(result.thresholds[label])
    assert {"macro", "micro"} <= set(result.summary.index)


def test_evaluation_by_a_column_scores_each_group_alone(trained_ws: Workspace) -> None:
    ckpt = _ckpt(trained_ws, "tiny")
    result = evaluate_checkpoint(ckpt, trained_ws, DATASET, "test", n_boot=100, by="view")
    index = trained_ws.load_dataset(DATASET).index.set_index("image_id")
    preds = result.predictions
    views = preds.table["image_id"].map(index["view"]).to_numpy()
    assert set(result.groups) == set(views) and len(result.groups) == 2
    for view, table in result.groups.items():
        rows = views == view
        for j, label in enumerate(preds.labels):
            y, p = preds.y_true[rows, j], preds.y_prob[rows, j]
            assert table.loc[label, "positives"] == int(np.nansum(y))
            if 0 < np.nansum(y) < rows.sum():
                assert table.loc[label, "auroc"] == pytest.approx(roc_auc_score(y, p), abs=1e-9)
    with pytest.raises(DatasetError, match="no column 'hospital'"):
        evaluate_checkpoint(ckpt, trained_ws, DATASET, "test", n_boot=10, by="hospital")


def test_ensemble_comparison_scores_members_and_all_four_methods(trained_ws: Workspace) -> None:
    paths = [_ckpt(trained_ws, "tiny"), _ckpt(trained_ws, "resnet18")]
    result = compare_ensembles(paths, trained_ws, DATASET, n_boot=200)
    members = ["tiny/best", "resnet18/best"]
    ensembles = ["ensemble:vote", "ensemble:mean", "ensemble:weighted", "ensemble:stack"]
    assert result.names == members + ensembles
    mean_rows = result.table[result.table["label"] == "mean"].set_index("model")
    assert list(mean_rows.index) == members + ensembles
    # The simple average's scores are the mean of the members' probabilities on the same images.
    np.testing.assert_allclose(
        result.test_scores["ensemble:mean"],
        (result.test_scores["tiny/best"] + result.test_scores["resnet18/best"]) / 2,
        atol=1e-12,
    )
    weights = np.asarray(result.fitted["ensemble:weighted"]["weights"])
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, atol=1e-9)
    ens = mean_rows.loc[ensembles]
    assert set(ens["vs_best_member"]) <= set(members)
    label_rows = result.table[(result.table["kind"] == "ensemble") & (result.table["label"] != "mean")]
    assert label_rows["p_value"].between(0, 1).all()


def test_cli_predict_evaluate_and_ensemble_print_json(
    trained_ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny, res = str(_ckpt(trained_ws, "tiny")), str(_ckpt(trained_ws, "resnet18"))
    assert main(["predict", tiny, "--dataset", DATASET, "--split", "test", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["split"] == "test" and info["from_cache"] is False and info["n_images"] > 0
    assert info["calibration"] == "platt"  # fitted when training ended ("auto" after weighted BCE)
    assert main(["evaluate", tiny, "--dataset", DATASET, "--bootstrap", "100", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threshold_rule"] == "youden" and "macro" in report["metrics"]
    args = ["ensemble", tiny, res, "--dataset", DATASET, "--methods", "mean,vote", "--bootstrap", "100"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "ensemble:mean" in text and "ensemble:vote" in text and "*" in text


def test_cli_errors_are_one_line(trained_ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = str(_ckpt(trained_ws, "tiny"))
    assert main(["evaluate", tiny, "--dataset", "demo-phantom"]) == 2
    assert "did you mean 'demo-phantoms'" in capsys.readouterr().err
    assert main(["predict", "missing.safetensors", "--dataset", DATASET]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["ensemble", tiny, "--dataset", DATASET, "--methods", "avg"]) == 2
    assert "error: " in capsys.readouterr().err


def test_bundled_checkpoint_card_holds_the_figures_of_the_written_file(
    trained_ws: Workspace, tmp_path: Path
) -> None:
    from cxrcore.models.card import guard_path, read_card
    from cxrcore.workflows.bundle import bundle_checkpoint

    source = _ckpt(trained_ws, "tiny")
    target = tmp_path / "shipped" / "tiny.safetensors"
    evaluate_on = {"workspace": trained_ws, "dataset": DATASET, "by": "view", "n_boot": 100}
    written = bundle_checkpoint(source, target, {"command": "x"}, evaluate_on=evaluate_on)
    card = read_card(written)
    assert card.weights_dtype == "float16" and card.how_made == {"command": "x"}
    assert guard_path(written).is_file() == guard_path(source).is_file()
    again = evaluate_checkpoint(written, trained_ws, DATASET, "test", n_boot=100, by="view")
    for label, row in card.evaluation["metrics"].items():
        assert row["positives"] == again.summary.loc[label, "positives"]
        assert row["auroc"] == pytest.approx(again.summary.loc[label, "auroc"], abs=1e-6)
    assert set(card.evaluation["by"]["groups"]) == set(again.groups)
