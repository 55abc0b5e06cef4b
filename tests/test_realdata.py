"""The real-data recipe and the bundled real-data model: registration, default choice, card figures."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from page_harness import open_tab, page, run, run_page

from cxrcore.cli import main
from cxrcore.models.card import read_card
from cxrcore.models.catalog import BUNDLED_DIR, list_checkpoints
from cxrcore.store import Workspace
from cxrcore.workflows.realdata import (
    DETECT_DATASET,
    REAL_DATASET,
    REGISTER_COMMANDS,
    SOURCE_DATASET,
    command_argv,
    register_real_datasets,
)

BUNDLED = BUNDLED_DIR / "real-densenet121.safetensors"


def test_recipe_commands_fill_in_the_folders_and_keep_patterns_whole() -> None:
    argv = command_argv("data register k --root $CXR_DATA_DIR/kermany --patient-pattern '^(a\\d+)'", "/d x")
    assert argv == ["data", "register", "k", "--root", "/d x/kermany", "--patient-pattern", "^(a\\d+)"]
    assert command_argv("train --init $CXR_HOME/runs/a", "/d", "/h") == ["train", "--init", "/h/runs/a"]


def test_the_bundled_real_data_model_is_the_default(workspace_home: Path) -> None:
    entries = list_checkpoints(workspace_home)
    assert entries[0].path == BUNDLED.resolve()
    assert not entries[0].synthetic and entries[0].source == "bundled"
    card = read_card(BUNDLED)
    assert card.dataset.name == REAL_DATASET and card.weights_dtype == "float16"
    assert card.how_made["data_fingerprint"] == card.dataset.fingerprint
    assert BUNDLED.stat().st_size < 50 * 2**20


@pytest.mark.realdata
def test_real_datasets_register_as_the_recipe_says(data_dir: Path, workspace_home: Path) -> None:
    commands = register_real_datasets(data_dir)
    assert len(commands) == 11 and all(c.startswith("python -m cxrcore ") for c in commands)
    ws = Workspace()
    records = {r.name: r for r in ws.list_datasets()}
    assert records["nih"].n_images == 524 and records["tbx"].n_images == 400
    assert "Pneumonia" in records["kermany"].labels  # the folder's PNEUMONIA joins NIH's label
    merged = ws.load_dataset(REAL_DATASET)
    assert len(merged.index) == 1073 and set(merged.index["source"]) == {"nih14", "kermany", "tbx11k"}
    assert len(merged.boxes) == 638  # 9 NIH + 26 RSNA (as Pneumonia) + 603 TBX11K
    assert set(merged.boxes["label"]) >= {"Pneumonia", "ActiveTuberculosis"}
    # Normal images of NIH and Kermany are the tuberculosis negatives; nothing else is.
    tb = merged.index["Tuberculosis"]
    assert int((tb == 0).sum()) == 167 and int((tb == 1).sum()) == 400
    assert ws.load_dataset(SOURCE_DATASET).labels == ["kermany", "nih14", "tbx11k"]
    card = read_card(BUNDLED)
    assert records[REAL_DATASET].fingerprint == card.how_made["data_fingerprint"]
    # The lesion detector's set: every real image with boxes, NIH films without boxes as negatives.
    assert records["nihbox"].n_images == 554 and records["jsrt"].n_images == 200
    detect = ws.load_dataset(DETECT_DATASET)
    assert len(detect.index) == 1678 and len(detect.boxes) == 1408
    assert "Infiltration" in set(detect.boxes["label"]) and "Infiltrate" not in set(detect.boxes["label"])


def _stored(ws: Workspace) -> dict[str, tuple[dict, pd.DataFrame, pd.DataFrame]]:
    """Every registered dataset: its record (without times), index and boxes."""
    out = {}
    for record in ws.list_datasets():
        fields = {k: v for k, v in vars(record).items() if k not in ("created_at", "updated_at")}
        dataset = ws.load_dataset(record.name)
        out[record.name] = (fields, dataset.index, dataset.boxes)
    return out


@pytest.mark.realdata
def test_the_recipe_registers_and_reports_what_its_commands_do(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CXR_HOME", str(tmp_path / "by-commands"))
    for command in REGISTER_COMMANDS:
        argv = command_argv(command, data_dir)
        assert main([*argv, "--replace"] if argv[1] in ("register", "merge") else argv) == 0
    printed = capsys.readouterr().out
    by_commands = _stored(Workspace())
    monkeypatch.setenv("CXR_HOME", str(tmp_path / "in-process"))
    reported: list[str] = []
    register_real_datasets(data_dir, report=reported.append)
    assert capsys.readouterr().out == ""  # the engine prints nothing itself
    assert "".join(f"{line}\n" for line in reported) == printed
    in_process = _stored(Workspace())
    assert list(in_process) == list(by_commands) and len(in_process) == 10
    for name, (fields, index, boxes) in by_commands.items():
        assert in_process[name][0] == fields, name
        pd.testing.assert_frame_equal(in_process[name][1], index)
        pd.testing.assert_frame_equal(in_process[name][2], boxes)


@pytest.mark.slow  # evaluates the bundled DenseNet on the real test split
@pytest.mark.realdata
def test_card_figures_are_what_evaluate_prints(
    data_dir: Path, workspace_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register_real_datasets(data_dir)
    capsys.readouterr()
    card = read_card(BUNDLED).evaluation
    argv = [*card["command"].split()[3:], "--json"]  # after "python -m cxrcore"
    argv[1] = str(BUNDLED)
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_images"] == card["n_images"]
    groups = {"": (printed["metrics"], card["metrics"])}
    groups.update({k: (printed["by"]["metrics"][k], v) for k, v in card["by"]["groups"].items()})
    for _, (table, expected) in groups.items():
        for label, row in expected.items():
            shown = table[label]
            assert shown["positives"] == row["positives"]
            if row["auroc"] is None:
                assert shown["auroc"] is None
            else:
                assert shown["auroc"] == pytest.approx(row["auroc"], abs=1e-6)
                if row["auroc_lo"] is not None:
                    assert shown["auroc_lo"] == pytest.approx(row["auroc_lo"], abs=1e-6)


@pytest.mark.slow  # uses trained_home
def test_evaluate_page_offers_a_fitting_model_when_the_chosen_one_shares_no_label(
    trained_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import write_png

    from cxrcore.data.adapters import load_source
    from cxrcore.ui import state

    monkeypatch.setenv("CXR_CHECKPOINTS", str(BUNDLED_DIR))
    root = tmp_path / "tb"
    for i, (split, cls) in enumerate(
        (s, c) for s in ("valid", "test") for c in ("normal", "tuberculosis") * 3
    ):
        write_png(root / split / cls / f"{cls}{i}.png", size=(96, 96), seed=i)
    trained_ws.register_dataset("tb-folder", "folder", {"root": str(root)}, load_source("folder", root=root))
    at = page("pages/3_Evaluate.py")
    at.session_state[state.DATASET] = "tb-folder"
    at.session_state[state.CHECKPOINT] = str((BUNDLED_DIR / "demo-tiny.safetensors").resolve())
    run(at)
    assert any("no label in common" in i.value for i in at.info)
    assert not at.get("plotly_chart")
    use = next(b for b in at.button if b.label.startswith("Use "))
    assert "real-densenet121" in use.label  # the one model that predicts Tuberculosis
    use.click()
    run(at)
    assert not any("no label in common" in i.value for i in at.info)
    assert at.get("plotly_chart")
    open_tab(at, "eval_tab", "Metrics table")
    assert "Tuberculosis" in at.dataframe[0].value.index


@pytest.mark.slow  # uses trained_home
def test_models_page_shows_the_card_test_figures(
    trained_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXR_CHECKPOINTS", str(BUNDLED_DIR))
    at = run_page("pages/6_Models.py")
    figures = next(d.value for d in at.dataframe if "nih14" in d.value.columns)
    card = read_card(BUNDLED).evaluation
    assert list(figures.columns) == ["all", "kermany", "nih14", "tbx11k"]
    expected = card["metrics"]["Tuberculosis"]
    assert figures.loc["Tuberculosis", "all"].startswith(f"{expected['auroc']:.3f} [")
    assert figures.loc["Tuberculosis", "all"].endswith(f"{expected['positives']} pos.")
