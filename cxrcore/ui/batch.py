"""Several uploads at once on the Explain page: a gallery of the set, its reports, and one image opened.

The set is reviewed once per upload set and model in this session (``cxrcore.workflows.batch_report``;
the uploads stay in memory and are never stored); the HTML and PDF reports and the CSV are made with
it, so the download buttons have them ready.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from cxrcore.digest import array_digest
from cxrcore.models.checkpoint import Checkpoint
from cxrcore.ui import state
from cxrcore.ui.explain import ImageChoice, model_key, read_upload, session_memo
from cxrcore.ui.models import load_model
from cxrcore.ui.page import compute_turn
from cxrcore.ui.turns import LATER
from cxrcore.workflows.batch_report import BatchReview, batch_table, gallery_table, review_batch
from cxrcore.workflows.report_render import html_report, pdf_report


@dataclass(frozen=True)
class _Reviewed:
    """A reviewed set and its downloads."""

    review: BatchReview
    html: bytes
    pdf: bytes
    csv: bytes


def _review(checkpoint: Checkpoint, uploads: Sequence[tuple[str, bytes]]) -> _Reviewed:
    """Review every upload with a progress bar, and make the reports."""
    bar = st.progress(0.0, text=f"Explaining {len(uploads)} images...")
    review = review_batch(
        checkpoint,
        list(uploads),
        progress=lambda done, total, name: bar.progress(
            done / total, text=f"Explained {name} ({done}/{total})"
        ),
    )
    bar.empty()
    csv = batch_table(review).to_csv(index=False).encode("utf-8")
    return _Reviewed(review, html_report(review).encode("utf-8"), pdf_report(review), csv)


def _thumbnail_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def gallery_section(checkpoint_path: Path, uploads: Sequence[tuple[str, bytes]]) -> ImageChoice | None:
    """The gallery of several uploads, sorted by a chosen label; returns the upload opened below it."""
    checkpoint = load_model(checkpoint_path)
    key = (model_key(checkpoint), array_digest(*(name.encode() + b"\0" + data for name, data in uploads)))
    with compute_turn(LATER):  # a set of images must not hold back other people's single uploads
        reviewed = session_memo(state.BATCH_REVIEWS, key, lambda: _review(checkpoint, uploads))
    review = reviewed.review
    for image in review.failed:
        st.warning(f"Cannot read {image.name!r}: {image.error}", icon="⚠️")
    if not review.reviewed:
        return None
    left, right = st.columns([1, 2])
    labels = list(checkpoint.labels)
    sort_by = left.selectbox("Sort by", labels, key="gallery_sort", help="The most probable first.")
    table = gallery_table(review, sort_by)
    shown = table.drop(columns="position").assign(thumbnail=table["thumbnail"].map(_thumbnail_uri))
    right.caption(
        f"{len(review.reviewed)} of {len(review.images)} images explained with {checkpoint.name}; "
        "called positive: at or above the label's threshold."
    )
    st.dataframe(
        shown,
        column_config={"thumbnail": st.column_config.ImageColumn("image", width="small")},
        hide_index=True,
        width="stretch",
        key="gallery_table",
    )
    c1, c2, c3 = st.columns(3)
    c1.download_button(
        "Download report (HTML)", reviewed.html, "review.html", "text/html", key="dl_report_html"
    )
    c2.download_button(
        "Download report (PDF)", reviewed.pdf, "review.pdf", "application/pdf", key="dl_report_pdf"
    )
    c3.download_button("Download CSV", reviewed.csv, "review.csv", "text/csv", key="dl_review_csv")
    order = table["position"].tolist()
    position = st.selectbox(
        "Open", order, format_func=lambda i: review.images[i].name, key="gallery_open",
        help="Its probabilities, trust and maps below.",
    )  # fmt: skip
    name, data = uploads[int(position)]
    return read_upload(name, data)
