"""Plotly figures for the dashboard, built from the engine's DataFrames."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

POSITIVE = "#d55e00"
NEGATIVE = "#0072b2"


def frequency_bars(freq: pd.DataFrame) -> go.Figure:
    """Positive and negative frequency per label, with the counts on hover."""
    frame = freq.reset_index()
    fig = go.Figure(
        [
            go.Bar(
                x=frame["label"],
                y=frame["freq_pos"],
                name="positive",
                marker_color=POSITIVE,
                customdata=frame["positives"],
                hovertemplate="%{x}<br>positive: %{y:.1%} (%{customdata})",
            ),
            go.Bar(
                x=frame["label"],
                y=frame["freq_neg"],
                name="negative",
                marker_color=NEGATIVE,
                customdata=frame["negatives"],
                hovertemplate="%{x}<br>negative: %{y:.1%} (%{customdata})",
            ),
        ]
    )
    fig.update_layout(
        barmode="group", yaxis_tickformat=".0%", yaxis_title="share of known labels", height=380
    )
    return fig


def contribution_bars(contrib: pd.DataFrame) -> go.Figure:
    """Loss contribution of positives and negatives per label, unweighted beside frequency-weighted."""
    frame = contrib.reset_index().melt(id_vars="label", var_name="part", value_name="contribution")
    frame["weighting"] = frame["part"].str.endswith("_weighted").map({True: "weighted", False: "unweighted"})
    frame["class"] = frame["part"].str.replace("_weighted", "", regex=False)
    fig = px.bar(
        frame,
        x="label",
        y="contribution",
        color="class",
        facet_row="weighting",
        barmode="group",
        color_discrete_map={"positive": POSITIVE, "negative": NEGATIVE},
        category_orders={"weighting": ["unweighted", "weighted"]},
        hover_data={"contribution": ":.3f"},
        height=520,
    )
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    return fig


def cooccurrence_heatmap(matrix: pd.DataFrame, title: str) -> go.Figure:
    """Label-by-label heat map with values on hover."""
    fig = px.imshow(matrix, color_continuous_scale="Viridis", aspect="auto", labels={"color": title})
    fig.update_layout(height=max(360, 28 * len(matrix) + 160))
    return fig


def count_bars(frame: pd.DataFrame, x: str, y: str, title: str) -> go.Figure:
    """A plain bar chart of counts."""
    data = frame.reset_index()
    fig = px.bar(data, x=data.columns[0] if x == "index" else x, y=y, title=title, height=300)
    fig.update_xaxes(type="category")
    return fig


def curve_figure(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    kind: str,
    height: int = 460,
) -> go.Figure:
    """ROC ("roc": x = FPR, y = TPR) or precision-recall ("pr": x = recall, y = precision) curves.

    ``curves`` maps a legend entry (which carries the AUROC / AP) to its (x, y) points.
    """
    fig = go.Figure()
    if kind == "roc":
        fig.add_trace(
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "grey"}, name="chance")
        )
    axis = {"roc": ("1 - specificity (FPR)", "sensitivity (TPR)"), "pr": ("recall", "precision")}[kind]
    for name, (x, y) in curves.items():
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                name=name,
                hovertemplate=f"{axis[0]} %{{x:.3f}}<br>{axis[1]} %{{y:.3f}}<extra>{name}</extra>",
            )
        )
    fig.update_layout(
        xaxis_title=axis[0],
        yaxis_title=axis[1],
        xaxis_range=[0, 1],
        yaxis_range=[0, 1.02],
        height=height,
        legend={"font": {"size": 11}},
    )
    return fig


def reliability_figure(curves: dict[str, pd.DataFrame], dashed: Collection[str] = ()) -> go.Figure:
    """Reliability diagram: mean predicted probability against the observed fraction of positives.

    Curves named in ``dashed`` (e.g. the uncalibrated ones) are drawn dashed.
    """
    fig = go.Figure(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "grey"}, name="ideal")
    )
    for name, frame in curves.items():
        frame = frame[frame["count"] > 0]
        fig.add_trace(
            go.Scatter(
                x=frame["mean_predicted"],
                y=frame["fraction_positive"],
                mode="lines+markers",
                name=name,
                line={"dash": "dash"} if name in dashed else None,
                customdata=frame["count"],
                hovertemplate="predicted %{x:.2f}<br>observed %{y:.2f}<br>%{customdata} images",
            )
        )
    fig.update_layout(
        xaxis_title="mean predicted probability",
        yaxis_title="fraction positive",
        xaxis_range=[0, 1],
        yaxis_range=[0, 1.02],
        height=420,
    )
    return fig


def confusion_figure(tp: int, fp: int, tn: int, fn: int) -> go.Figure:
    """A 2 x 2 confusion matrix with counts."""
    z = [[tp, fn], [fp, tn]]
    fig = px.imshow(
        z,
        x=["predicted positive", "predicted negative"],
        y=["actually positive", "actually negative"],
        text_auto=True,
        color_continuous_scale="Blues",
    )
    fig.update_layout(height=300, coloraxis_showscale=False)
    return fig


def bar_figure(values: pd.Series, title: str, fmt: str = ".3f") -> go.Figure:
    """Horizontal bars of one value per item (e.g. label probabilities), largest on top."""
    values = values.sort_values()
    fig = go.Figure(
        go.Bar(
            x=values.to_numpy(),
            y=values.index.astype(str),
            orientation="h",
            marker_color=POSITIVE,
            hovertemplate=f"%{{y}}: %{{x:{fmt}}}<extra></extra>",
        )
    )
    fig.update_layout(title=title, height=max(220, 26 * len(values) + 90), margin={"l": 10})
    fig.update_yaxes(type="category", dtick=1, automargin=True)
    return fig


def history_figure(history: pd.DataFrame) -> go.Figure:
    """Training and validation loss, and validation AUROC (and a detector's mAP@0.5), per epoch.

    A column a run did not record (a detector has no validation loss) is left out.
    """
    fig = go.Figure()
    series = (("train_loss", "y"), ("val_loss", "y"), ("val_map50", "y2"), ("val_auroc", "y2"))
    for column, axis in series:
        if column in history.columns and history[column].notna().any():
            fig.add_trace(
                go.Scatter(
                    x=history["epoch"],
                    y=history[column],
                    name=column.replace("_", " ").replace("map50", "mAP@0.5"),
                    yaxis=axis,
                    mode="lines+markers",
                )
            )
    scores = "validation mAP@0.5 / AUROC" if "val_map50" in history.columns else "validation AUROC"
    fig.update_layout(
        xaxis_title="epoch",
        yaxis={"title": "loss"},
        yaxis2={"title": scores, "overlaying": "y", "side": "right", "range": [0, 1]},
        height=360,
        legend={"orientation": "h"},
    )
    return fig


def loss_figure(history: list[dict[str, Any]]) -> go.Figure:
    """Training and validation loss per epoch of a run's records; a loss never recorded is left out."""
    epochs = [h["epoch"] for h in history]
    fig = go.Figure()
    for key, name, colour in (("train_loss", "train", NEGATIVE), ("val_loss", "validation", POSITIVE)):
        values = [h.get(key) for h in history]
        if all(v is None for v in values):  # a detector run records no validation loss
            continue
        fig.add_scatter(x=epochs, y=values, name=name, mode="lines+markers", line_color=colour)
    fig.update_layout(title="Loss", xaxis_title="epoch", yaxis_title="loss", height=320)
    fig.update_xaxes(dtick=1)
    return fig


def score_figure(
    history: list[dict[str, Any]], key: str, per_label_key: str, title: str, chance: float | None = None
) -> go.Figure:
    """A validation score per epoch of a run's records: the macro mean, each label's, and chance if any.

    Records without the score (or a label) leave gaps; e.g. ``key="val_map50"`` and
    ``per_label_key="val_ap50_per_label"`` for a detector, ``"val_auroc"`` for a classifier.
    """
    epochs = [h["epoch"] for h in history]
    fig = go.Figure()
    labels = list((history[-1].get(per_label_key) or {}) if history else {})
    for label in labels:
        values = [(h.get(per_label_key) or {}).get(label) for h in history]
        fig.add_scatter(x=epochs, y=values, name=label, mode="lines", line={"dash": "dot", "width": 1})
    fig.add_scatter(
        x=epochs, y=[h.get(key) for h in history], name="macro", mode="lines+markers", line_width=3
    )
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dash", line_color="grey", annotation_text="chance")
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title=title.split()[-1], height=320)
    fig.update_yaxes(range=[0, 1])
    fig.update_xaxes(dtick=1)
    return fig


UNRELIABLE_MARK = " ⚠"  # after a label whose figures should not be trusted
CALL_COLOURS = {"above": POSITIVE, "below": NEGATIVE, "no threshold": "#999999"}


def readings_figure(readings: pd.DataFrame) -> go.Figure:
    """Each label's probability as a bar, its threshold as a black tick, unreliable labels hatched and marked.

    ``readings`` is ``cxrcore.evaluate.trust.label_readings`` (first row drawn on top).
    """
    rows = readings.iloc[::-1]
    marks = ["" if ok else UNRELIABLE_MARK for ok in rows["reliable"]]
    names = [label + mark for label, mark in zip(rows["label"], marks, strict=True)]
    hover = [
        f"{r.label}: {r.probability:.3f} ({r.call}"
        + ("" if np.isnan(r.threshold) else f" the threshold {r.threshold:.3f}")
        + ")<br>test AUROC "
        + ("n/a" if np.isnan(r.auroc) else f"{r.auroc:.3f} [{r.auroc_lo:.3f}, {r.auroc_hi:.3f}]")
        + f", {r.test_positives or 0} test positives"
        + ("" if r.reliable else f"<br>unreliable: {r.why}")
        for r in rows.itertuples()
    ]
    bars = go.Bar(
        x=rows["probability"].tolist(),
        y=names,
        orientation="h",
        name="probability",
        marker={
            "color": [CALL_COLOURS[c] for c in rows["call"]],
            "opacity": [1.0 if ok else 0.5 for ok in rows["reliable"]],
            "pattern": {"shape": ["" if ok else "/" for ok in rows["reliable"]]},
        },
        text=[f"{p:.2f} {c}" for p, c in zip(rows["probability"], rows["call"], strict=True)],
        textposition="outside",
        hovertext=hover,
        hoverinfo="text",
    )
    ticks = go.Scatter(
        x=[None if np.isnan(t) else t for t in rows["threshold"]],
        y=names,
        mode="markers",
        name="threshold",
        marker={"symbol": "line-ns-open", "size": 16, "color": "black", "line": {"width": 3}},
        hoverinfo="skip",
    )
    fig = go.Figure([bars, ticks])
    fig.update_layout(
        title="Calibrated probability per label (black tick: the label's threshold; ⚠ hatched: unreliable)",
        height=max(240, 28 * len(rows) + 110),
        margin={"l": 10},
        xaxis={"range": [0, 1.12], "title": "probability"},
        showlegend=False,
    )
    fig.update_yaxes(type="category", dtick=1, automargin=True)
    return fig
