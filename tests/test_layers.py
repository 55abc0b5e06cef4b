"""The engine's layers point one way: every import in ``cxrcore`` goes to its own layer or a lower one.

Bottom to top: io / data / preprocess / labels with the workspace store and the small shared modules,
then models, then the middle layer (explain, evaluate, train), then workflows, then the command line and
the dashboard plumbing. Within the middle layer the order is explain, evaluate, train: evaluate scores
explain's heat maps (``evaluate.map_localisation`` runs ``explain``), train validates with evaluate's
metrics, and explain uses neither. Besides the layers, only ``cxrcore/cli`` and ``cxrcore/__main__.py``
import ``cxrcore.cli`` (the engine never calls its own command line), and only ``cxrcore/ui`` imports
``streamlit``.

Every ``import`` and ``from ... import`` counts, at module level or inside a function, relative ones
resolved against the importing module's package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cxrcore"

# Package or module prefix -> rank; a module may import only modules of its own rank or lower. The bare
# package name matches only ``cxrcore/__init__.py``, so every new top-level module needs its own entry.
LAYERS: dict[str, int] = {
    "cxrcore": 0,  # the package root: its version string, read by checkpoints and the home page
    "cxrcore.atomic": 0,  # atomic file writes, used by data, store, models and train
    "cxrcore.labels": 0,  # label vocabularies and the 1/0/NaN contract; imports nothing of cxrcore
    "cxrcore.io": 0,  # image readers; import nothing else of cxrcore
    "cxrcore.preprocess": 0,  # resize, CLAHE, normalisation; data's cache prepares images with it
    "cxrcore.lung_crop": 0,  # the lung crop's box: the threshold heuristic, and methods registered above
    "cxrcore.data": 0,  # index contract, adapters, splits, phantoms; reads images through io
    "cxrcore.store": 0,  # the workspace database: stores data's index contract (imports data.index)
    "cxrcore.stored_files": 0,  # version folders committed with a database row; damaged-file messages
    "cxrcore.errors": 0,  # user-fixable errors: imports this layer's, looks higher ones up by name
    "cxrcore.hints": 0,  # the one "did you mean" helper for unknown names; imports nothing of cxrcore
    "cxrcore.notice": 0,  # the research-use notice of every page and report; imports nothing of cxrcore
    "cxrcore.digest": 0,  # content digests of arrays and bytes; imports nothing of cxrcore
    "cxrcore.processes": 0,  # whether a background process of ours still runs; imports nothing of cxrcore
    "cxrcore.jsonsafe": 0,  # the one JSON sanitiser (NaN and inf become null); imports nothing of cxrcore
    "cxrcore.models": 1,
    "cxrcore.explain": 2,
    "cxrcore.evaluate": 3,
    "cxrcore.train": 4,
    "cxrcore.workflows": 5,
    "cxrcore.cli": 6,
    "cxrcore.__main__": 6,  # ``python -m cxrcore``: the command line's entry point
    "cxrcore.ui": 6,
}
CLI = "cxrcore.cli"
CLI_USERS = ("cxrcore.cli", "cxrcore.__main__")
STREAMLIT = "streamlit"
STREAMLIT_USERS = ("cxrcore.ui",)


def _within(name: str, prefix: str) -> bool:
    """Whether dotted ``name`` is ``prefix`` or inside it."""
    return name == prefix or name.startswith(prefix + ".")


def layer_of(name: str) -> int | None:
    """The rank of a ``cxrcore`` module by its longest prefix in LAYERS; None when none fits."""
    keys = [k for k in LAYERS if name == k or (k != "cxrcore" and _within(name, k))]
    return LAYERS[max(keys, key=len)] if keys else None


def module_name(path: Path) -> tuple[str, bool]:
    """The dotted name of a file under ``cxrcore/`` and whether it is a package's ``__init__``."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


MODULES: dict[str, Path] = {module_name(p)[0]: p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in the tree, function-level and relative ones included.

    ``from pkg import name`` imports ``pkg.name`` when that is a module, else ``pkg`` (once per name).
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield node.lineno, candidate if candidate in MODULES else base


def import_problems(module: str, source: str, path: str = "<string>", is_package: bool = False) -> list[str]:
    """Every import of one module's source that breaks the rules above, as "path:line: what"."""
    problems = []
    rank = layer_of(module)
    if rank is None:
        return [f"{path}:1: {module} has no layer; add it to LAYERS in tests/test_layers.py"]
    for line, target in dict.fromkeys(imported_modules(ast.parse(source), module, is_package)):
        where = f"{path}:{line}: {module}"
        if _within(target, STREAMLIT) and not any(_within(module, u) for u in STREAMLIT_USERS):
            problems.append(f"{where} imports {target}; only cxrcore.ui imports Streamlit")
        if not _within(target, "cxrcore"):
            continue
        if _within(target, CLI) and not any(_within(module, u) for u in CLI_USERS):
            problems.append(f"{where} imports {target}; the engine never calls its own command line")
        target_rank = layer_of(target)
        if target_rank is None:
            problems.append(f"{where} imports {target}, which has no layer")
        elif target_rank > rank:
            problems.append(f"{where} (layer {rank}) imports {target} from higher layer {target_rank}")
    return problems


def test_every_import_points_down_the_layers() -> None:
    problems = []
    for module, path in MODULES.items():
        is_package = path.name == "__init__.py"
        rel = str(path.relative_to(PACKAGE.parent))
        problems += import_problems(module, path.read_text(encoding="utf-8"), rel, is_package)
    assert not problems, "imports against the layer rule:\n" + "\n".join(problems)


def test_every_layer_entry_names_existing_modules() -> None:
    stale = [k for k in LAYERS if not any(_within(m, k) for m in MODULES)]
    assert not stale, f"LAYERS names packages that no longer exist: {stale}"


# (module, its source, what the one report says): upward at module level, inside a function, relative,
# a plain ``import``; the command line from the dashboard; Streamlit outside ui; a module with no layer.
AGAINST_THE_RULE = [
    (
        "cxrcore.io.fake",
        "import numpy\nfrom cxrcore.models.registry import CXRModel\n",
        "io/fake.py:2: cxrcore.io.fake (layer 0) imports cxrcore.models.registry from higher layer 1",
    ),
    (
        "cxrcore.models.fake",
        "def f():\n    from cxrcore.explain import cam\n",
        "models/fake.py:2: cxrcore.models.fake (layer 1) imports cxrcore.explain.cam from higher layer 2",
    ),
    (
        "cxrcore.explain.fake",
        "from ..evaluate import ensemble\n",
        "explain/fake.py:1: cxrcore.explain.fake (layer 2) imports cxrcore.evaluate.ensemble",
    ),
    (
        "cxrcore.train.fake",
        "import cxrcore.workflows.demo\n",
        "train/fake.py:1: cxrcore.train.fake (layer 4) imports cxrcore.workflows.demo",
    ),
    (
        "cxrcore.ui.fake",
        "from cxrcore.cli import main\n",
        "ui/fake.py:1: cxrcore.ui.fake imports cxrcore.cli; the engine never calls its own command line",
    ),
    (
        "cxrcore.explain.fake",
        "if True:\n    import streamlit as st\n",
        "explain/fake.py:2: cxrcore.explain.fake imports streamlit; only cxrcore.ui imports Streamlit",
    ),
    ("cxrcore.newthing", "", "cxrcore.newthing has no layer"),
]


@pytest.mark.parametrize(("module", "source", "expected"), AGAINST_THE_RULE)
def test_the_checker_reports_an_import_against_the_rule(module: str, source: str, expected: str) -> None:
    path = module.replace(".", "/") + ".py"
    problems = import_problems(module, source, path)
    assert len(problems) == 1 and expected in problems[0], problems


def test_the_checker_accepts_imports_down_and_across_a_layer() -> None:
    source = (
        "from cxrcore.data.index import DatasetError\n"
        "from . import registry\n"
        "from ..io import read_image\n"
        "def f():\n"
        "    import cxrcore.models.card\n"
        "    from cxrcore import __version__\n"
    )
    assert import_problems("cxrcore.models.fake", source) == []
