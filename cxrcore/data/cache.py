"""An on-disk cache of preprocessed images, so that a second pass over a dataset decodes nothing.

Layout: ``<root>/<cfg.key()>/<k0k1>/<key>.u8`` where ``key`` hashes the source file's absolute
path, modification time (ns) and size, and ``k0k1`` (its first two hex digits) shards the entries
over 256 folders. An entry is the raw uint8 pixels of the ``size x size`` output of
``cxrcore.preprocess.prepare``, nothing else: reading one is a single ``read`` of a known length,
and a file of any other length (truncated, or left empty by a crash) is a miss that is rewritten.

Writes go to a uniquely named temporary file in the entry's folder and are moved into place with
``os.replace``, so readers never see half an entry and several processes (DataLoader workers)
may fill the same entry at once. Entries are not fsync'ed: after a power failure an entry can be
empty or short, which the length check turns into a miss. Failed decodes are never cached.
Hit and miss counters are per process (each DataLoader worker counts its own).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrcore import jsonsafe
from cxrcore.atomic import write_bytes_atomic
from cxrcore.io import ImageReadError, read_image
from cxrcore.preprocess import PreprocessConfig, prepare

logger = logging.getLogger(__name__)

ENTRY_SUFFIX = ".u8"


@dataclass
class CacheStats:
    """Counts of cache lookups: hits, misses (decoded and stored), unreadable sources, corrupt entries."""

    hits: int = 0
    misses: int = 0
    errors: int = 0
    corrupt: int = 0


class PreprocessCache:
    """Preprocessed uint8 images on disk, keyed by source path, mtime, size and preprocessing settings.

    Example:
        cache = PreprocessCache(Path(os.environ["CXR_HOME"]) / "cache" / "preprocessed", cfg)
        u8 = cache.get("images/00000001_000.png")  # (cfg.input_size, cfg.input_size) uint8
    """

    def __init__(self, root: str | Path, cfg: PreprocessConfig) -> None:
        """Open (creating if needed) the cache folder for ``cfg`` under ``root``."""
        if not isinstance(cfg, PreprocessConfig):
            raise ValueError(f"cfg must be a PreprocessConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.root = Path(root)
        self.folder = self.root / cfg.key()
        self.entry_bytes = cfg.input_size * cfg.input_size
        self.stats = CacheStats()
        self.folder.mkdir(parents=True, exist_ok=True)
        settings = self.folder / "config.json"
        if not settings.exists():
            # Lets a person see which settings a folder holds; content is the same for every writer.
            write_bytes_atomic(settings, jsonsafe.dumps(cfg.to_dict(), indent=2, sort_keys=True).encode())

    def key_for(self, path: str | Path) -> str:
        """Hash of the source file's absolute path, mtime (ns) and size; the settings select the folder.

        Raises:
            ImageReadError: the source file does not exist or cannot be stat'ed.
        """
        absolute = os.path.abspath(os.fspath(path))
        try:
            st = os.stat(absolute)
        except OSError as exc:
            raise ImageReadError(f"{Path(absolute).name}: {exc.strerror or 'cannot be read'}") from exc
        ident = f"{absolute}\0{st.st_mtime_ns}\0{st.st_size}".encode()
        return hashlib.blake2b(ident, digest_size=16).hexdigest()

    def entry_path(self, key: str) -> Path:
        """Where the entry for ``key`` lives (it may not exist yet)."""
        return self.folder / key[:2] / f"{key}{ENTRY_SUFFIX}"

    def get(self, path: str | Path) -> np.ndarray:
        """The preprocessed uint8 (size, size) image for ``path``; decoded, prepared and stored on a miss.

        Raises:
            ImageReadError: the source cannot be read or decoded (nothing is cached for it).
        """
        entry = self.entry_path(self.key_for(path))
        cached = self._load(entry)
        if cached is not None:
            self.stats.hits += 1
            return cached
        pixels, _ = read_image(path)
        out = prepare(pixels, self.cfg)
        self.stats.misses += 1
        self._store(entry, out)
        return out

    def warm(
        self, paths: Iterable[str | Path], progress: Callable[[int, int], None] | None = None
    ) -> CacheStats:
        """Fill the cache for ``paths``; unreadable sources are counted as errors and skipped.

        Present entries are checked by size only, not read. ``progress(done, total)`` is called
        after each path. Returns the counts for this call (``self.stats`` keeps the running totals).
        """
        paths = list(paths)
        before = CacheStats(**vars(self.stats))
        for done, path in enumerate(paths, start=1):
            try:
                entry = self.entry_path(self.key_for(path))
                if self._present(entry):
                    self.stats.hits += 1
                else:
                    self.get(path)
            except ImageReadError as exc:
                self.stats.errors += 1
                logger.warning("cache warm skipped %s: %s", path, exc)
            if progress is not None:
                progress(done, len(paths))
        return CacheStats(**{k: v - getattr(before, k) for k, v in vars(self.stats).items()})

    def _present(self, entry: Path) -> bool:
        """Whether a complete entry exists at ``entry``."""
        try:
            return entry.stat().st_size == self.entry_bytes
        except OSError:
            return False

    def _load(self, entry: Path) -> np.ndarray | None:
        """Read an entry, or None when it is missing or has the wrong length (then counted as corrupt)."""
        out = np.empty((self.cfg.input_size, self.cfg.input_size), dtype=np.uint8)
        try:
            with open(entry, "rb") as fh:
                n_read = fh.readinto(memoryview(out).cast("B"))
                longer = bool(fh.read(1))
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("cache entry %s unreadable (%s); recomputing", entry, exc)
            self.stats.corrupt += 1
            return None
        if n_read != self.entry_bytes or longer:
            logger.warning("cache entry %s has the wrong length; recomputing", entry)
            self.stats.corrupt += 1
            return None
        return out

    def _store(self, entry: Path, image: np.ndarray) -> None:
        """Write an entry atomically; a failure to write is logged, never raised (the cache is optional)."""
        try:
            entry.parent.mkdir(exist_ok=True)
            write_bytes_atomic(entry, np.ascontiguousarray(image, dtype=np.uint8).tobytes())
        except OSError as exc:
            logger.warning("could not write cache entry %s: %s", entry, exc)
