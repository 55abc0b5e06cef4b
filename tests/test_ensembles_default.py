"""The Ensembles page opens with a ready comparison of the bundled models."""

from __future__ import annotations

from pathlib import Path

import pytest
from page_harness import run_page

from cxrcore.cli import main
from cxrcore.models.catalog import BUNDLED_DIR
from cxrcore.store import Workspace
from cxrcore.ui.evaluate import ensemble_defaults

DEMO_MODELS = ["demo-localiser", "demo-localiser-b", "demo-resnet18"]  # the first three listed (by name)


def test_the_demo_dataset_opens_with_the_bundled_demo_models(demo_ws: Workspace) -> None:
    dataset, members, note = ensemble_defaults(demo_ws, "demo-phantoms")
    assert dataset == "demo-phantoms" and not note
    assert [Path(m).stem for m in members] == DEMO_MODELS  # not the real-data model, which also fits


def _real_like(ws: Workspace, tmp_path: Path) -> str:
    """The demo's images registered again as if real (not synthetic), with two of its labels."""
    index = ws.load_dataset("demo-phantoms").index
    csv = tmp_path / "real-like.csv"
    index[["path", "patient_id", "Nodule", "Effusion", "split"]].to_csv(csv, index=False)
    root = str(Path(index["path"].iloc[0]).parent)  # registered paths must lie inside the root
    args = ["data", "register", "real-like", "--source", "csv", "--csv-path", str(csv), "--root", root]
    assert main(args) == 0
    return "real-like"


def test_a_real_dataset_with_one_real_model_falls_back_to_the_demo(
    demo_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    for path in BUNDLED_DIR.glob("*.safetensors"):
        if not path.name.startswith("real-densenet121-256"):
            (bundled / path.name).symlink_to(path)
    monkeypatch.setenv("CXR_CHECKPOINTS", str(bundled))
    dataset, members, note = ensemble_defaults(demo_ws, _real_like(demo_ws, tmp_path))
    assert dataset == "demo-phantoms" and [Path(m).stem for m in members] == DEMO_MODELS
    assert "Fewer than two models trained on data like real-like" in note


def test_a_real_dataset_opens_with_the_two_bundled_real_models(demo_ws: Workspace, tmp_path: Path) -> None:
    dataset, members, note = ensemble_defaults(demo_ws, _real_like(demo_ws, tmp_path))
    assert dataset == "real-like" and not note
    assert [Path(m).stem for m in members] == ["real-densenet121", "real-densenet121-256"]


@pytest.mark.slow  # three models over the demo's validation and test splits
def test_the_page_opens_with_the_comparison(demo_ws: Workspace) -> None:
    at = run_page("pages/4_Ensembles.py")
    table = at.dataframe[0].value
    assert set(DEMO_MODELS) <= {name.split("/")[-1] for name in table.index}
    assert not any("Pick at least two members" in i.value for i in at.info)
