from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_png

from cxrcore.cli import main
from cxrcore.data.adapters import load_source
from cxrcore.store import MIGRATIONS, Workspace, WorkspaceError


def _folder_dataset(root: Path) -> Path:
    for split, cls, name in [
        ("train", "normal", "00000001_000.png"),
        ("train", "sick", "00000002_000.png"),
        ("valid", "normal", "00000001_001.png"),
        ("test", "sick", "00000003_000.png"),
    ]:
        write_png(root / split / cls / name, seed=int(name[:8]) * 10 + int(name[9:12]))
    return root


def test_workspace_schema_wal_and_round_trip(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    assert ws.schema_version == len(MIGRATIONS)
    with sqlite3.connect(ws.db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    ds = load_source("folder", root=_folder_dataset(tmp_path / "data"))
    record = ws.register_dataset("tiny", "folder", {"root": "x"}, ds)
    assert (record.n_images, record.n_patients, record.labels) == (4, 3, ["sick"])
    assert record.split == {"counts": {"train": 2, "valid": 1, "test": 1}}
    loaded = ws.load_dataset("tiny")
    pd.testing.assert_frame_equal(loaded.index, ds.index)
    # A second Workspace on the same folder sees the same data and does not re-run migrations.
    assert Workspace(tmp_path / "ws").get_dataset("tiny").fingerprint == record.fingerprint


def test_older_workspace_gets_location_independent_fingerprints(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    record = ws.register_dataset(
        "tiny", "folder", {"root": "x"}, load_source("folder", root=_folder_dataset(tmp_path / "d"))
    )
    version = next(ws.dataset_dir("tiny").iterdir())
    for stored in version.iterdir():  # the files where workspaces before version folders kept them
        stored.rename(ws.dataset_dir("tiny") / stored.name)
    version.rmdir()
    with sqlite3.connect(ws.db_path) as db:  # as a workspace written before the data migration
        db.execute("ALTER TABLE datasets DROP COLUMN files")
        db.execute("UPDATE datasets SET fingerprint = 'old-absolute-paths'")
        db.execute("PRAGMA user_version = 3")
    reopened = Workspace(tmp_path / "ws")
    assert reopened.schema_version == len(MIGRATIONS) == 5
    assert reopened.get_dataset("tiny").fingerprint == record.fingerprint
    assert len(reopened.load_dataset("tiny").index) == record.n_images  # read from the older layout
    reopened.save_split("tiny", reopened.load_dataset("tiny").index)  # moves it into a version folder
    assert [p.name[:2] for p in reopened.dataset_dir("tiny").iterdir()] == ["v-"]
    assert len(reopened.load_dataset("tiny").index) == record.n_images


def test_workspace_names_duplicates_and_unknowns(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    ds = load_source("folder", root=_folder_dataset(tmp_path / "data"))
    ws.register_dataset("tiny", "folder", {}, ds)
    with pytest.raises(WorkspaceError, match="already registered"):
        ws.register_dataset("tiny", "folder", {}, ds)
    ws.register_dataset("tiny", "folder", {}, ds, replace=True)
    with pytest.raises(WorkspaceError, match="must be 1-64"):
        ws.register_dataset("../evil", "folder", {}, ds)
    with pytest.raises(WorkspaceError, match="did you mean 'tiny'"):
        ws.get_dataset("tinny")
    ws.delete_dataset("tiny")
    assert ws.list_datasets() == []
    assert not ws.dataset_dir("tiny").exists()


def test_cli_register_split_stats_leakage(
    workspace_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = _folder_dataset(tmp_path / "data")
    assert main(["data", "register", "tiny", "--source", "folder", "--root", str(root)]) == 0
    assert "registered 'tiny': 4 images, 3 patients" in capsys.readouterr().out
    assert main(["data", "leakage", "tiny", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["leaks"] is True
    assert report["pairs"][0] == {**report["pairs"][0], "a": "train", "b": "valid", "shared_patients": 1}
    assert main(["data", "split", "tiny", "--fractions", "0.5,0.25,0.25", "--seed", "1"]) == 0
    capsys.readouterr()
    assert main(["data", "leakage", "tiny", "--json", "--fail-on-leak"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "no leakage"
    assert main(["data", "stats", "tiny", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["frequencies"]["sick"]["positives"] == 2
    assert main(["data", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "tiny" and sum(listed[0]["split"].values()) == 4
    assert Workspace().get_dataset("tiny").split["seed"] == 1


def test_cli_errors_are_one_line_with_status_2(workspace_home: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image")
    for argv in (["image", "info", str(junk)], ["data", "stats", "nothing"]):
        proc = subprocess.run([sys.executable, "-m", "cxrcore", *argv], capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        assert "Traceback" not in proc.stderr


def test_cli_image_info_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    png = write_png(tmp_path / "x.png", (80, 40), value=255)
    assert main(["image", "info", str(png), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "PNG" and info["shape"] == [40, 80] and info["max"] == 1.0
