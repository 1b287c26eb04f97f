"""Measurements of records over time (a sensor's RMS, kurtosis, velocity ...) and the latest
analysis of a sensor window: what the sensor page draws."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from huoyan.core.records import EvidenceKind
from huoyan.core.text import Message
from huoyan.server.platform import Platform, platform
from huoyan.server.routes.common import errors, not_found
from huoyan.server.schemas import ConditionOut, Measured, MeasuredPoint, MeasurementSeries
from huoyan.server.security import Operator
from huoyan.store.measurements import latest_with_evidence, measurement_names, measurement_series
from huoyan.store.records import RecordFilter, get_inspection

router = APIRouter(prefix="/api", tags=["measurements"])
StationId = Annotated[str, Query(min_length=1, max_length=128)]
ChannelName = Annotated[str | None, Query(max_length=100)]


@router.get("/measurements", response_model=MeasurementSeries, responses=errors())
def series(
    p: Annotated[Platform, Depends(platform)],
    _: Operator,
    station: StationId,
    name: Annotated[str, Query(min_length=1, max_length=64, description="e.g. rms, kurtosis, velocity_rms_mm_s")],
    channel: ChannelName = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> MeasurementSeries:
    """The newest ``limit`` values of one measurement of a station's records, oldest first."""
    points = measurement_series(p.engine, RecordFilter(station=station, since=since, until=until), name, channel, limit)
    return MeasurementSeries(
        station=station,
        name=name,
        channel=channel,
        points=[
            MeasuredPoint(inspection_id=x.inspection_id, at=x.at, value=x.value, verdict=x.verdict) for x in points
        ],
    )


@router.get("/measurements/names", response_model=list[Measured], responses=errors())
def names(p: Annotated[Platform, Depends(platform)], _: Operator, station: StationId) -> list[Measured]:
    """What a station's records measure (from its newest measured record)."""
    return [Measured(channel=c, name=n) for c, n in measurement_names(p.engine, station)]


@router.get("/conditions/latest", response_model=ConditionOut, responses=errors(404))
def latest_condition(
    p: Annotated[Platform, Depends(platform)], _: Operator, station: StationId, channel: ChannelName = None
) -> ConditionOut:
    """The newest kept analysis of a sensor window of this station."""
    found = latest_with_evidence(p.engine, station, EvidenceKind.CONDITION.value, channel)
    record = None if found is None else get_inspection(p.engine, found)
    evidence = None if record is None else record.evidence_of(EvidenceKind.CONDITION, channel)
    if record is None or evidence is None or record.id is None:
        raise not_found(Message("analysis of a sensor window kept for station '{station}'", station=station))
    try:
        body = json.loads(p.blob(record.station_id, evidence.sha256))
    except FileNotFoundError as exc:
        raise not_found(Message("file of the analysis {sha256}", sha256=evidence.sha256)) from exc
    return ConditionOut(
        inspection_id=record.id,
        at=record.arrived_at,
        source_name=record.source_name,
        verdict=record.verdict.value,
        diagnosis=record.diagnosis,
        condition=body,
    )
