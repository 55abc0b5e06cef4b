"""The dashboard's launcher (``python -m cxrcore.ui.serve``): the home page's modules load before the
server starts, read from the pages' own import statements."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from cxrcore.ui import serve

ROOT = Path(__file__).resolve().parents[1]


def test_the_pages_are_home_then_the_pages_folder_in_order() -> None:
    pages = serve.page_files()
    assert pages[0] == ROOT / "Home.py"
    assert [p.name for p in pages[1:]] == sorted(p.name for p in (ROOT / "pages").glob("*.py"))
    assert len(pages) == 7


def test_a_pages_imports_are_read_from_its_top_level_statements(tmp_path: Path) -> None:
    script = tmp_path / "page.py"
    script.write_text(
        "from __future__ import annotations\n"
        "import json, os.path as osp\n"
        "from cxrcore.ui import home, state\n"
        "from cxrcore.ui.page import setup_page\n"
        "from . import nothing\n"
        "def later():\n"
        "    import torch\n"
    )
    assert serve.page_imports(script) == [
        "json",
        "os.path",
        "cxrcore.ui",
        "cxrcore.ui.home",
        "cxrcore.ui.state",
        "cxrcore.ui.page",
        "cxrcore.ui.page.setup_page",
    ]


def test_preloading_a_page_with_a_missing_module_logs_it_and_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = tmp_path / "page.py"
    script.write_text("import cxrcore_no_such_module\nfrom cxrcore.ui.page import setup_page\n")
    with caplog.at_level(logging.WARNING, logger="cxrcore.ui.serve"):
        spent = serve.preload([script])
    assert set(spent) == {"page.py"}
    assert "cxrcore_no_such_module" in caplog.text and "setup_page" not in caplog.text


def test_the_home_page_preload_loads_its_modules_but_not_pytorch() -> None:
    probe = (
        "import sys\n"
        "from cxrcore.ui.serve import HOME_PAGE, preload\n"
        "preload([HOME_PAGE])\n"
        "print(sorted(m for m in ('cxrcore.ui.home', 'cxrcore.train.jobs', 'pandas', 'torch', 'sklearn')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "['cxrcore.train.jobs', 'cxrcore.ui.home', 'pandas']"
