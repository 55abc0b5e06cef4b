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

if TYPE_CHECKING:  # annotations only: the readings need no PyTorch
    from cxrcore.explain.engine import Explanation
    from cxrcore.models.checkpoint import Checkpoint
    from cxrcore.models.guard import Verdict
    from cxrcore.models.model_card import ModelCard

PROBABILITY_HELP = "The model's calibrated probability; the call compares it with the label's threshold."


def readings_section(checkpoint: Checkpoint, explanation: Explanation) -> pd.DataFrame:
    """The per-label table, each probability drawn as a bar beside its threshold and trust mark; the
    bars with threshold ticks as a chart on request.

    The chart is behind a toggle: a Plotly chart costs a new browser session about a second of drawing,
    which would double the time from an upload to its result. Returns the readings (labels called
    positive first), whose order the label picker follows.
    """
    readings = label_readings(checkpoint.card, explanation.probabilities)
    called = readings.loc[readings["call"] == "above", "label"].tolist()
    st.dataframe(
        readings_table(readings),
        width="stretch",
        key="explain_readings_table",
        column_config={
            "probability": st.column_config.ProgressColumn(
                "probability", format="%.3f", min_value=0.0, max_value=1.0, help=PROBABILITY_HELP
            ),
        },
    )
    st.caption(
        (f"Called positive (at or above the label's threshold): {', '.join(called)}. " if called else "")
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
    st.dataframe(labels_table(card), width="stretch", height="content", key="explain_labels_table")
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
