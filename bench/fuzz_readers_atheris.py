"""The atheris (libFuzzer) harness for the image readers; ``bench/fuzz_readers.py --atheris-runs N`` runs it.

Run alone: PYTHONPATH=.:tests .venv/bin/python bench/fuzz_readers_atheris.py -runs=10000 CORPUS_DIR

Pillow, pydicom and the readers are instrumented for coverage; each input must keep the property of
``tests/reader_fuzz.py`` (a valid image or ImageReadError). Anything else ends the run with a crash
report and the input saved by libFuzzer (``-artifact_prefix``).
"""

from __future__ import annotations

import sys
import warnings

import atheris

with atheris.instrument_imports():
    import PIL.Image  # noqa: F401  (instrumented for coverage)
    import pydicom  # noqa: F401
    from reader_fuzz import check

    import cxrcore.io  # noqa: F401


def test_one_input(data: bytes) -> None:
    """The property for one input; an exception or failed assertion is a crash for libFuzzer."""
    check(data)


if __name__ == "__main__":
    warnings.simplefilter("ignore")  # damaged files make Pillow and pydicom warn
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
