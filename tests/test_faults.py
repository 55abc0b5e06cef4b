"""Faults while saving and reading: a full disk (a real file-size limit on a real process), a read-only
folder or workspace, and truncated or corrupted checkpoints, model cards, prediction tables and
dataset indexes. Each gives a clear message naming the file, and the previous good file stays intact."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
from fault_tools import make_read_only, make_writable, run_python, snapshot
from io_corpus import pil_bytes, write
from PIL import Image

from cxrcore.cli import main
from cxrcore.data.phantoms import render_phantom
from cxrcore.evaluate.predict import predict
from cxrcore.models import CheckpointError, describe_checkpoint, load_checkpoint
from cxrcore.store import Workspace
from cxrcore.workflows.demo import DEMO_DATASET

BUNDLED = Path(__file__).resolve().parents[1] / "checkpoints"

# Saves a tiny model's checkpoint over an existing one, with the file-size limit set just before.
SAVE_UNDER_LIMIT = """
import resource, sys, torch
from cxrcore.atomic import WriteError
from cxrcore.models import create_model, save_checkpoint
torch.manual_seed(1)
model = create_model("tiny", labels=["a", "b", "c"])
limit = int(sys.argv[2])
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    save_checkpoint(sys.argv[1], model, {})
except WriteError as exc:
    print(f"WriteError: {exc}")
    sys.exit(3)
"""


def _checkpoint_copy(folder: Path, name: str = "demo-tiny") -> Path:
    """A copy of a bundled checkpoint (weights, sidecar, guard) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json", ".guard.safetensors"):
        shutil.copy(BUNDLED / f"{name}{suffix}", folder / f"{name}{suffix}")
    return folder / f"{name}.safetensors"


def _chest_png(path: Path) -> Path:
    image, _ = render_phantom(np.random.default_rng(2), 128, ["Nodule"])
    return write(path, pil_bytes(Image.fromarray((image * 255).round().astype("uint8")), "PNG"))


# ---------------------------------------------------------------- full disk and read-only folders


@pytest.mark.slow
def test_full_disk_or_read_only_folder_while_saving_a_checkpoint_keeps_the_previous_one(
    tmp_path: Path,
) -> None:
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    first = run_python(["-c", SAVE_UNDER_LIMIT, str(run / "last"), "0"])
    assert first.returncode == 0, first.stderr
    before = snapshot(run)
    assert sorted(before) == ["last.json", "last.safetensors"]
    size = len(before["last.safetensors"])

    full = run_python(["-c", SAVE_UNDER_LIMIT, str(run / "last"), str(size // 2)])
    assert full.returncode == 3, full.stderr
    assert f"could not write {run / 'last.safetensors'}: " in full.stdout
    assert "File too large" in full.stdout and "is unchanged" in full.stdout
    assert snapshot(run) == before and not list(run.glob(".*"))  # temporary files removed too

    make_read_only(run)
    try:
        denied = run_python(["-c", SAVE_UNDER_LIMIT, str(run / "last"), "0"], unprivileged=True)
    finally:
        make_writable(run)
    assert denied.returncode == 3, denied.stderr
    assert "Permission denied" in denied.stdout and "last.safetensors" in denied.stdout
    assert snapshot(run) == before
    load_checkpoint(run / "last")  # the previous checkpoint still loads


@pytest.mark.slow
def test_full_disk_or_read_only_folder_while_storing_predictions_keeps_the_previous_table(
    demo_ws: Workspace, tmp_path: Path
) -> None:
    checkpoint = _checkpoint_copy(tmp_path / "models")
    first = predict(checkpoint, demo_ws, DEMO_DATASET, "test")
    before = snapshot(demo_ws.predictions_dir)
    table = Path(first.meta["file"])
    script = (
        "import resource, sys\n"
        "from cxrcore.evaluate.predict import predict\n"
        "from cxrcore.store import Workspace\n"
        "import sqlite3\n"
        "ws = Workspace()\n"
        "held = sqlite3.connect(ws.db_path)  # keeps SQLite's shared-memory file, which is 32 KB\n"
        "held.execute('SELECT COUNT(*) FROM datasets').fetchone()\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))\n"
        f"predict({str(checkpoint)!r}, ws, {DEMO_DATASET!r}, 'test', refresh=True)\n"
    )
    full = run_python(["-c", script], home=demo_ws.home)
    assert full.returncode == 1 and "WriteError: could not write" in full.stderr, full.stderr
    assert f"{table}: File too large" in full.stderr
    assert snapshot(demo_ws.predictions_dir) == before

    command = ["-m", "cxrcore", "predict", str(checkpoint), "--dataset", DEMO_DATASET, "--refresh"]
    make_read_only(demo_ws.predictions_dir)
    try:
        denied = run_python(command, home=demo_ws.home, unprivileged=True)
    finally:
        make_writable(demo_ws.predictions_dir)
    assert denied.returncode == 2, denied.stderr
    last = denied.stderr.strip().splitlines()[-1]  # after the progress bar
    assert last.startswith(f"error: could not write {table}: Permission denied")
    assert "Traceback" not in denied.stderr
    assert snapshot(demo_ws.predictions_dir) == before
    again = predict(checkpoint, demo_ws, DEMO_DATASET, "test")
    assert again.from_cache and again.table.equals(first.table)


@pytest.mark.slow
def test_full_disk_or_read_only_folder_while_writing_a_report(tmp_path: Path) -> None:
    image = _chest_png(tmp_path / "chest.png")
    out = tmp_path / "report"
    command = [
        "-m",
        "cxrcore",
        "explain",
        str(BUNDLED / "demo-tiny.safetensors"),
        str(image),
        "--out",
        str(out),
    ]
    assert run_python(command).returncode == 0
    before = snapshot(out)
    assert sorted(before) == ["panels/chest.png", "report.html", "report.pdf", "review.csv"]

    full = run_python(command, fsize=4096)
    assert full.returncode == 2 and full.stderr.count("\n") == 1, full.stderr
    assert full.stderr.startswith(f"error: could not write {out / 'panels' / 'chest.png'}: File too large")
    make_read_only(out, out / "panels")
    try:
        denied = run_python(command, unprivileged=True)
    finally:
        make_writable(out, out / "panels")
    assert denied.returncode == 2 and "Permission denied" in denied.stderr, denied.stderr
    assert snapshot(out) == before and not list(out.rglob(".*"))


@pytest.mark.slow
def test_a_read_only_workspace_is_named_in_one_line_and_left_as_it_was(demo_ws: Workspace) -> None:
    before = demo_ws.get_dataset(DEMO_DATASET)
    files = [demo_ws.home, *demo_ws.home.glob("cxr.sqlite*")]
    make_read_only(*files)
    try:
        listed = run_python(["-m", "cxrcore", "data", "list"], home=demo_ws.home, unprivileged=True)
        split = ["-m", "cxrcore", "data", "split", DEMO_DATASET, "--seed", "5"]
        refused = run_python(split, home=demo_ws.home, unprivileged=True)
    finally:
        make_writable(*files)
    for result in (listed, refused):  # SQLite in WAL mode needs to write even to read
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"error: the workspace database {demo_ws.db_path} cannot be written")
        assert "is writable and its disk is not full" in result.stderr
    assert demo_ws.get_dataset(DEMO_DATASET) == before  # the split was not half-saved
    assert len(list(demo_ws.dataset_dir(DEMO_DATASET).iterdir())) == 1  # its new files were removed


# ---------------------------------------------------------------- truncated and corrupted files


def test_a_truncated_checkpoint_is_refused_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = _checkpoint_copy(tmp_path)
    data = checkpoint.read_bytes()
    image = _chest_png(tmp_path / "chest.png")
    for cut in (len(data) // 2, 7, 0):
        checkpoint.write_bytes(data[:cut])
        assert main(["explain", str(checkpoint), str(image)]) == 2
        _, err = capsys.readouterr()
        assert err.startswith(f"error: '{checkpoint}' is not a readable safetensors file"), err


def test_a_corrupted_model_card_is_refused_naming_the_file(tmp_path: Path) -> None:
    checkpoint = _checkpoint_copy(tmp_path)
    tensors = safetensors.torch.load_file(str(checkpoint))
    card = json.loads(safetensors.safe_open(str(checkpoint), "np").metadata()["cxr_model_card"])
    for metadata, phrase in (
        ({"cxr_model_card": json.dumps(card)[:-40]}, "is not valid JSON"),
        ({"cxr_model_card": "[1, 2]"}, "is not a JSON object"),
        ({"cxr_model_card": json.dumps({**card, "spec": {"architecture": "tiny"}})}, "cannot be read"),
        ({"other": "{}"}, "has no model card"),
    ):
        safetensors.torch.save_file(tensors, str(checkpoint), metadata=metadata)
        for call in (load_checkpoint, describe_checkpoint):
            with pytest.raises(CheckpointError, match=phrase) as info:
                call(checkpoint)
            assert str(checkpoint) in str(info.value)


def test_the_readable_sidecar_is_not_trusted_and_its_damage_does_not_matter(tmp_path: Path) -> None:
    checkpoint = _checkpoint_copy(tmp_path)
    checkpoint.with_suffix(".json").write_text('{"spec": {"architecture": "densenet1')  # cut short
    assert load_checkpoint(checkpoint).spec.architecture == "tiny"  # the embedded card is authoritative
    assert describe_checkpoint(checkpoint)["architecture"] == "tiny"


@pytest.mark.parametrize("damage", ["truncated-table", "garbage-table", "empty-metadata", "foreign-table"])
def test_a_damaged_prediction_table_is_named_and_predicted_anew(
    demo_ws: Workspace, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    checkpoint = _checkpoint_copy(tmp_path / "models")
    first = predict(checkpoint, demo_ws, DEMO_DATASET, "test")
    table = Path(first.meta["file"])
    if damage == "truncated-table":
        table.write_bytes(table.read_bytes()[:-300])
    elif damage == "garbage-table":
        table.write_bytes(b"PAR1" + b"\x00" * 100)
    elif damage == "empty-metadata":
        table.with_suffix(".json").write_text("")
    else:
        first.table[["image_id"]].to_parquet(table)
    caplog.set_level(logging.WARNING)
    again = predict(checkpoint, demo_ws, DEMO_DATASET, "test")
    assert not again.from_cache and again.table.equals(first.table)
    assert f"{table.with_suffix('.json') if damage == 'empty-metadata' else table}" in caplog.text
    assert "is not used, and predicting again (--refresh) replaces it" in caplog.text
    assert predict(checkpoint, demo_ws, DEMO_DATASET, "test").from_cache  # repaired


def test_a_damaged_dataset_index_is_named_in_one_line(
    demo_ws: Workspace, capsys: pytest.CaptureFixture
) -> None:
    index = next(demo_ws.dataset_dir(DEMO_DATASET).glob("v-*/index.parquet"))
    index.write_bytes(index.read_bytes()[: index.stat().st_size // 3])
    assert main(["data", "stats", DEMO_DATASET]) == 2
    _, err = capsys.readouterr()
    assert err.startswith(f"error: the stored index of {DEMO_DATASET!r} {index} is damaged")
    assert err.rstrip().endswith(f"register the dataset {DEMO_DATASET!r} again (with replace)")
    index.unlink()
    assert main(["data", "stats", DEMO_DATASET]) == 2
    assert "are missing" in capsys.readouterr().err
