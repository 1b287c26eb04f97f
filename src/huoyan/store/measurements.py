"""Measurements read back for trends: one named quantity of a station's records over
time, selected and ordered in SQL (the newest ``limit`` points, oldest first), and the
latest record that kept a given kind of evidence (a sensor window's analysis)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from huoyan.store.records import RecordFilter, as_utc
from huoyan.store.schema import EvidenceRow, InspectionRow, MeasurementRow


@dataclass(frozen=True, slots=True)
class Point:
    inspection_id: int
    at: datetime
    value: float
    verdict: str


def measurement_series(
    engine: Engine, where: RecordFilter, name: str, channel: str | None = None, limit: int = 500
) -> list[Point]:
    """The newest ``limit`` values of ``name`` among the records ``where`` selects, oldest first."""
    stmt = where.apply(
        select(InspectionRow.id, InspectionRow.arrived_at, MeasurementRow.value, InspectionRow.verdict)
        .join(MeasurementRow, MeasurementRow.inspection_id == InspectionRow.id)
        .where(MeasurementRow.name == name)
    )
    if channel is not None:
        stmt = stmt.where(MeasurementRow.channel == channel)
    stmt = stmt.order_by(InspectionRow.arrived_at.desc(), InspectionRow.id.desc()).limit(limit)
    with Session(engine) as s:
        rows = s.execute(stmt).all()
    return [Point(i, as_utc(at), float(v), verdict) for i, at, v, verdict in reversed(rows)]


def measurement_names(engine: Engine, station: str) -> list[tuple[str, str]]:
    """(channel, name) of what a station's records measure, from its newest record that has any."""
    with Session(engine) as s:
        newest = s.scalar(
            select(MeasurementRow.inspection_id)
            .join(InspectionRow, MeasurementRow.inspection_id == InspectionRow.id)
            .where(InspectionRow.station_id == station)
            .order_by(MeasurementRow.inspection_id.desc())
            .limit(1)
        )
        if newest is None:
            return []
        rows = s.execute(
            select(MeasurementRow.channel, MeasurementRow.name)
            .where(MeasurementRow.inspection_id == newest)
            .order_by(MeasurementRow.id)
        ).all()
    return [(c, n) for c, n in rows]


def latest_with_evidence(engine: Engine, station: str, kind: str, channel: str | None = None) -> int | None:
    """The id of the station's newest record that kept evidence of ``kind``."""
    stmt = (
        select(InspectionRow.id)
        .join(EvidenceRow, EvidenceRow.inspection_id == InspectionRow.id)
        .where(InspectionRow.station_id == station, EvidenceRow.kind == kind)
    )
    if channel is not None:
        stmt = stmt.where(EvidenceRow.channel == channel)
    with Session(engine) as s:
        return s.scalar(stmt.order_by(InspectionRow.id.desc()).limit(1))
