"""Quality analytics: control charts of a station's records, frozen limits, score drift and
the plant's shift calendar. Charts are built by ``huoyan.quality.report`` from aggregates
``huoyan.store.quality`` computes in the database, as the CLI's ``huoyan spc records``."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response

from huoyan.core.plant import ShiftCalendar
from huoyan.core.records import StoredInspection
from huoyan.core.text import Message
from huoyan.quality.charts import CHARTS, ChartError
from huoyan.quality.drift import drift
from huoyan.quality.html import render_html
from huoyan.quality.pdf import render_pdf
from huoyan.quality.report import Report
from huoyan.quality.series import Options
from huoyan.server.platform import Platform, platform
from huoyan.server.routes.common import attachment, errors, not_found, said
from huoyan.server.schemas import ChartReportOut, ChartSeriesOut, DriftOut, FreezeIn, LimitsOut
from huoyan.server.security import Admin, Engineer, Operator
from huoyan.store import quality as Q
from huoyan.store.reporting import shift_report
from huoyan.vision.overlay import record_overlay

router = APIRouter(prefix="/api", tags=["quality"])
StationId = Annotated[str, Query(min_length=1, max_length=128)]
ChartKind = Literal["p", "np", "c", "u", "laney-p", "imr", "xbar-r", "xbar-s", "ewma", "cusum"]
Grouping = Literal["part", "hour", "shift", "day", "lot"]
DEFAULT_HOURS = 24.0


def _chart(
    p: Platform,
    station: str,
    metric: str,
    kind: str,
    by: str,
    since: datetime | None,
    until: datetime | None,
    rules: str,
    exclude: list[int],
    estimate: bool,
    options: Options,
) -> Report:
    end = until or datetime.now(UTC)
    window = Q.Window(station, since or end - timedelta(hours=DEFAULT_HOURS), end)
    result = Q.records_report(
        p.engine,
        window,
        metric,
        kind,
        by,
        Q.shift_calendar(p.engine),
        title=f"{metric} of {station} by {by}",
        options=replace(options, exclude=exclude),
        rules=rules,
        estimate=estimate,
    )
    if result is None:
        raise not_found(
            Message("{metric} records of station '{station}' in this period", metric=metric, station=station)
        )
    return result


@router.get("/quality/charts", response_model=ChartReportOut, responses=errors(404, 422))
async def chart(
    p: Annotated[Platform, Depends(platform)],
    _: Operator,
    station: StationId,
    metric: Annotated[str, Query(min_length=1, max_length=100, description="ng-rate, defects, score, ...")] = "ng-rate",
    chart: ChartKind = "p",
    by: Grouping = "shift",
    since: datetime | None = None,
    until: datetime | None = None,
    rules: Annotated[str, Query(max_length=200, description="WE1..WE4, N1..N8, western-electric, nelson")] = (
        "western-electric"
    ),
    exclude: Annotated[list[int], Query(max_length=1000, description="Phase I: point indices to leave out")] = [],  # noqa: B006
    estimate: Annotated[bool, Query(description="estimate the limits (Phase I) even where frozen ones exist")] = False,
    lam: Annotated[float, Query(gt=0, le=1, description="EWMA weight")] = 0.2,
    width: Annotated[float, Query(gt=0, le=10, description="EWMA limit width L")] = 3.0,
    k: Annotated[float, Query(ge=0, le=10, description="CUSUM allowance, sigmas")] = 0.5,
    h: Annotated[float, Query(gt=0, le=50, description="CUSUM decision interval, sigmas")] = 5.0,
) -> ChartReportOut:
    """A control chart of a station's records, with its rule violations and, where the
    recipe gives a specification for the metric, capability. Frozen limits are used
    unless ``estimate``; a lower limit below zero on a count chart is zero."""
    options = Options(lam=lam, width=width, k=k, h=h)
    try:
        result = await asyncio.to_thread(
            _chart, p, station, metric, chart, by, since, until, rules, exclude, estimate, options
        )
    except (ChartError, Q.QualityQueryError) as exc:
        raise HTTPException(422, said(exc)) from exc
    body = result.as_dict()
    return ChartReportOut.model_validate({**body, "metric": metric, "by": by})


@router.get("/quality/limits", response_model=list[LimitsOut], responses=errors())
def limits_history(
    p: Annotated[Platform, Depends(platform)],
    _: Operator,
    station: StationId,
    metric: Annotated[str, Query(min_length=1, max_length=100)] = "ng-rate",
    chart: ChartKind = "p",
) -> list[LimitsOut]:
    """Every frozen version of a chart's limits, newest first."""
    return [LimitsOut.model_validate(vars(x)) for x in Q.limits_history(p.engine, station, metric, chart)]


@router.post("/quality/limits", response_model=LimitsOut, responses=errors(404, 422))
async def freeze(p: Annotated[Platform, Depends(platform)], principal: Engineer, body: FreezeIn) -> LimitsOut:
    """Estimate the chart's limits from these points, leaving out ``exclude`` (Phase I), and
    keep them as the next frozen version (Phase II); the audit trail records who and why."""
    if body.chart not in CHARTS:
        raise HTTPException(
            422, Message("unknown chart '{chart}'; charts are {charts}", chart=body.chart, charts=", ".join(CHARTS))
        )
    try:
        result = await asyncio.to_thread(
            _chart, p, body.station, body.metric, body.chart, body.by, body.since, body.until,
            "none", body.exclude, True, Options(),
        )  # fmt: skip
    except (ChartError, Q.QualityQueryError) as exc:
        raise HTTPException(422, said(exc)) from exc
    who = principal.user.username
    frozen = Q.freeze_limits(p.engine, body.station, body.metric, result.limits, who, body.note)
    p.audit.add(
        who,
        "control-limits-frozen",
        body.station,
        metric=body.metric,
        chart=body.chart,
        version=frozen.version,
        params=frozen.params,
        excluded=body.exclude,
        note=body.note,
    )
    return LimitsOut.model_validate(vars(frozen))


@router.get("/quality/drift", response_model=DriftOut, responses=errors(404))
async def score_drift(
    p: Annotated[Platform, Depends(platform)],
    _: Operator,
    station: StationId,
    recent: Annotated[int, Query(ge=20, le=20_000, description="newest OK scores to compare")] = 2000,
) -> DriftOut:
    """How the newest OK scores compare with the station's model's reference: PSI, KS and
    the rank-normalised EWMA that raises the station's score-drift alarm."""
    inputs = await asyncio.to_thread(Q.drift_inputs, p.engine, station, recent)
    if inputs is None or len(inputs.recent) < 20:
        raise not_found(Message("model with enough OK scores at station '{station}' to compare", station=station))
    try:
        found = drift(inputs.reference, inputs.recent)
    except ChartError as exc:
        raise HTTPException(404, said(exc)) from exc
    return DriftOut(
        station=station,
        model_sha256=inputs.model_sha256,
        reference=inputs.reference_source,
        reference_size=inputs.reference.size,
        recent=found.n,
        psi=found.psi,
        ks_statistic=found.ks.statistic,
        ks_p_value=found.ks.p_value,
        level=found.level,
        alarm=found.alarm,
        chart=ChartSeriesOut.model_validate(found.chart.as_dict()),
    )


PDF = "application/pdf"


@router.get(
    "/quality/report",
    response_class=Response,
    responses={200: {"content": {PDF: {}, "text/html": {}}, "description": "the report"}, **errors(404, 422)},
)
async def shift_report_file(
    p: Annotated[Platform, Depends(platform)],
    principal: Operator,
    station: StationId,
    shift: Annotated[str | None, Query(max_length=80, description="e.g. '2026-11-30 A'")] = None,
    lot: Annotated[str | None, Query(max_length=200)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    format: Literal["pdf", "html"] = "pdf",
) -> Response:
    """A shift, lot or period report of a station: yield, NG by defect type with examples,
    control charts, alarms, the recipe and model versions, reviewer agreement."""

    def picture(record: StoredInspection) -> bytes:
        return record_overlay(record, lambda sha: p.blob(record.station_id, sha), max_side=480, fmt=".jpg")

    def build() -> bytes:
        data = shift_report(
            p.engine, picture, station, shift=shift, lot=lot, since=since, until=until, by=principal.user.username
        )
        if format == "html":
            return render_html(data).encode("utf-8")
        out = io.BytesIO()
        render_pdf(data, out)
        return out.getvalue()

    try:
        body = await asyncio.to_thread(build)
    except LookupError as exc:
        raise HTTPException(404, said(exc)) from exc
    except ValueError as exc:
        raise HTTPException(422, said(exc)) from exc
    name = f"huoyan-{station}-{(shift or lot or 'period').replace(' ', '_')}.{format}"
    media = PDF if format == "pdf" else "text/html; charset=utf-8"
    return Response(body, media_type=media, headers=attachment(name))


@router.get("/plant/shifts", response_model=ShiftCalendar, responses=errors())
def shifts(p: Annotated[Platform, Depends(platform)], _: Operator) -> ShiftCalendar:
    """The plant's shift calendar (charts and reports by shift use it)."""
    return Q.shift_calendar(p.engine)


@router.put("/plant/shifts", response_model=ShiftCalendar, responses=errors(422))
def set_shifts(p: Annotated[Platform, Depends(platform)], principal: Admin, body: ShiftCalendar) -> ShiftCalendar:
    """Set the plant's shift calendar (admin); the audit trail keeps the old and the new."""
    old = Q.shift_calendar(p.engine)
    Q.set_shift_calendar(p.engine, body, principal.user.username)
    p.audit.add(
        principal.user.username,
        "shift-calendar-set",
        "plant",
        before=old.model_dump(mode="json"),
        after=body.model_dump(mode="json"),
    )
    return body
