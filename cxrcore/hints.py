"""Hints for a value outside a vocabulary: the closest valid names ("did you mean") and the options.

Every "unknown ..." error of the engine is built here, so they all read the same way:
``unknown method 'gradcm'; did you mean 'gradcam'? valid options: cam, crm, gradcam``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(value: object, options: Iterable[object], *, n: int = 3, cutoff: float = 0.6) -> str:
    """A "; did you mean 'a' or 'b'?" hint naming the options closest to ``value``; "" when none is close.

    It starts with "; " so that it reads straight after the quoted value: ``f"unknown x {value!r}{hint}"``.
    ``n`` and ``cutoff`` are those of ``difflib.get_close_matches``.
    """
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=n, cutoff=cutoff)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def unknown_choice(
    what: str, value: object, options: Iterable[object], *, n: int = 3, cutoff: float = 0.6
) -> str:
    """The message for a value outside a vocabulary: what it is, the close matches, the valid options."""
    names = [str(o) for o in options]
    hint = did_you_mean(value, names, n=n, cutoff=cutoff) or ";"
    return f"unknown {what} {value!r}{hint} valid options: {', '.join(names)}"
