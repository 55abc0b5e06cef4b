"""The workspace: a SQLite database plus folders under ``CXR_HOME`` that the app and the CLI share.

Layout::

    $CXR_HOME/cxr.sqlite              registered datasets, background jobs, stored predictions
    $CXR_HOME/datasets/<name>/v-<id>/ index.parquet and boxes.parquet of each registered dataset
    $CXR_HOME/cache/                  preprocessed-image cache
    $CXR_HOME/jobs/<id>/              a background job's config.json and train.log
    $CXR_HOME/runs/<run name>/        a training run's checkpoints and resumable state
    $CXR_HOME/predictions/<key>.parquet  stored predictions of a checkpoint over a dataset split

The schema is versioned with ``PRAGMA user_version``; each migration runs once, in order.

Registering a dataset (or a new split of one) writes its files into a new version folder first and
then points the database row at it in one transaction: a registration interrupted at any moment
leaves the previous version registered and whole (or, for a new name, nothing registered); older
version folders are removed after the commit. Rows from before version folders point at
``datasets/<name>/`` itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cxrcore import jsonsafe
from cxrcore.data.index import (
    IndexedDataset,
    index_fingerprint,
    label_columns,
    validate_boxes,
    validate_index,
)
from cxrcore.hints import did_you_mean
from cxrcore.stored_files import StoredFileError, commit_version, read_stored_frame

DB_NAME = "cxr.sqlite"
# SQLite's words for a database it cannot write (as opposed to one another process has locked).
_UNWRITABLE = ("readonly", "read-only", "unable to open database", "disk is full", "disk I/O error")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _refingerprint(db: sqlite3.Connection, home: Path) -> None:
    """Data migration: fingerprints count paths relative to the images' shared folder."""
    for row in db.execute("SELECT name FROM datasets").fetchall():
        stored = home / "datasets" / row["name"] / "index.parquet"
        if stored.is_file():
            fingerprint = index_fingerprint(pd.read_parquet(stored))
            db.execute("UPDATE datasets SET fingerprint = ? WHERE name = ?", (fingerprint, row["name"]))


# Each entry is SQL, or a function of (connection, workspace home) for a data migration.
MIGRATIONS: tuple[str | Callable[[sqlite3.Connection, Path], None], ...] = (
    """
    CREATE TABLE datasets (
        name TEXT PRIMARY KEY,
        adapter TEXT NOT NULL,
        arguments TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        n_images INTEGER NOT NULL,
        n_patients INTEGER NOT NULL,
        labels TEXT NOT NULL,
        notes TEXT NOT NULL,
        split TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # Background jobs (cxrcore.train.jobs): one row per training run launched as a subprocess.
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL DEFAULT 'train',
        config TEXT NOT NULL,
        resume INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL
            CHECK (status IN ('queued', 'running', 'finished', 'failed', 'cancelled')),
        pid INTEGER,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        updated_at REAL NOT NULL,
        epoch INTEGER NOT NULL DEFAULT 0,
        total_epochs INTEGER,
        step INTEGER NOT NULL DEFAULT 0,
        steps_per_epoch INTEGER,
        loss REAL,
        metrics TEXT,
        history TEXT NOT NULL DEFAULT '[]',
        eta_s REAL,
        info TEXT,
        run_dir TEXT,
        checkpoint TEXT,
        result TEXT,
        log_path TEXT,
        error TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        cancel_requested_at REAL
    );
    CREATE INDEX jobs_by_status ON jobs (status, id);
    """,
    # Stored predictions (cxrcore.evaluate.predict): one Parquet table per checkpoint x dataset split.
    """
    CREATE TABLE predictions (
        key TEXT PRIMARY KEY,
        checkpoint TEXT NOT NULL,
        checkpoint_fingerprint TEXT NOT NULL,
        dataset TEXT NOT NULL,
        index_fingerprint TEXT NOT NULL,
        split TEXT NOT NULL,
        preprocess TEXT NOT NULL,
        labels TEXT NOT NULL,
        n_images INTEGER NOT NULL,
        seconds REAL NOT NULL,
        file TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX predictions_by_dataset ON predictions (dataset, split);
    """,
    _refingerprint,
    # The version folder (under datasets/<name>/) holding a dataset's files; NULL: the folder itself.
    "ALTER TABLE datasets ADD COLUMN files TEXT;",
)
_DATASET_COLUMNS = (
    "name, adapter, arguments, fingerprint, n_images, n_patients, labels, notes, split, created_at, "
    "updated_at, files"
)


class WorkspaceError(ValueError):
    """A workspace request cannot be met (unknown or invalid name, existing entry)."""


@dataclass(frozen=True)
class DatasetRecord:
    """A registered dataset as the database describes it."""

    name: str
    adapter: str
    arguments: dict[str, Any]
    fingerprint: str
    n_images: int
    n_patients: int
    labels: list[str]
    notes: dict[str, Any]
    split: dict[str, Any] | None
    created_at: float
    updated_at: float


def default_home() -> Path:
    """The workspace folder: ``$CXR_HOME`` or ``./workspace``."""
    return Path(os.environ.get("CXR_HOME") or "workspace").resolve()


class Workspace:
    """The SQLite workspace and its folders."""

    def __init__(self, home: str | Path | None = None) -> None:
        self.home = Path(home).resolve() if home is not None else default_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.db_path = self.home / DB_NAME
        with self.connect() as db:
            self._migrate(db, self.home)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in WAL mode; commits on success, rolls back on error, always closes.

        A database that cannot be written (read-only folder or file, full disk) raises WorkspaceError
        saying so, instead of SQLite's bare "attempt to write a readonly database".
        """
        try:
            db = sqlite3.connect(self.db_path, timeout=30)
            try:
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA foreign_keys=ON")
                with db:
                    yield db
            finally:
                db.close()
        except sqlite3.OperationalError as exc:
            if not any(words in str(exc) for words in _UNWRITABLE):
                raise
            raise WorkspaceError(
                f"the workspace database {self.db_path} cannot be written ({exc}); check that the folder "
                f"{self.home} is writable and its disk is not full"
            ) from exc

    @staticmethod
    def _migrate(db: sqlite3.Connection, home: Path) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            if isinstance(step, str):
                db.executescript(f"BEGIN; {step} PRAGMA user_version = {number}; COMMIT;")
                continue
            db.execute("BEGIN")
            try:
                step(db, home)
                db.execute(f"PRAGMA user_version = {number}")
            except BaseException:
                db.rollback()
                raise
            db.commit()

    @property
    def schema_version(self) -> int:
        """The schema version the database is at."""
        with self.connect() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    def dataset_dir(self, name: str) -> Path:
        """Folder holding a dataset's stored index."""
        return self.home / "datasets" / name

    @property
    def cache_dir(self) -> Path:
        """Root of the preprocessed-image cache."""
        return self.home / "cache"

    @property
    def predictions_dir(self) -> Path:
        """Folder of the stored prediction tables."""
        return self.home / "predictions"

    def record_predictions(self, key: str, meta: dict[str, Any]) -> None:
        """Note a stored prediction table (written beforehand) so that it can be found and listed."""
        with self.connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO predictions (key, checkpoint, checkpoint_fingerprint, dataset,"
                " index_fingerprint, split, preprocess, labels, n_images, seconds, file, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    meta["checkpoint"],
                    meta["checkpoint_fingerprint"],
                    meta["dataset"],
                    meta["index_fingerprint"],
                    meta["split"],
                    jsonsafe.dumps(meta["preprocess"]),
                    jsonsafe.dumps(meta["labels"]),
                    meta["n_images"],
                    meta["seconds"],
                    meta["file"],
                    time.time(),
                ),
            )

    def list_predictions(self, dataset: str | None = None) -> list[dict[str, Any]]:
        """Stored prediction tables, newest first, optionally of one dataset."""
        query = "SELECT * FROM predictions" + (" WHERE dataset = ?" if dataset else "")
        with self.connect() as db:
            rows = db.execute(query + " ORDER BY created_at DESC", (dataset,) if dataset else ()).fetchall()
        out = []
        for row in rows:
            item = dict(row)
            item["preprocess"], item["labels"] = json.loads(item["preprocess"]), json.loads(item["labels"])
            out.append(item)
        return out

    def register_dataset(
        self,
        name: str,
        adapter: str,
        arguments: dict[str, Any],
        dataset: IndexedDataset,
        replace: bool = False,
    ) -> DatasetRecord:
        """Store a dataset's index and boxes and record it; an existing name needs ``replace``."""
        if not _NAME.match(name):
            raise WorkspaceError(
                f"dataset name {name!r} must be 1-64 letters, digits, '_', '-' or '.', "
                "starting with a letter or digit"
            )
        if not replace and self._row(name) is not None:
            raise WorkspaceError(
                f"a dataset named {name!r} is already registered (use replace to overwrite it)"
            )
        index = validate_index(dataset.index)
        boxes = validate_boxes(dataset.boxes, index)
        now = time.time()
        split = self._split_info(index)
        row = (
            name,
            adapter,
            jsonsafe.dumps(arguments, sort_keys=True, default=str),
            index_fingerprint(index),
            len(index),
            int(index["patient_id"].nunique()),
            jsonsafe.dumps(label_columns(index)),
            jsonsafe.dumps(dataset.notes, default=str),
            jsonsafe.dumps(split) if split else None,
            now,
            now,
        )

        def record(db: sqlite3.Connection, files: str) -> None:
            if not replace and db.execute("SELECT 1 FROM datasets WHERE name = ?", (name,)).fetchone():
                raise WorkspaceError(f"a dataset named {name!r} was registered meanwhile (use replace)")
            marks = ",".join("?" * (len(row) + 1))
            db.execute(
                f"INSERT OR REPLACE INTO datasets ({_DATASET_COLUMNS}) VALUES ({marks})", (*row, files)
            )

        commit_version(
            self.dataset_dir(name), {"index.parquet": index, "boxes.parquet": boxes}, self.connect, record
        )
        return self.get_dataset(name)

    @staticmethod
    def _split_info(index: pd.DataFrame, **extra: Any) -> dict[str, Any] | None:
        if "split" not in index.columns or index["split"].isna().all():
            return None
        counts = {str(k): int(v) for k, v in index["split"].value_counts().items()}
        return {"counts": counts, **extra}

    def _row(self, name: str) -> sqlite3.Row | None:
        with self.connect() as db:
            return db.execute("SELECT * FROM datasets WHERE name = ?", (name,)).fetchone()

    def _files_dir(self, name: str, files: str | None) -> Path:
        """The folder of a dataset's current files (its version folder, or the dataset folder itself)."""
        return self.dataset_dir(name) / files if files else self.dataset_dir(name)

    def get_dataset(self, name: str) -> DatasetRecord:
        """The record of a registered dataset; an unknown name lists close matches."""
        row = self._row(name)
        if row is None:
            names = [r.name for r in self.list_datasets()]
            hint = did_you_mean(name, names)
            known = f" (registered: {', '.join(names)})" if names else " (none registered yet)"
            raise WorkspaceError(f"no dataset named {name!r}{hint}{known}")
        return DatasetRecord(
            name=row["name"],
            adapter=row["adapter"],
            arguments=json.loads(row["arguments"]),
            fingerprint=row["fingerprint"],
            n_images=row["n_images"],
            n_patients=row["n_patients"],
            labels=json.loads(row["labels"]),
            notes=json.loads(row["notes"]),
            split=json.loads(row["split"]) if row["split"] else None,
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def list_datasets(self) -> list[DatasetRecord]:
        """Every registered dataset, by name."""
        with self.connect() as db:
            names = [r["name"] for r in db.execute("SELECT name FROM datasets ORDER BY name")]
        return [self.get_dataset(n) for n in names]

    def load_dataset(self, name: str) -> IndexedDataset:
        """The stored index and boxes of a registered dataset."""
        remedy = f"register the dataset {name!r} again (with replace)"
        missing: FileNotFoundError | None = None
        for _ in range(3):  # a registration in another process may replace the files meanwhile
            record = self.get_dataset(name)
            folder = self._files_dir(name, self._row(name)["files"])
            try:
                index = read_stored_frame(folder / "index.parquet", f"index of {name!r}", remedy)
                boxes = read_stored_frame(folder / "boxes.parquet", f"boxes of {name!r}", remedy)
                return IndexedDataset(index=index, boxes=boxes, notes=record.notes)
            except FileNotFoundError as exc:
                missing = exc
        raise StoredFileError(f"the stored files of {name!r} are missing ({missing}); {remedy}") from missing

    def box_labels(self, name: str) -> list[str]:
        """The finding names that have boxes in a registered dataset, sorted (empty: it has no boxes)."""
        boxes = self.load_dataset(name).boxes  # an unknown name fails here, with close matches
        return sorted(boxes["label"].astype(str).unique())

    def save_split(self, name: str, index: pd.DataFrame, **how: Any) -> DatasetRecord:
        """Store a new split of a registered dataset (same images) and how it was made."""
        record = self.get_dataset(name)
        index = validate_index(index)
        if index_fingerprint(index) != record.fingerprint:
            raise WorkspaceError(
                f"the split index for {name!r} does not hold the same images as the registered one"
            )
        boxes = self._files_dir(name, self._row(name)["files"]) / "boxes.parquet"
        split = jsonsafe.dumps(self._split_info(index, **how))

        def update(db: sqlite3.Connection, files: str) -> None:
            db.execute(
                "UPDATE datasets SET split = ?, updated_at = ?, files = ? WHERE name = ?",
                (split, time.time(), files, name),
            )

        commit_version(
            self.dataset_dir(name), {"index.parquet": index, "boxes.parquet": boxes}, self.connect, update
        )
        return self.get_dataset(name)

    def delete_dataset(self, name: str) -> None:
        """Forget a dataset and remove its stored index (never the images themselves)."""
        self.get_dataset(name)
        with self.connect() as db:
            db.execute("DELETE FROM datasets WHERE name = ?", (name,))
        shutil.rmtree(self.dataset_dir(name), ignore_errors=True)
