"""The one exception type that leaves ``cxrcore.io``, and how third-party errors are turned into it."""

from __future__ import annotations

import re
from pathlib import Path

# Object reprs such as "<_io.BytesIO object at 0x7f...>" say nothing to a person.
_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


class ImageReadError(ValueError):
    """An image could not be read; the message says why, in words a person understands.

    It is the only exception type that ``read_image`` and ``image_size`` raise. Messages name a
    file by its base name only and never carry patient data read from a DICOM header.
    """


def decoder_detail(exc: BaseException, path: Path | None = None) -> str:
    """Return a short, safe version of a third-party error message for use inside our own message.

    Full paths are cut down to the base name and object reprs are dropped. Callers use it only for
    errors raised while decoding pixels or parsing image headers, never for messages that could
    quote DICOM patient elements (those are never parsed; see ``cxrcore.io.dicom``).
    """
    text = str(exc).strip() or type(exc).__name__
    if path is not None:
        for spelling in sorted({str(path.resolve()), str(path)}, key=len, reverse=True):
            text = text.replace(spelling, path.name)
    text = _OBJECT_REPR.sub("the data", text)
    text = " ".join(text.split())
    return text[:200]
