"""A short, deterministic fuzz run of the image readers with hypothesis: every format's seed file, cut
and corrupted, either decodes to a valid image or is refused with ImageReadError (``reader_fuzz``).
The long run (>= 10,000 inputs, with time and memory limits per input) is ``bench/fuzz_readers.py``.
"""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from io_corpus import dicom_bytes, dicom_dataset, encapsulated
from pydicom.uid import RLELossless
from reader_fuzz import KINDS, apply, check, seed_files

from cxrcore.io import ImageReadError, read_image

# Damaged files make Pillow and pydicom warn (corrupt EXIF, a guessed VR); the property is about errors.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SEEDS = seed_files()
MUTATION = st.tuples(st.sampled_from(KINDS), st.floats(0, 1), st.binary(max_size=8))
# 25 inputs per seed file (14 files: 350 in all); derandomized, so every run reads the same inputs.
FUZZ = settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=2000,  # ms per input: a hang or a slow decode fails the test
    suppress_health_check=[HealthCheck.too_slow],
)


def test_every_seed_file_decodes() -> None:
    assert len(SEEDS) == 14
    for name, data in SEEDS.items():
        assert check(data) == "decoded", name


@pytest.mark.parametrize("name", sorted(SEEDS))
@FUZZ
@given(mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_a_damaged_file_decodes_or_is_refused_and_nothing_else(name: str, mutations: list) -> None:
    start = time.perf_counter()
    assert check(apply(SEEDS[name], mutations)) in ("decoded", "refused")
    assert time.perf_counter() - start < 2.0


def test_the_mutations_do_damage() -> None:
    data = SEEDS["png-grey8"]
    assert apply(data, [("truncate", 0.5, b"")]) == data[: len(data) // 2]
    wide = apply(data, [("huge-int", 16 / len(data), b"\x03")])  # the IHDR width, big-endian
    assert wide[16:20] == b"\x7f\xff\xff\xff" and check(wide) == "refused"
    assert check(apply(data, [("overwrite", 0.0, b"GIF89a")])) == "refused"


def test_a_panic_of_a_decoder_written_in_rust_is_an_image_read_error() -> None:
    """An RLE segment that decodes to more bytes than the frame holds makes pylibjpeg-rle panic; PyO3
    raises that as PanicException, a BaseException that an ``except Exception`` would let escape."""
    segment = bytes([0x81, 7]) * 40  # "repeat 7, 128 times", 40 times: 5,120 bytes for 1,920 pixels
    frame = struct.pack("<16I", 2, 64, 64 + len(segment), *([0] * 13)) + segment + segment
    ds = dicom_dataset(np.zeros((48, 40), np.uint16), bits_stored=12)
    with pytest.raises(ImageReadError, match="the DICOM image could not be decoded"):
        read_image(dicom_bytes(encapsulated(ds, [frame], RLELossless)))
