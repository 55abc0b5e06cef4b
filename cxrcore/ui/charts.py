"""Plotly figures for the dashboard, built from the engine's DataFrames."""

from __future__ import annotations

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
