"""Page tests: the real pages, driven by Streamlit's AppTest against a real workspace."""

from __future__ import annotations

from pathlib import Path

import pytest
from page_harness import open_tab, run, run_page
from streamlit.testing.v1 import AppTest

from cxrcore.store import Workspace
from cxrcore.workflows.demo import DEMO_DATASET


@pytest.fixture
def demo_workspace(demo_ws: Workspace) -> Workspace:
    return demo_ws


def test_home_page_shows_notice_and_demo_dataset(demo_workspace: Workspace) -> None:
    at = run_page("Home.py")
    assert any("not a medical device" in w.value for w in at.warning)
    table = at.dataframe[0].value
    assert list(table["name"]) == [DEMO_DATASET]
    assert table["synthetic"].iloc[0] == "yes"


def explorer_tab(at: AppTest, label: str) -> AppTest:
    """Open one of the Dataset explorer's tabs."""
    return open_tab(at, "explorer_tab", label)


def test_explorer_shows_demo_statistics_leakage_and_gallery(demo_workspace: Workspace) -> None:
    at = run_page("pages/1_Dataset_Explorer.py")
    record = demo_workspace.get_dataset(DEMO_DATASET)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == f"{record.n_images:,}"
    assert metrics["Patients"] == f"{record.n_patients:,}"
    assert metrics["Labels"] == "3"
    assert any("Synthetic demo data" in i.value for i in at.info)
    # Only the open tab runs: the first draw holds the two label charts and nothing of the others.
    assert len(at.get("plotly_chart")) == 2 and not at.success and not at.get("image")
    explorer_tab(at, "Patients")
    assert len(at.get("plotly_chart")) == 4  # images per patient, age, view, sex
    explorer_tab(at, "Splits & leakage")
    assert any(s.value == "no leakage" for s in at.success)  # the demo split is patient-level
    explorer_tab(at, "Gallery")
    assert len(at.get("image")) == 8  # 8 images positive for the first label
    assert not at.get("plotly_chart")


def test_explorer_split_builder_and_bad_registration(demo_workspace: Workspace, tmp_path: Path) -> None:
    at = explorer_tab(run_page("pages/1_Dataset_Explorer.py"), "Splits & leakage")
    before = demo_workspace.get_dataset(DEMO_DATASET).split
    at.number_input(key="split_seed").set_value(5)
    next(b for b in at.button if b.label == "Build patient-level split").click()
    run(at)
    after = demo_workspace.get_dataset(DEMO_DATASET).split
    assert after["seed"] == 5 and before["seed"] == 0
    assert sum(after["counts"].values()) == sum(before["counts"].values())
    # A registration pointing at a folder that does not exist: one clear line, no traceback.
    at.selectbox(key="register_source").set_value("folder")
    run(at)
    at.text_input(key="register_name").set_value("broken")
    at.text_input(key="register_folder_root").set_value(str(tmp_path / "nowhere"))
    next(b for b in at.button if b.label == "Register").click()
    run(at, expect_error="Could not register the dataset: folder not found")


def test_explorer_registers_a_folder_dataset_and_selects_it(
    demo_workspace: Workspace, tmp_path: Path
) -> None:
    from conftest import write_png

    for split, cls, name in [("train", "normal", "00000001_000.png"), ("test", "sick", "00000001_001.png")]:
        write_png(tmp_path / "tree" / split / cls / name)
    at = run_page("pages/1_Dataset_Explorer.py")
    at.selectbox(key="register_source").set_value("folder")
    run(at)
    at.text_input(key="register_name").set_value("tiny-tree")
    at.text_input(key="register_folder_root").set_value(str(tmp_path / "tree"))
    next(b for b in at.button if b.label == "Register").click()
    run(at, expect_error="LEAKAGE: train / test: 1 shared patient")
    assert demo_workspace.get_dataset("tiny-tree").n_images == 2
    assert at.selectbox(key="sidebar_dataset").value == "tiny-tree"
    assert any(e.value.startswith("LEAKAGE: train / test: 1 shared patient") for e in at.error)
    at.selectbox(key="sidebar_dataset").set_value(DEMO_DATASET)
    run(at)
    assert {m.label: m.value for m in at.metric}[
        "Images"
    ] == f"{demo_workspace.get_dataset(DEMO_DATASET).n_images:,}"
