"""A shift or lot report as one self-contained HTML file: the same content as the PDF, with
interactive plotly charts. plotly.js is embedded once from the installed package, so the
file opens offline, from a USB stick or a mail attachment."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import plotly.graph_objects as go
from jinja2 import Environment, FileSystemLoader, select_autoescape

from huoyan.quality.pdf import DEFECTS_NOTE

_env = Environment(
    loader=FileSystemLoader(str(Path(__file__).parent / "templates")), autoescape=select_autoescape(["html"])
)


def _figure(result: Any, first: bool) -> str:
    fig = go.Figure()
    for row, chart in enumerate(result.charts):

        def clean(values: Any) -> list[float | None]:
            return [float(v) if math.isfinite(float(v)) else None for v in values]

        axis = "y" if row == 0 else "y2"
        fig.add_scatter(x=result.labels, y=clean(chart.statistic), name=chart.name, mode="lines+markers", yaxis=axis)
        fig.add_scatter(x=result.labels, y=clean(chart.center), name="centre", line={"dash": "dash"}, yaxis=axis)
        for name in ("ucl", "lcl"):
            fig.add_scatter(
                x=result.labels, y=clean(getattr(chart, name)), name=name.upper(),
                line={"dash": "dot", "color": "#c0392b", "shape": "hv"}, yaxis=axis,
            )  # fmt: skip
        bad = sorted({v.index for c, v in result.violations if c is chart})
        fig.add_scatter(
            x=[result.labels[i] for i in bad], y=[float(chart.statistic[i]) for i in bad], name="rule violated",
            mode="markers", marker={"size": 11, "color": "#c0392b", "symbol": "circle-open"}, yaxis=axis,
        )  # fmt: skip
    layout: dict[str, Any] = {"height": 320 * len(result.charts), "showlegend": False, "margin": {"t": 20}}
    if len(result.charts) > 1:
        layout.update(yaxis={"domain": [0.55, 1.0]}, yaxis2={"domain": [0.0, 0.45]})
    fig.update_layout(**layout)
    return str(fig.to_html(full_html=False, include_plotlyjs=bool(first)))


def render_html(data: Any) -> str:
    """The report (``huoyan.store.reporting.ShiftReport``) as a standalone HTML page."""
    zone = ZoneInfo(data.timezone)
    charts: list[tuple[str, str, list[tuple[str, str, str, str]]]] = []
    for title, result in (
        ("NG rate by hour (p chart)", data.ng_chart),
        ("OK parts' score / threshold by hour", data.score_chart),
    ):
        if result is None:
            continue
        violations = [(c.name, result.labels[v.index], v.rule, v.text) for c, v in result.violations]
        charts.append((title, _figure(result, first=not charts), violations))
    return _env.get_template("report.html").render(
        r=data,
        defects_note=DEFECTS_NOTE,
        defects_total=max(1, sum(n for _, n in data.defect_types)),
        charts=charts,
        local=lambda t: t.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        pct=lambda x: "—" if x is None else f"{100 * x:.2f}%",
        b64=lambda b: base64.b64encode(b).decode(),
    )
