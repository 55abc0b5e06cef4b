"""Files every page run needs are read once per version, not on every run: the checkpoint listing (each
file's card and fingerprint) and a checkpoint's upload guard (a precision matrix of megabytes)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from test_checkpoint import CARD, tiny

import cxrcore.models.card as card_module
from cxrcore.models import catalog, read_card, save_checkpoint
from cxrcore.models.guard import Guard, guard_path, load_guard, save_guard


def _bump_mtime(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_the_listing_reads_each_checkpoint_once_per_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXR_CHECKPOINTS", str(tmp_path / "none"))  # no bundled ones
    weights = [save_checkpoint(tmp_path / "runs" / name / "best", tiny(), CARD) for name in ("a", "b")]
    catalog._described.cache_clear()
    read: list[str] = []
    describe = catalog.describe_checkpoint
    monkeypatch.setattr(
        catalog, "describe_checkpoint", lambda path: read.append(Path(path).parent.name) or describe(path)
    )
    first = catalog.list_checkpoints(tmp_path)
    assert sorted(read) == ["a", "b"] and len(first) == 2
    first[0].info["labels"].append("changed by a caller")  # a caller's change stays its own
    first[0].info["dataset"] = "changed by a caller"
    again = catalog.list_checkpoints(tmp_path)
    assert sorted(read) == ["a", "b"]  # nothing read again
    assert [e.path for e in again] == [e.path for e in first]
    assert all(e.info["dataset"] == "phantoms-200" and e.info["labels"] == ["a", "b", "c"] for e in again)
    _bump_mtime(weights[0])  # a new version of one file (retrained, calibrated): read again
    catalog.list_checkpoints(tmp_path)
    assert sorted(read) == ["a", "a", "b"]


def test_the_guard_is_read_once_per_version_and_shared_read_only(tmp_path: Path) -> None:
    checkpoint = tmp_path / "best.safetensors"
    rng = np.random.default_rng(0)
    save_guard(Guard(rng.normal(size=8), np.eye(8), 3.5, 100, 20), checkpoint)
    first = load_guard(checkpoint)
    assert first is not None and first.threshold == 3.5
    assert load_guard(checkpoint) is first  # not read again
    assert not first.precision.flags.writeable and not first.mean.flags.writeable
    save_guard(Guard(rng.normal(size=8), 2 * np.eye(8), 4.0, 120, 30), checkpoint)  # refitted
    _bump_mtime(guard_path(checkpoint))  # a new version even within one clock tick
    second = load_guard(checkpoint)
    assert second is not first and second.threshold == 4.0 and second.n_train == 120
    assert load_guard(tmp_path / "other.safetensors") is None  # none stored


def test_a_card_is_read_once_per_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = save_checkpoint(tmp_path / "best", tiny(), CARD)
    opened: list[Path] = []
    open_card = card_module.open_card
    monkeypatch.setattr(card_module, "open_card", lambda path: opened.append(path) or open_card(path))
    first = read_card(weights)
    assert read_card(weights) is first and read_card(weights.with_suffix(".json")) is first
    assert len(opened) == 1
    save_checkpoint(tmp_path / "best", tiny(seed=1), {**CARD, "dataset": "another"})  # rewritten
    _bump_mtime(weights)
    assert read_card(weights).dataset.name == "another" and len(opened) == 2
