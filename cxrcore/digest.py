"""Content digests of in-memory images and bytes, for keying results computed from them."""

from __future__ import annotations

import hashlib

import numpy as np


def array_digest(*parts: np.ndarray | bytes | None) -> str:
    """A digest of arrays (values, shape and dtype) and bytes, in order; None counts as a marker."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(f"{part.dtype}{part.shape}".encode())
            part = np.ascontiguousarray(part)  # hashed in place, through the buffer: no copy of the pixels
        digest.update(b"-" if part is None else part)
    return digest.hexdigest()
