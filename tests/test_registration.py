"""Dataset registration: bad label files are refused with clear messages and register nothing, and a
registration that fails or is killed half-way leaves the previous version registered and whole."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_png

from cxrcore import stored_files
from cxrcore.cli import main
from cxrcore.data.adapters import load_source
from cxrcore.data.index import IndexedDataset, index_fingerprint
from cxrcore.store import Workspace

ROOT = Path(__file__).resolve().parents[1]

BAD_TABLES = {
    "no-path-column": ("name,Nodule\nimg/0.png,1\n", "no path column found (tried ['path', 'Path'"),
    "text-labels": ("path,Nodule\nimg/0.png,yes\nimg/1.png,no\n",
                    "columns with values other than numbers: ['Nodule']"),
    "bad-label-values": ("path,Nodule\nimg/0.png,7\nimg/1.png,0\n",
                         "label values must be 1, 0 or empty (NaN); found others in 'Nodule' (e.g. 7.0)"),
    "duplicate-ids": ("path,image_id,Nodule\nimg/0.png,a,1\nimg/1.png,a,0\n",
                      "1 image_id value(s) occur more than once (e.g. a)"),
    "parent-path": ("path,Nodule\nimg/0.png,1\n../../etc/passwd,0\n",
                    "1 image path(s) lie outside the dataset folder"),
    "absolute-path": ("path,Nodule\nimg/0.png,1\n/etc/hostname,0\n", "(first: '/etc/hostname')"),
    "no-image-exists": ("path,Nodule\nimg/9.png,1\n", "none of the 1 image paths exist under"),
    "empty-file": ("", "empty-file.csv is not a readable CSV table"),
    "not-text": (b"\x89PNG\r\n\x1a\n\xff\xfe" * 8, "not-text.csv is not a readable CSV table"),
    "missing-patient-column": ("path,Nodule\nimg/0.png,1\n", "patient column 'pid' not in the table"),
}  # fmt: skip


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A folder holding img/0.png .. img/3.png."""
    for i in range(4):
        write_png(tmp_path / "data" / "img" / f"{i}.png", seed=i)
    return tmp_path / "data"


@pytest.mark.parametrize("name", list(BAD_TABLES))
def test_a_bad_label_file_is_refused_in_one_line_and_registers_nothing(
    name: str, images: Path, workspace_home: Path, capsys: pytest.CaptureFixture
) -> None:
    content, phrase = BAD_TABLES[name]
    table = images / f"{name}.csv"
    table.write_bytes(content if isinstance(content, bytes) else content.encode())
    extra = ["--patient-column", "pid"] if name == "missing-patient-column" else []
    assert main(["data", "register", name, "--source", "csv", "--csv-path", str(table), *extra]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1 and phrase in err, err
    ws = Workspace()
    assert ws.list_datasets() == [] and not ws.dataset_dir(name).exists()


def _dataset(images: Path, n: int, label: float = 1.0) -> IndexedDataset:
    table = images / f"labels-{n}.csv"
    paths = [f"img/{i}.png" for i in range(n)]
    pd.DataFrame({"path": paths, "Nodule": [label, 0.0, 1.0, 0.0][:n]}).to_csv(table, index=False)
    return load_source("csv", csv_path=str(table))


def test_a_registration_failing_half_way_leaves_the_previous_version(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace(tmp_path / "ws")
    real_write = stored_files.write_parquet

    def disk_full_on_boxes(frame: pd.DataFrame, target: Path) -> None:
        if target.name == "boxes.parquet":  # the index was written; the disk fills up on the next file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(frame, target)

    monkeypatch.setattr(stored_files, "write_parquet", disk_full_on_boxes)
    with pytest.raises(OSError, match="No space left on device"):
        ws.register_dataset("scans", "csv", {}, _dataset(images, 2))
    assert ws.list_datasets() == [] and list(ws.dataset_dir("scans").iterdir()) == []

    monkeypatch.undo()
    first = ws.register_dataset("scans", "csv", {}, _dataset(images, 2))
    monkeypatch.setattr(stored_files, "write_parquet", disk_full_on_boxes)
    with pytest.raises(OSError, match="No space left on device"):
        ws.register_dataset("scans", "csv", {}, _dataset(images, 4), replace=True)
    assert ws.get_dataset("scans") == first
    assert len(ws.load_dataset("scans").index) == 2 and len(list(ws.dataset_dir("scans").iterdir())) == 1


# Registers two versions of one dataset in turn, for ever; the parent kills it at random moments.
FLIPPER = """
import sys
from cxrcore.data.adapters import load_source
from cxrcore.store import Workspace
ws = Workspace(sys.argv[1])
versions = [load_source("csv", csv_path=path) for path in sys.argv[2:]]
turn = 0
while True:
    ws.register_dataset("flip", "csv", {}, versions[turn % 2], replace=True)
    turn += 1
    if turn == 1:
        print("registered", flush=True)
"""


@pytest.mark.slow
def test_a_registration_killed_at_any_moment_leaves_one_whole_version(images: Path, tmp_path: Path) -> None:
    tables = []
    for n in (2, 4):
        _dataset(images, n)
        tables.append(str(images / f"labels-{n}.csv"))
    home = tmp_path / "ws"
    rng = np.random.default_rng(0)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", FLIPPER, str(home), *tables], stdout=subprocess.PIPE, env=env, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline() == "registered\n"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ws = Workspace(home)
        record = ws.get_dataset("flip")
        index = ws.load_dataset("flip").index
        assert record.n_images in (2, 4) and len(index) == record.n_images
        assert index_fingerprint(index) == record.fingerprint
        assert len(list(ws.dataset_dir("flip").iterdir())) <= 2  # the current version, maybe one unfinished
    ws.register_dataset("flip", "csv", {}, load_source("csv", csv_path=tables[0]), replace=True)
    assert len(list(ws.dataset_dir("flip").iterdir())) == 1  # the next registration tidies up
