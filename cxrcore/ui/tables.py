"""Tables drawn as plain HTML: one element for the browser, however many cells.

``st.dataframe`` draws an interactive grid on a canvas, with a script of its own, and ``st.table``
renders each cell as Markdown; a short read-only table (a dozen labels' readings, the lung shares) needs
neither, and on the Explain page, where a room of people may upload at once, each browser's work
counts. Styling (bars, number formats) comes from a pandas ``Styler``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from pandas.io.formats.style import Styler

# Scoped to the table by the Styler's own id; Streamlit's fonts and colours apply otherwise.
TABLE_STYLES = [
    {"selector": "", "props": "border-collapse: collapse; width: 100%; font-size: 0.85rem;"},
    {"selector": "th, td", "props": "padding: 0.15rem 0.5rem; white-space: nowrap;"},
    {"selector": "th, td", "props": "border-bottom: 1px solid rgba(128,128,128,0.2);"},
    {"selector": "thead th", "props": "text-align: left; font-weight: 600; opacity: 0.75;"},
]


def styled(frame: pd.DataFrame, precision: int = 3) -> Styler:
    """A frame ready for ``static_table``: its index (named, e.g. "label") as the first column, numbers
    to ``precision`` decimals, text shown as written (label names come from datasets and model cards:
    their ``<`` and ``&`` are escaped, never read as markup)."""
    shown = frame.reset_index() if any(frame.index.names) else frame
    return shown.style.hide(axis="index").format(precision=precision, escape="html")


def static_table(table: pd.DataFrame | Styler) -> None:
    """``table`` (a frame, or a ``Styler`` for bars and formats) as one plain HTML table, scrolling
    sideways when it is wider than the page."""
    styler = table if isinstance(table, Styler) else styled(table)
    html = styler.set_table_styles(TABLE_STYLES, overwrite=False).to_html()
    st.html(f'<div style="overflow-x: auto">{html}</div>')
