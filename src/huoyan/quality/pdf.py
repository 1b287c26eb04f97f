"""A shift or lot report as PDF (ReportLab): what an auditor files.

Page one holds the summary (parts, yield, the recipe and model versions that judged
them, reviewer agreement), NG parts by defect type and the alarms; then the control
charts, drawn as vector graphics with their limits and violated points; then example
pictures of the most frequent defect types. Text is set in ReportLab's Adobe CID font for
simplified Chinese (STSong-Light, which covers Latin too), so station, shift and defect
names in Chinese print; the font ships with ReportLab and is not embedded. Its character
map lacks a few Western signs (the middle dot), so separators are dashes.
"""

from __future__ import annotations

import io
import math
from typing import Any, BinaryIO

from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Drawing, String
from reportlab.graphics.widgets.markers import makeMarker
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Image, PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from huoyan.quality.charts import Chart

FONT = "STSong-Light"
DEFECTS_NOTE = (
    "NG parts a reviewer did not call a false alarm, and OK parts a reviewer flagged as missed defects; "
    "the type is the reviewer's label, else the detector's, else 'defect'."
)
_registered = False


def _styles() -> dict[str, ParagraphStyle]:
    global _registered
    if not _registered:
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
        _registered = True
    base = getSampleStyleSheet()
    out = {}
    for name in ("Title", "Heading2", "Normal"):
        style = base[name].clone(f"huoyan-{name}")
        style.fontName = FONT
        out[name] = style
    out["Small"] = ParagraphStyle("huoyan-small", parent=out["Normal"], fontSize=8, leading=10)
    return out


def _table(rows: list[list[Any]], widths: list[float] | None = None) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), FONT, 8),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#ecf0f1")),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#bdc3c7")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    return table


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def _chart_drawing(chart: Chart, labels: list[str], flagged: set[int], width: float = 170 * mm) -> Drawing:
    """The series with its centre line and limits; violated points ringed in red."""
    height = 60 * mm
    drawing = Drawing(width, height)
    plot = LinePlot()
    plot.x, plot.y, plot.width, plot.height = 12 * mm, 10 * mm, width - 16 * mm, height - 18 * mm
    idx = range(len(chart))

    def line(values: Any) -> list[tuple[int, float]]:
        return [(i, float(v)) for i, v in zip(idx, values, strict=True) if math.isfinite(float(v))]

    series = [line(chart.statistic), line(chart.center), line(chart.ucl), line(chart.lcl)]
    series.append([(i, float(chart.statistic[i])) for i in sorted(flagged)] or [(0, float(chart.center[0]))])
    plot.data = [s if s else [(0, 0.0)] for s in series]
    styles = [
        (colors.HexColor("#34495e"), None, 0.8),
        (colors.HexColor("#27ae60"), (3, 2), 0.6),
        (colors.HexColor("#c0392b"), (1, 2), 0.6),
        (colors.HexColor("#c0392b"), (1, 2), 0.6),
    ]
    for i, (colour, dash, w) in enumerate(styles):
        plot.lines[i].strokeColor = colour
        plot.lines[i].strokeWidth = w
        if dash:
            plot.lines[i].strokeDashArray = dash
    plot.lines[0].symbol = makeMarker("FilledCircle", size=2)
    plot.lines[4].strokeColor = None
    plot.lines[4].symbol = makeMarker("Circle", size=6 if flagged else 0, strokeColor=colors.red, fillColor=None)
    plot.xValueAxis.valueMin, plot.xValueAxis.valueMax = 0, max(1, len(chart) - 1)
    plot.xValueAxis.labels.fontName = plot.yValueAxis.labels.fontName = FONT
    plot.xValueAxis.labels.fontSize = plot.yValueAxis.labels.fontSize = 6
    step = max(1, len(chart) // 8)
    plot.xValueAxis.valueSteps = list(range(0, len(chart), step))
    plot.xValueAxis.labelTextFormat = lambda v: labels[int(v)][-5:] if 0 <= int(v) < len(labels) else ""
    drawing.add(plot)
    drawing.add(String(12 * mm, height - 6 * mm, chart.name, fontName=FONT, fontSize=8))
    return drawing


def _charts(story: list[Any], styles: dict[str, ParagraphStyle], title: str, result: Any) -> None:
    story.append(Paragraph(title, styles["Heading2"]))
    if result is None:
        story.append(Paragraph("No points in this period.", styles["Normal"]))
        return
    limits = result.limits
    where = (
        f"frozen limits version {limits.version} (by {limits.frozen_by})"
        if limits.frozen
        else f"limits estimated from these {limits.points} points (Phase I)"
    )
    story.append(Paragraph(f"{result.title}; {where}.", styles["Small"]))
    for chart in result.charts:
        flagged = {v.index for c, v in result.violations if c is chart}
        story.append(_chart_drawing(chart, result.labels, flagged))
    if result.violations:
        rows = [["Chart", "Point", "Rule", "Meaning"]]
        rows += [
            [c.name, result.labels[v.index], v.rule, Paragraph(v.text, styles["Small"])] for c, v in result.violations
        ]
        story.append(_table(rows, [18 * mm, 35 * mm, 14 * mm, 100 * mm]))
    else:
        story.append(Paragraph("No rule violations.", styles["Small"]))


def render_pdf(data: Any, out: BinaryIO) -> None:
    """Write the report (``huoyan.store.reporting.ShiftReport``) as PDF to ``out``."""
    from zoneinfo import ZoneInfo

    styles = _styles()
    zone = ZoneInfo(data.timezone)
    local = lambda t: t.astimezone(zone).strftime("%Y-%m-%d %H:%M")  # noqa: E731
    story: list[Any] = [
        Paragraph(f"Huoyan quality report — {data.station} — {data.title}", styles["Title"]),
        Paragraph(
            f"{local(data.start)} to {local(data.end)} ({data.timezone}); generated {local(data.generated_at)}"
            + (f" by {data.generated_by}" if data.generated_by else ""),
            styles["Normal"],
        ),
        Spacer(0, 4 * mm),
        Paragraph("Summary", styles["Heading2"]),
    ]
    c = data.counts
    story.append(
        _table(
            [
                ["Parts", "OK", "NG", "ERROR", "First-pass yield", "NG rate"],
                [
                    sum(c.values()),
                    c.get("OK", 0),
                    c.get("NG", 0),
                    c.get("ERROR", 0),
                    _pct(data.yield_rate),
                    _pct(None if data.yield_rate is None else 1 - data.yield_rate),
                ],
            ]
        )
    )
    story.append(Spacer(0, 3 * mm))
    rows = [["Recipe", "Version", "Model", "sha256", "Parts"]]
    rows += [
        [v.recipe_id, v.recipe_version, v.model_name or "—", (v.model_sha256 or "—")[:16], v.parts]
        for v in data.versions
    ]
    story.append(Paragraph("Recipes and models that judged the parts", styles["Heading2"]))
    story.append(_table(rows))
    story.append(Paragraph("Review", styles["Heading2"]))
    agreement = _pct(data.agreement) if data.reviewed else "no parts reviewed"
    outcomes = ", ".join(f"{k} {n}" for k, n in sorted(data.reviews.items())) or "—"
    story.append(
        Paragraph(f"{data.reviewed} parts reviewed ({outcomes}); verdicts upheld: {agreement}.", styles["Normal"])
    )
    story.append(Paragraph("Defects by type", styles["Heading2"]))
    story.append(Paragraph(DEFECTS_NOTE, styles["Small"]))
    total = max(1, sum(n for _, n in data.defect_types))
    rows = [["Defect type", "Parts", "Share of defects"]] + [[k, n, _pct(n / total)] for k, n in data.defect_types]
    story.append(_table(rows) if data.defect_types else Paragraph("No defects.", styles["Normal"]))
    story.append(Paragraph("Alarms", styles["Heading2"]))
    if data.alarms:
        rows = [["Raised", "Kind", "Message", "Acknowledged"]]
        for a in data.alarms:
            ack = f"{a['acknowledged_by']}: {a['ack_comment']}" if a.get("acknowledged_by") else "not acknowledged"
            rows.append(
                [
                    a["at"][:16].replace("T", " "),
                    a["kind"],
                    Paragraph(a["message"], styles["Small"]),
                    Paragraph(ack, styles["Small"]),
                ]
            )
        story.append(_table(rows, [28 * mm, 25 * mm, 80 * mm, 40 * mm]))
    else:
        story.append(Paragraph("No alarms.", styles["Normal"]))
    for note in data.notes:
        story.append(Paragraph(f"Note: {note}", styles["Small"]))
    story.append(PageBreak())
    _charts(story, styles, "NG rate by hour (p chart)", data.ng_chart)
    _charts(story, styles, "OK parts' score / threshold by hour (X-bar and S)", data.score_chart)
    if data.examples:
        story.append(PageBreak())
        story.append(Paragraph("Examples of the most frequent defect types", styles["Heading2"]))
        for ex in data.examples:
            picture = Image(io.BytesIO(ex.jpeg))
            scale = min(80 * mm / picture.imageWidth, 70 * mm / picture.imageHeight)
            picture.drawWidth, picture.drawHeight = picture.imageWidth * scale, picture.imageHeight * scale
            caption = Paragraph(
                f"{ex.defect} — inspection {ex.inspection_id} — {ex.source_name} — {local(ex.arrived_at)}",
                styles["Small"],
            )
            story.append(Table([[picture, caption]], colWidths=[85 * mm, 85 * mm]))

    def footer(canvas: Any, doc: Any) -> None:
        canvas.setFont(FONT, 7)
        canvas.drawString(15 * mm, 10 * mm, f"Huoyan — {data.station} — {data.title}")
        canvas.drawRightString(A4[0] - 15 * mm, 10 * mm, f"page {doc.page}")

    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm,
                            bottomMargin=18 * mm, title=f"{data.station} {data.title}", author="Huoyan")  # fmt: skip
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
