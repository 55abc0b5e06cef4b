"""Plain HTML tables (``cxrcore.ui.tables``): text shown as written, the index as the first column,
numbers to the precision asked, the probability bars from 0 to 1."""

from __future__ import annotations

import pandas as pd
from page_harness import tables_in_html

from cxrcore.ui.tables import styled
from cxrcore.ui.trust import probability_bars


def test_label_names_are_text_not_markup_and_the_index_is_a_column() -> None:
    frame = pd.DataFrame(
        {"probability": [0.12345, 0.5], "call": ["below", "above"]},
        index=pd.Index(["<b>Mass</b> & co", "Nodule"], name="label"),
    )
    html = styled(frame).to_html()
    assert "&lt;b&gt;Mass&lt;/b&gt; &amp; co" in html and "<b>Mass" not in html
    [table] = tables_in_html(html)
    assert list(table.columns) == ["label", "probability", "call"]
    assert table["label"].tolist() == ["<b>Mass</b> & co", "Nodule"]  # as written, once unescaped
    assert table["probability"].tolist() == [0.123, 0.5]  # three decimals


def test_probability_bars_run_from_zero_to_one() -> None:
    frame = pd.DataFrame({"probability": [0.25, 1.0], "threshold": [0.1, 0.2]}, index=["a", "b"])
    html = probability_bars(frame.rename_axis("label")).to_html()
    assert html.count("linear-gradient") == 2  # one bar per probability, none for the threshold
    assert "25.0%" in html  # a quarter of the cell for 0.25, whatever the other values
