"""The batch review as a report people can take away: one self-contained HTML page, and the same as a PDF.

Both hold the research-use notice, a summary of the model card (training data, input size,
calibration, operating points, test split), an overview of every image (thumbnail, labels called
positive, guard verdict), the files that could not be read, and per image its readings table
(probability, threshold, call, test AUROC with its interval, trust) and explanation panel. The HTML
embeds its pictures as base64 PNGs, so it is one file; the PDF is drawn with ReportLab, its text left
uncompressed so that what it says can be searched (and checked) like the HTML's.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from cxrcore.evaluate.trust import (
    MIN_AUROC_LOWER,
    MIN_TEST_POSITIVES,
    auroc_text,
    training_summary,
    trust_text,
)
from cxrcore.models.readout import CALIBRATION_NAMES
from cxrcore.notice import RESEARCH_NOTICE
from cxrcore.workflows.batch_report import BatchReview, ImageReview, called_text, guard_text

TRUST_NOTE = (
    f"⚠ unreliable: the label's test AUROC interval reaches below {MIN_AUROC_LOWER}, fewer than "
    f"{MIN_TEST_POSITIVES} test images were positive for it, or the model card has no test figures."
)
PDF_WARNING = "(!)"
CALL_NOTE = "A label is called positive when its calibrated probability is at or above its threshold."


def model_lines(review: BatchReview) -> list[tuple[str, str]]:
    """(what, value) lines summarising the model card, for both reports."""
    s = training_summary(review.card)
    data = "synthetic phantoms" if s["synthetic"] else "real chest X-rays"
    sources = f" ({', '.join(s['sources'])})" if s["sources"] else ""
    method = s["calibration"]
    return [
        (
            "Model",
            f"{review.checkpoint}: {s['architecture']}, {s['labels']} labels, input {s['input_size']} px",
        ),
        ("Trained on", f"{s['dataset']}: {s['images'] or 'unknown number of'} {data}{sources}"),
        ("Data", s["description"] or "not described in the model card"),
        ("Probabilities", f"calibrated by {CALIBRATION_NAMES[method]}" if method else "not calibrated"),
        ("Thresholds", s["operating_points"] or "none stored (no label is called positive)"),
        ("Test figures", s["test_split"] or "none in the model card"),
    ]


def reading_rows(image: ImageReview, warning: str = "⚠") -> list[list[str]]:
    """The readings table of one image as text cells, header first (``warning`` marks unreliable labels)."""
    rows = [["label", "probability", "threshold", "call", "test AUROC [95% CI], positives", "trust"]]
    for r in image.readings.itertuples():
        mark = "" if r.reliable else f" {warning}"
        threshold = "" if r.threshold != r.threshold else f"{r.threshold:.3f}"
        rows.append(
            [
                r.label + mark,
                f"{r.probability:.3f}",
                threshold,
                r.call,
                auroc_text(r._asdict()),
                trust_text(r.reliable, r.why),
            ]
        )
    return rows


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _table_html(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
.notice { background: #fff3cd; border: 1px solid #d39e00; padding: 0.8em; font-weight: bold; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
.image { border-top: 2px solid #888; margin-top: 2em; padding-top: 1em; }
.panel { max-width: 100%; }
.error { color: #a00; }
"""


def html_report(review: BatchReview) -> str:
    """The whole review as one self-contained HTML page (pictures inline as base64 PNGs)."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Chest X-ray review: {esc(review.checkpoint)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Chest X-ray review</h1><p class='notice'>{esc(RESEARCH_NOTICE)}</p>",
        f"<p>{len(review.images)} file(s), {len(review.reviewed)} reviewed, "
        f"created {esc(review.created_at)}.</p>",
        "<h2>Model</h2>",
        _table_html([["", "from the model card"], *[[k, v] for k, v in model_lines(review)]]),
        f"<p>{esc(CALL_NOTE)} {esc(TRUST_NOTE)}</p>",
        "<h2>Overview</h2>",
    ]
    overview = ["<table><thead><tr><th></th><th>file</th><th>called positive</th><th>guard</th></tr></thead>"]
    for image in review.reviewed:
        thumb = f"<img src='{_png_uri(image.thumbnail)}' alt='thumbnail'>" if image.thumbnail else ""
        overview.append(
            f"<tr><td>{thumb}</td><td>{esc(image.name)}</td><td>{esc(called_text(image))}</td>"
            f"<td>{esc(guard_text(image))}</td></tr>"
        )
    parts.append("".join(overview) + "</table>")
    if review.failed:
        parts.append("<h2>Files that could not be read</h2><ul>")
        parts += [f"<li class='error'>{esc(i.name)}: {esc(i.error or '')}</li>" for i in review.failed]
        parts.append("</ul>")
    for image in review.reviewed:
        parts.append(f"<div class='image'><h2>{esc(image.name)}</h2>")
        parts.append(f"<p>Upload guard: {esc(guard_text(image))}</p>")
        parts.append(_table_html(reading_rows(image)))
        shown = ", ".join(image.panel_labels)
        parts.append(f"<p>The image, CAM and CRM for {esc(shown)}:</p>")
        parts.append(f"<img class='panel' src='{_png_uri(image.panel)}' alt='explanation panel'></div>")
    parts.append(f"<p class='notice'>{esc(RESEARCH_NOTICE)}</p></body></html>")
    return "\n".join(parts)


def _pdf_table(rows: list[list[Any]], styles: Any, widths: list[float] | None = None) -> Any:
    """A ReportLab table with wrapped cells and a grid."""
    from reportlab.lib import colors
    from reportlab.platypus import Paragraph, Table, TableStyle

    small = styles["BodyText"].clone("cell", fontSize=7, leading=8.5)
    cells = [[c if not isinstance(c, str) else Paragraph(html.escape(c), small) for c in row] for row in rows]
    table = Table(cells, colWidths=widths, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    return table


def _pdf_image(data: bytes, max_width: float) -> Any:
    """A PNG as a ReportLab flowable, scaled to fit ``max_width`` points."""
    from reportlab.lib.utils import ImageReader
    from reportlab.platypus import Image

    width, height = ImageReader(io.BytesIO(data)).getSize()
    scale = min(1.0, max_width / width)
    return Image(io.BytesIO(data), width=width * scale, height=height * scale)


def pdf_report(review: BatchReview) -> bytes:
    """The same report as ``html_report``, as a PDF (A4)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer

    styles = getSampleStyleSheet()
    notice = styles["BodyText"].clone("notice", textColor="#8a5a00", fontName="Helvetica-Bold")
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer, pagesize=A4, leftMargin=1.5 * cm, rightMargin=1.5 * cm, title="Chest X-ray review",
        pageCompression=0,
    )  # fmt: skip
    width = doc.width
    story: list[Any] = [Paragraph("Chest X-ray review", styles["Title"]), Paragraph(RESEARCH_NOTICE, notice)]
    story.append(
        Paragraph(
            f"{len(review.images)} file(s), {len(review.reviewed)} reviewed, created {review.created_at}.",
            styles["BodyText"],
        )
    )
    story += [
        Paragraph("Model", styles["Heading2"]),
        _pdf_table([["", "from the model card"], *map(list, model_lines(review))], styles),
    ]
    # The PDF's standard fonts have no warning sign.
    story.append(
        Paragraph(html.escape(f"{CALL_NOTE} {TRUST_NOTE}".replace("⚠", PDF_WARNING)), styles["BodyText"])
    )
    story.append(Paragraph("Overview", styles["Heading2"]))
    overview: list[list[Any]] = [["", "file", "called positive", "guard"]]
    for image in review.reviewed:
        overview.append(
            [_pdf_image(image.thumbnail, 2 * cm), image.name, called_text(image), guard_text(image)]
        )
    story.append(_pdf_table(overview, styles, [2.3 * cm, 4 * cm, 5.5 * cm, width - 11.8 * cm]))
    if review.failed:
        story.append(Paragraph("Files that could not be read", styles["Heading2"]))
        for image in review.failed:
            story.append(Paragraph(html.escape(f"{image.name}: {image.error}"), styles["BodyText"]))
    for image in review.reviewed:
        story += [PageBreak(), Paragraph(html.escape(image.name), styles["Heading2"])]
        story.append(Paragraph(html.escape(f"Upload guard: {guard_text(image)}"), styles["BodyText"]))
        story += [Spacer(1, 4), _pdf_table(reading_rows(image, PDF_WARNING), styles), Spacer(1, 6)]
        story.append(_pdf_image(image.panel, width))
    story += [Spacer(1, 8), Paragraph(RESEARCH_NOTICE, notice)]
    doc.build(story)
    return buffer.getvalue()
