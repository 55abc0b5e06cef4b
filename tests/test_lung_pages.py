"""Heat inside the lungs on the pages (AppTest): per label on Explain, averaged over a split on Evaluate.

The pages see one bundled classifier and the bundled lung segmenter, copied into a folder of their own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from page_harness import count_calls, html_tables, open_tab, run, run_page
from streamlit.testing.v1 import AppTest

from cxrcore.models.catalog import BUNDLED_DIR
from cxrcore.store import Workspace
from cxrcore.ui import lungs as ul
from cxrcore.workflows.demo import sample_phantom_png

EXPLAIN, EVALUATE = "pages/5_Explain.py", "pages/3_Evaluate.py"


def _bundle(folder: Path, classifier: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundled folder holding one classifier and the lung segmenter, as the pages' only checkpoints."""
    folder.mkdir()
    for path in [*BUNDLED_DIR.glob(f"{classifier}.*"), *BUNDLED_DIR.glob("lung-segmenter.*")]:
        shutil.copy(path, folder / path.name)
    monkeypatch.setenv("CXR_CHECKPOINTS", str(folder))


def _frame(at: AppTest, column: str) -> pd.DataFrame:
    """The page's one table with ``column``."""
    plain = [t.set_index("label") if "label" in t.columns else t for t in html_tables(at)]
    found = [d for d in [d.value for d in at.dataframe] + plain if column in d.columns]
    assert len(found) == 1, [list(d.columns) for d in found]
    return found[0]


def _texts(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("markdown", "caption") for e in at.get(kind))


def test_explain_shows_each_labels_heat_inside_the_lungs_and_segments_once(
    workspace_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bundle(tmp_path / "bundled", "demo-localiser", monkeypatch)
    segmented = count_calls(monkeypatch, ul, "segment_lungs")
    at = run_page(EXPLAIN)
    at.file_uploader(key="explain_upload").upload(*sample_phantom_png(1))
    run(at)
    shown = at.multiselect(key="explain_labels").value
    table = _frame(at, "CRM")
    assert list(table.index) == shown and list(table.columns) == ["CAM", "CRM", "reading"]
    assert all(value == "-" or value.endswith("%") for value in table[["CAM", "CRM"]].to_numpy().ravel())
    assert table["CRM"].nunique() == 1  # CRM sums every output: one map for all labels
    text = _texts(at)
    assert "Heat inside the lungs" in text and "An evenly spread map would score" in text
    assert any(image.caption == "Lung fields (segmenter)" for e in at.get("image") for image in e.proto.imgs)
    assert segmented[0] == 1
    at.slider(key="explain_alpha").set_value(0.3)  # a display control: the lungs are not segmented again
    run(at)
    assert segmented[0] == 1 and len(_frame(at, "CRM")) == len(shown)


def test_explain_without_the_segmenter_says_how_to_make_one(
    workspace_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "bundled"
    _bundle(folder, "demo-localiser", monkeypatch)
    for path in folder.glob("lung-segmenter.*"):
        path.unlink()
    at = run_page(EXPLAIN)
    at.file_uploader(key="explain_upload").upload(*sample_phantom_png(1))
    run(at)
    assert "python -m cxrcore segmenter train --out" in _texts(at)
    assert not [d for d in at.dataframe if "CRM" in d.value.columns]


@pytest.mark.slow
def test_evaluate_averages_the_heat_in_the_lungs_over_the_splits_first_images(
    demo_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bundle(tmp_path / "bundled", "demo-tiny", monkeypatch)
    at = open_tab(run_page(EVALUATE), "eval_tab", "Heat in the lungs")
    assert "Not computed yet" not in _texts(at)  # closed until asked for
    at.toggle(key="eval_lung_show").set_value(True)
    run(at)
    assert "Not computed yet" in _texts(at)
    at.number_input(key="eval_lung_images").set_value(10)
    run(at)
    at.button(key="eval_lung_run").click()
    run(at)
    table = _frame(at, "CAM, all images")
    assert list(table.index) == ["Nodule", "Opacity", "Effusion"] and (table["images"] == 10).all()
    assert "the first 10 of the" in _texts(at)
    again = open_tab(run_page(EVALUATE), "eval_tab", "Heat in the lungs")  # reads the stored shares
    again.toggle(key="eval_lung_show").set_value(True)
    run(again)
    again.number_input(key="eval_lung_images").set_value(10)
    run(again)
    assert "Reused from the workspace" in _texts(again)
    pd.testing.assert_frame_equal(_frame(again, "CAM, all images"), table)
