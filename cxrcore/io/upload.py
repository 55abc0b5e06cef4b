"""Uploaded files: the size limit the dashboard enforces, checked again before any byte is decoded.

Streamlit refuses files over ``server.maxUploadSize`` (``.streamlit/config.toml``) in the browser
already; the engine checks the same limit on the bytes it is handed, so a larger file that reaches it
another way (a test, a script, a changed config) gets the same clear message instead of a decode.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrcore.io.errors import ImageReadError
from cxrcore.io.reader import read_image

MAX_UPLOAD_MB = 64  # the dashboard's server.maxUploadSize (a test keeps the two equal)
_MB = 1 << 20  # Streamlit counts the limit in mebibytes


class UploadTooLargeError(ImageReadError):
    """An uploaded file is larger than the dashboard accepts."""


def check_upload_size(size: int, limit_mb: int = MAX_UPLOAD_MB) -> None:
    """Raise ``UploadTooLargeError`` when ``size`` bytes exceed ``limit_mb`` mebibytes."""
    if size > limit_mb * _MB:
        raise UploadTooLargeError(
            f"the file is {size / _MB:.1f} MB, over this dashboard's upload limit of {limit_mb} MB "
            "(server.maxUploadSize in .streamlit/config.toml); it was not read"
        )


def read_upload(
    data: bytes | bytearray | memoryview, *, limit_mb: int = MAX_UPLOAD_MB
) -> tuple[np.ndarray, dict[str, Any]]:
    """``read_image`` on an uploaded file's bytes, after checking them against the upload limit."""
    check_upload_size(len(data) if not isinstance(data, memoryview) else data.nbytes, limit_mb)
    return read_image(data)
