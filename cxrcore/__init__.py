"""cxrcore: the engine behind the chest X-ray dashboard (training, evaluation, explanation).

Importable and testable without Streamlit. The dashboard's pages call into it; so does the
command line (``python -m cxrcore``).
"""

from __future__ import annotations

__version__ = "0.1.0"
