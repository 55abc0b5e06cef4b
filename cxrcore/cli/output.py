"""Printing command results: plain text for people, JSON for scripts."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from tqdm import tqdm

from cxrcore import jsonsafe

EXIT_ERROR = 2  # status of a command that failed for a reason the user can fix


def emit(payload: Any, as_json: bool, text: Callable[[], str]) -> None:
    """Print strict JSON (``cxrcore.jsonsafe``: NaN and infinity as null) or the text for people."""
    print(jsonsafe.dumps(payload, indent=2) if as_json else text())


class ImageBar:
    """A tqdm bar over images, created on the first update (so cached predictions show none).

    Used as a context manager, so the bar is closed however the work ends.
    """

    def __init__(self, desc: str) -> None:
        self.desc, self.bar = desc, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None and self.bar.total != total:  # the next split's predictions
            self.close()
        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, unit="img", leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> ImageBar:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class NamedBars:
    """One ``ImageBar`` per name, for work reporting ``progress(name, done, total)``; a context manager."""

    def __init__(self) -> None:
        self.bars: dict[str, ImageBar] = {}

    def __call__(self, name: str, done: int, total: int) -> None:
        self.bars.setdefault(name, ImageBar(name))(done, total)

    def __enter__(self) -> NamedBars:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for bar in self.bars.values():
            bar.close()
