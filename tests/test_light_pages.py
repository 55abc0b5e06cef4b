"""Pages draw their first screen without PyTorch: it loads (about 5 s on 2 cores) only when a model
first runs, so a presenter's first click on a page is not spent importing it. Each page runs once in
its own Python process (AppTest), on the demo workspace, and that process is asked what it imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxrcore.explain import cam, methods
from cxrcore.models import list_models
from cxrcore.models.detector_names import DETECTOR_BACKBONES, DETECTOR_KINDS, detector_name
from cxrcore.store import Workspace

ROOT = Path(__file__).resolve().parents[1]
LIGHT_PAGES = (
    "Home.py",
    "pages/1_Dataset_Explorer.py",
    "pages/2_Train.py",
    "pages/5_Explain.py",
    "pages/6_Models.py",
)
# Runs in the fresh interpreter: the page harness's run fails on an exception or an error box.
PROBE = """
import json, sys
sys.path.insert(0, "tests")
from page_harness import page, run
drawn = run(page(sys.argv[1]))
print(json.dumps({
    "subheaders": [str(e.value) for e in drawn.subheader],
    "heavy": [name for name in ("torch", "timm", "torchvision") if name in sys.modules],
}))
"""


def first_draw(page: str, home: Path) -> dict:
    """Run a page once in a fresh interpreter and report what it drew and which heavy modules it loaded."""
    env = {**os.environ, "CXR_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / page)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("page", LIGHT_PAGES)
def test_a_page_draws_without_pytorch(page: str, demo_ws: Workspace) -> None:
    drawn = first_draw(page, demo_ws.home)
    assert drawn["heavy"] == [], f"{page} imported {drawn['heavy']} on its first draw"


def test_the_train_page_offers_every_registered_model_without_pytorch(demo_ws: Workspace) -> None:
    drawn = first_draw("pages/2_Train.py", demo_ws.home)
    assert "New training run" in drawn["subheaders"] and drawn["heavy"] == []


def test_the_light_vocabularies_match_the_engine() -> None:
    assert tuple(cam.METHODS) == methods.EXTRA_METHODS  # one class per Grad-CAM-family name
    assert set(methods.EXPLAIN_METHODS) <= set(methods.METHOD_NAMES)
    detectors = {detector_name(k, b) for k in DETECTOR_KINDS for b in DETECTOR_BACKBONES}
    assert detectors == set(list_models(task="detect"))
    assert {"densenet121", "tiny", "localiser", "custom_cnn"} <= set(list_models(task="classify"))
