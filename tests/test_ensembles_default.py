"""The Ensembles page opens with a ready comparison of the bundled models."""

from __future__ import annotations

from pathlib import Path

import pytest
from page_harness import run_page

from cxrcore.cli import main
from cxrcore.store import Workspace
from cxrcore.ui.evaluate import ensemble_defaults

DEMO_MODELS = ["demo-localiser-b", "demo-localiser", "demo-resnet18"]  # the first three listed (by file name)


def test_the_demo_dataset_opens_with_the_bundled_demo_models(demo_ws: Workspace) -> None:
    dataset, members, note = ensemble_defaults(demo_ws, "demo-phantoms")
    assert dataset == "demo-phantoms" and not note
    assert [Path(m).stem for m in members] == DEMO_MODELS  # not the real-data model, which also fits


def test_a_real_dataset_with_one_real_model_falls_back_to_the_demo(
    demo_ws: Workspace, tmp_path: Path
) -> None:
    index = demo_ws.load_dataset("demo-phantoms").index
    csv = tmp_path / "real-like.csv"
    index[["path", "patient_id", "Nodule", "Effusion", "split"]].to_csv(csv, index=False)
    root = str(Path(index["path"].iloc[0]).parent)  # registered paths must lie inside the root
    args = ["data", "register", "real-like", "--source", "csv", "--csv-path", str(csv), "--root", root]
    assert main(args) == 0
    dataset, members, note = ensemble_defaults(demo_ws, "real-like")
    assert dataset == "demo-phantoms" and [Path(m).stem for m in members] == DEMO_MODELS
    assert "Fewer than two models trained on data like real-like" in note


@pytest.mark.slow  # three models over the demo's validation and test splits
def test_the_page_opens_with_the_comparison(demo_ws: Workspace) -> None:
    at = run_page("pages/4_Ensembles.py")
    table = at.dataframe[0].value
    assert set(DEMO_MODELS) <= {name.split("/")[-1] for name in table.index}
    assert not any("Pick at least two members" in i.value for i in at.info)
