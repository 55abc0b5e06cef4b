"""Entry point for ``python -m cxrcore``."""

from __future__ import annotations

import sys

from cxrcore.cli import main

if __name__ == "__main__":
    sys.exit(main())
