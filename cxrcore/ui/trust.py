"""Per-label trust on the Explain page: probabilities, thresholds and test figures, and what is behind them.

The bars and the table come from ``cxrcore.evaluate.trust.label_readings`` (one engine table for the
page, the batch reports and the CSV); the expander beside them shows the upload guard's verdict and
what the model was trained on, read from its card.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from cxrcore.evaluate.trust import (
    MIN_AUROC_LOWER,
    MIN_TEST_POSITIVES,
    label_readings,
    labels_table,
    readings_table,
    training_summary,
)
from cxrcore.models.readout import CALIBRATION_NAMES
from cxrcore.ui import charts
from cxrcore.ui.tables import static_table, styled

if TYPE_CHECKING:  # annotations only: the readings need no PyTorch
    from pandas.io.formats.style import Styler

    from cxrcore.explain.engine import Explanation
    from cxrcore.models.checkpoint import Checkpoint
    from cxrcore.models.guard import Verdict
    from cxrcore.models.model_card import ModelCard

BAR_COLOUR = "#9ec1e6"


def probability_bars(table: pd.DataFrame) -> Styler:
    """The readings as a plain table, each probability over a bar from 0 to 1.

    A plain table rather than an interactive grid: the grid draws on a canvas with a script of its own,
    which cost each browser more than the rest of an upload's result.
    """
    bars = styled(table).bar(subset=["probability"], vmin=0.0, vmax=1.0, color=BAR_COLOUR, height=70)
    return bars.set_properties(subset=["probability"], **{"min-width": "9rem"})


def readings_section(checkpoint: Checkpoint, explanation: Explanation) -> pd.DataFrame:
    """The per-label table, each probability drawn as a bar beside its threshold and trust mark; the
    bars with threshold ticks as a chart on request.

    The chart is behind a toggle: a Plotly chart costs a new browser session about a second of drawing,
    which would double the time from an upload to its result. Returns the readings (labels called
    positive first), whose order the label picker follows.
    """
    readings = label_readings(checkpoint.card, explanation.probabilities)
    called = readings.loc[readings["call"] == "above", "label"].tolist()
    static_table(probability_bars(readings_table(readings)))
    st.caption(
        "Probability: the model's calibrated probability (the bar runs from 0 to 1); a label is called "
        "positive at or above its threshold. "
        + (f"Called positive: {', '.join(called)}. " if called else "")
        + f"⚠ marks a label whose test AUROC interval reaches below {MIN_AUROC_LOWER} or which had fewer "
        f"than {MIN_TEST_POSITIVES} positive test images: do not read much into its probability."
    )
    if st.toggle(
        "Probabilities as a chart, with each label's threshold", value=False, key="explain_readings_chart"
    ):
        st.plotly_chart(charts.readings_figure(readings), width="stretch", key="explain_readings")
    return readings


def labels_section(card: ModelCard) -> None:
    """Before an image is chosen: the labels the model reads, with each one's threshold, test figures
    and trust, so a reader knows which probabilities to weigh before seeing any."""
    st.markdown(f"**What this model reads** ({len(card.labels)} labels)")
    static_table(labels_table(card))
    st.caption(
        "A label is called positive when its probability reaches the threshold. Unreliable: its test "
        f"AUROC interval reaches below {MIN_AUROC_LOWER}, or it had fewer than {MIN_TEST_POSITIVES} "
        "positive test images; do not read much into its probability."
    )


def about_section(checkpoint: Checkpoint, verdict: Verdict | None) -> None:
    """The upload guard's verdict and the model's training data, calibration and operating points."""
    summary = training_summary(checkpoint.card)
    with st.expander("Upload guard and training data"):
        if verdict is None:
            st.markdown("**Upload guard:** not run for this image.")
        elif verdict.score is None:
            st.markdown("**Upload guard:** no feature statistics stored with this model; cheap checks only.")
        else:
            word = "flagged" if verdict.suspicious else "passed"
            st.markdown(
                f"**Upload guard:** {word}, feature distance {verdict.score:.1f} against a threshold of "
                f"{verdict.threshold:.1f} (the 99th percentile of its validation images)."
            )
        for reason in verdict.reasons if verdict is not None else []:
            st.markdown(f"- {reason}")
        data = "synthetic phantoms" if summary["synthetic"] else "real chest X-rays"
        sources = f" from {', '.join(summary['sources'])}" if summary["sources"] else ""
        st.markdown(
            f"**Training data:** `{summary['dataset']}`, {summary['images'] or 'an unknown number of'} "
            f"{data}{sources} (split {summary['split_counts'] or 'not recorded'}); input "
            f"{summary['input_size']} px, {summary['architecture']}, {summary['labels']} labels."
        )
        if summary["description"]:
            st.caption(summary["description"])
        method = summary["calibration"]
        calibrated = f"calibrated by {CALIBRATION_NAMES[method]}" if method else "not calibrated"
        st.markdown(
            "**Probabilities:** "
            + calibrated
            + "; thresholds: "
            + (summary["operating_points"] or "none stored")
            + "; test figures: "
            + (summary["test_split"] or "none in the model card")
            + "."
        )
