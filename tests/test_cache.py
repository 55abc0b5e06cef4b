"""Tests for cxrcore.data.cache: hits without decoding, invalidation, corrupt entries, atomic writes."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import write_png

import cxrcore.data.cache as cache_module
from cxrcore.data.cache import CacheStats, PreprocessCache
from cxrcore.io import ImageReadError, read_image
from cxrcore.preprocess import PreprocessConfig, prepare

CFG = PreprocessConfig(input_size=32)


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Four small PNGs of different shapes."""
    shapes = [(80, 60), (64, 64), (50, 90), (120, 40)]
    return [write_png(tmp_path / "src" / f"im{i}.png", size=s, seed=i) for i, s in enumerate(shapes)]


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every read_image call the cache makes."""
    calls: list[str] = []

    def counting_read(path: str | Path) -> tuple[np.ndarray, dict]:
        calls.append(str(path))
        return read_image(path)

    monkeypatch.setattr(cache_module, "read_image", counting_read)
    return calls


def _entries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.u8"))


def test_results_equal_prepare_and_second_pass_decodes_nothing(
    tmp_path: Path, images: list[Path], decode_calls: list[str]
) -> None:
    root = tmp_path / "cache"
    first = PreprocessCache(root, CFG)
    got = [first.get(p) for p in images]
    assert len(decode_calls) == 4 and first.stats.misses == 4 and first.stats.hits == 0
    for path, out in zip(images, got, strict=True):
        np.testing.assert_array_equal(out, prepare(read_image(path)[0], CFG))
        assert out.shape == (32, 32) and out.dtype == np.uint8
    assert len(_entries(root)) == 4

    second = PreprocessCache(root, CFG)  # a new process would start like this
    again = [second.get(p) for p in images]
    assert len(decode_calls) == 4  # no new decodes
    assert second.stats == CacheStats(hits=4, misses=0, errors=0, corrupt=0)
    for a, b in zip(got, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert again[0].flags.writeable


def test_changed_mtime_misses(tmp_path: Path, images: list[Path], decode_calls: list[str]) -> None:
    cache = PreprocessCache(tmp_path / "cache", CFG)
    old_key = cache.key_for(images[0])
    cache.get(images[0])
    st = images[0].stat()
    os.utime(images[0], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert cache.key_for(images[0]) != old_key
    cache.get(images[0])
    assert cache.stats.misses == 2 and cache.stats.hits == 0 and len(decode_calls) == 2


def test_rewritten_file_returns_new_content(tmp_path: Path, images: list[Path]) -> None:
    cache = PreprocessCache(tmp_path / "cache", CFG)
    before = cache.get(images[1])
    write_png(images[1], size=(64, 64), value=200)
    st = images[1].stat()
    os.utime(images[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # coarse clocks
    after = cache.get(images[1])
    assert np.all(after == 200) and not np.array_equal(before, after)


def test_different_config_uses_a_different_entry(tmp_path: Path, images: list[Path]) -> None:
    root = tmp_path / "cache"
    PreprocessCache(root, CFG).get(images[2])
    other = PreprocessCache(root, PreprocessConfig(input_size=32, fit="crop"))
    out = other.get(images[2])
    assert other.stats.misses == 1 and other.stats.hits == 0
    np.testing.assert_array_equal(out, prepare(read_image(images[2])[0], other.cfg))
    assert {p.parent.parent.name for p in _entries(root)} == {CFG.key(), other.cfg.key()}
    assert (root / CFG.key() / "config.json").is_file()


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"", lambda b: b + b"x"])
def test_corrupt_entry_is_recomputed(tmp_path: Path, images: list[Path], damage: Callable) -> None:
    cache = PreprocessCache(tmp_path / "cache", CFG)
    good = cache.get(images[0])
    entry = cache.entry_path(cache.key_for(images[0]))
    entry.write_bytes(damage(entry.read_bytes()))
    out = cache.get(images[0])
    np.testing.assert_array_equal(out, good)
    assert cache.stats.corrupt == 1 and cache.stats.misses == 2
    assert entry.stat().st_size == 32 * 32  # rewritten whole
    cache.get(images[0])
    assert cache.stats.hits == 1


def test_unreadable_source_raises_and_is_not_cached(tmp_path: Path) -> None:
    bad = tmp_path / "src" / "broken.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    cache = PreprocessCache(tmp_path / "cache", CFG)
    with pytest.raises(ImageReadError):
        cache.get(bad)
    with pytest.raises(ImageReadError, match=r"missing\.png"):
        cache.get(tmp_path / "src" / "missing.png")
    assert _entries(tmp_path / "cache") == []


def test_warm_counts_and_reports_progress(
    tmp_path: Path, images: list[Path], decode_calls: list[str]
) -> None:
    bad = tmp_path / "src" / "broken.png"
    bad.write_bytes(b"not an image")
    cache = PreprocessCache(tmp_path / "cache", CFG)
    seen: list[tuple[int, int]] = []
    first = cache.warm([*images, bad], progress=lambda done, total: seen.append((done, total)))
    assert first == CacheStats(hits=0, misses=4, errors=1, corrupt=0)
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    n_decodes = len(decode_calls)
    second = cache.warm(iter(images))
    assert second == CacheStats(hits=4, misses=0, errors=0, corrupt=0)
    assert len(decode_calls) == n_decodes
    assert cache.stats == CacheStats(hits=4, misses=4, errors=1, corrupt=0)


def test_failed_write_leaves_no_partial_entry(
    tmp_path: Path, images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = PreprocessCache(tmp_path / "cache", CFG)

    def crash(src: str | Path, dst: str | Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module.os, "replace", crash)
    out = cache.get(images[0])  # the image is still returned; only the cache write failed
    np.testing.assert_array_equal(out, prepare(read_image(images[0])[0], CFG))
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.name != "config.json"]
    assert leftovers == []


def test_concurrent_writers_of_one_entry(tmp_path: Path, images: list[Path]) -> None:
    root = tmp_path / "cache"
    caches = [PreprocessCache(root, CFG) for _ in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda c: c.get(images[3]), caches))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    files = [p for p in root.rglob("*") if p.is_file() and p.name != "config.json"]
    assert [p.suffix for p in files] == [".u8"]
    assert PreprocessCache(root, CFG).get(images[3]).tobytes() == results[0].tobytes()


def test_rejects_non_config(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PreprocessConfig"):
        PreprocessCache(tmp_path, {"size": 32})  # type: ignore[arg-type]


@pytest.mark.realdata
def test_real_nih_images_hit_on_second_pass(tmp_path: Path, data_dir: Path) -> None:
    files = sorted((data_dir / "nih14" / "images").glob("*.png"))[:6]
    cfg = PreprocessConfig(input_size=64, clahe=True)
    cache = PreprocessCache(tmp_path / "cache", cfg)
    assert cache.warm(files) == CacheStats(hits=0, misses=6, errors=0, corrupt=0)
    again = PreprocessCache(tmp_path / "cache", cfg)
    np.testing.assert_array_equal(again.get(files[0]), prepare(read_image(files[0])[0], cfg))
    assert again.stats.hits == 1 and again.stats.misses == 0
