"""What the control charts read from the records, aggregated in the database.

Nothing here loads every inspection: SQL counts verdicts and sums values per 15-minute
bucket of arrival time (``BUCKET_S``; a shift starts on a quarter hour), or per lot, and
``rollup`` merges the buckets into hours, days or shifts of the plant's calendar in its
own time zone (daylight saving included, since each bucket is converted on its own).
Counts, sums and sums of squares merge exactly, so a chart by shift is the chart of the
parts themselves. The same queries run on SQLite and PostgreSQL (a test holds them equal).

Also kept here: the plant's settings (its shift calendar) and control limits frozen for
Phase II, each version with who froze it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Engine, Float, Integer, and_, case, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from huoyan.core.plant import BUCKET_S, ShiftCalendar
from huoyan.quality.charts import Limits
from huoyan.store.records import as_utc
from huoyan.store.schema import (
    ControlLimitsRow,
    InspectionRow,
    MeasurementRow,
    PlantSettingRow,
    RegionRow,
)

By = Literal["hour", "shift", "day", "lot"]
GROUPINGS: tuple[str, ...] = ("part", "hour", "shift", "day", "lot")

#: Metrics of measured values: OK parts' scores, defect regions' areas, sensor features.
VALUE_METRICS = ("score", "normalised-score", "region-area", "region-area-mm2")
FEATURE_PREFIX = "feature:"
#: Metrics of counts: NG parts among judged parts; defect regions per judged part.
COUNT_METRICS = ("ng-rate", "defects")


class QualityQueryError(ValueError):
    """A metric, grouping or setting the records cannot answer (the message says why)."""


# -- time buckets in SQL -------------------------------------------------------------------


class EpochBucket(FunctionElement[int]):
    """floor(seconds since 1970 / BUCKET_S) of a UTC timestamp column, in either dialect."""

    type = Integer()
    inherit_cache = True
    name = "epoch_bucket"


@compiles(EpochBucket, "sqlite")
def _bucket_sqlite(element: EpochBucket, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    # SQLite keeps a DateTime as UTC text; strftime('%s') reads it as UTC seconds.
    return f"(CAST(strftime('%s', {compiler.process(column, **kw)}) AS INTEGER) / {BUCKET_S})"


@compiles(EpochBucket, "postgresql")
def _bucket_postgresql(element: EpochBucket, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return f"CAST(floor(extract(epoch from {compiler.process(column, **kw)}) / {BUCKET_S}) AS BIGINT)"


def bucket_start(bucket: int) -> datetime:
    return datetime.fromtimestamp(bucket * BUCKET_S, UTC)


# -- aggregates ----------------------------------------------------------------------------


@dataclass
class Aggregate:
    """One point of a chart: the parts of a period or lot, counted and summed."""

    label: str
    start: datetime
    judged: int = 0  # OK + NG (an ERROR part was not judged, so it is no sample of the NG rate)
    ng: int = 0
    errors: int = 0
    count: int = 0  # measured values (scores, areas, features)
    total: float = 0.0
    squares: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")

    def merge(self, other: Aggregate) -> None:
        self.judged += other.judged
        self.ng += other.ng
        self.errors += other.errors
        self.count += other.count
        self.total += other.total
        self.squares += other.squares
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)


@dataclass(frozen=True)
class Window:
    station: str
    since: datetime
    until: datetime
    recipe: str | None = None
    extra: list[Any] = field(default_factory=list)

    def where(self) -> Any:
        conditions = [
            InspectionRow.station_id == self.station,
            InspectionRow.arrived_at >= self.since,
            InspectionRow.arrived_at < self.until,
            *self.extra,
        ]
        return and_(*conditions)


def _value_column(metric: str) -> tuple[Any, Any, list[Any]]:
    """The SQL expression of a value metric, the table to join, and extra conditions."""
    if metric == "score":
        return InspectionRow.score, None, [InspectionRow.verdict == "OK", InspectionRow.score.is_not(None)]
    if metric == "normalised-score":
        col = InspectionRow.normalised_score
        return col, None, [InspectionRow.verdict == "OK", col.is_not(None)]
    if metric == "region-area":
        return func.cast(RegionRow.area_px, Float), RegionRow, []
    if metric == "region-area-mm2":
        return RegionRow.area_mm2, RegionRow, [RegionRow.area_mm2.is_not(None)]
    if metric.startswith(FEATURE_PREFIX):
        name = metric[len(FEATURE_PREFIX) :]
        channel, _, feature = name.rpartition("/")
        conditions = [MeasurementRow.name == feature]
        if channel:
            conditions.append(MeasurementRow.channel == channel)
        return MeasurementRow.value, MeasurementRow, conditions
    raise QualityQueryError(
        f"unknown metric {metric!r}: counts are {', '.join(COUNT_METRICS)}; values are "
        f"{', '.join(VALUE_METRICS)} or {FEATURE_PREFIX}<name> (a sensor feature, e.g. feature:rms)"
    )


def _joined(stmt: Any, table: Any) -> Any:
    if table is RegionRow:
        return stmt.join(RegionRow, RegionRow.inspection_id == InspectionRow.id)
    if table is MeasurementRow:
        return stmt.join(MeasurementRow, MeasurementRow.inspection_id == InspectionRow.id)
    return stmt


def _key(by: By) -> Any:
    return InspectionRow.lot if by == "lot" else EpochBucket(InspectionRow.arrived_at)


def count_aggregates(engine: Engine, window: Window, metric: str, by: By, calendar: ShiftCalendar) -> list[Aggregate]:
    """Per period or lot: judged parts, NG parts, ERROR parts; for ``defects``, the number
    of defect regions found in the judged parts (in ``count``)."""
    if metric not in COUNT_METRICS:
        raise QualityQueryError(f"{metric!r} is not counted; count metrics are {', '.join(COUNT_METRICS)}")
    key = _key(by).label("k")
    verdict = InspectionRow.verdict
    stmt = (
        select(
            key,
            func.min(InspectionRow.arrived_at),
            func.sum(case((verdict.in_(("OK", "NG")), 1), else_=0)),
            func.sum(case((verdict == "NG", 1), else_=0)),
            func.sum(case((verdict == "ERROR", 1), else_=0)),
        )
        .where(window.where())
        .group_by(key)
    )
    if by == "lot":
        stmt = stmt.where(InspectionRow.lot.is_not(None))
    rows = []
    with Session(engine) as s:
        for k, first, judged, ng, errors in s.execute(stmt):
            rows.append(Aggregate(str(k), as_utc(first), int(judged or 0), int(ng or 0), int(errors or 0)))
        if metric == "defects":
            regions = (
                select(key, func.count(RegionRow.id))
                .join(RegionRow, RegionRow.inspection_id == InspectionRow.id)
                .where(window.where(), InspectionRow.verdict.in_(("OK", "NG")))
                .group_by(key)
            )
            found = {str(k): int(n) for k, n in s.execute(regions)}
            for row in rows:
                row.count = found.get(row.label, 0)
    return rollup(rows, by, calendar)


def value_aggregates(engine: Engine, window: Window, metric: str, by: By, calendar: ShiftCalendar) -> list[Aggregate]:
    """Per period or lot: how many values, their sum, sum of squares, least and greatest."""
    column, table, conditions = _value_column(metric)
    key = _key(by).label("k")
    stmt = select(
        key,
        func.min(InspectionRow.arrived_at),
        func.count(column),
        func.sum(column),
        func.sum(column * column),
        func.min(column),
        func.max(column),
    )
    stmt = _joined(stmt, table).where(window.where(), *conditions).group_by(key)
    if by == "lot":
        stmt = stmt.where(InspectionRow.lot.is_not(None))
    rows = []
    with Session(engine) as s:
        for k, first, n, total, squares, low, high in s.execute(stmt):
            rows.append(
                Aggregate(
                    str(k),
                    as_utc(first),
                    count=int(n),
                    total=float(total or 0.0),
                    squares=float(squares or 0.0),
                    low=float(low) if low is not None else float("inf"),
                    high=float(high) if high is not None else float("-inf"),
                )
            )
    return rollup(rows, by, calendar)


def values(engine: Engine, window: Window, metric: str, limit: int = 10_000) -> list[tuple[datetime, float]]:
    """The newest ``limit`` values of a metric, oldest first (for individuals charts and drift)."""
    column, table, conditions = _value_column(metric)
    stmt = select(InspectionRow.arrived_at, column)
    stmt = (
        _joined(stmt, table)
        .where(window.where(), *conditions)
        .order_by(InspectionRow.arrived_at.desc(), InspectionRow.id.desc())
        .limit(limit)
    )
    with Session(engine) as s:
        rows = [(as_utc(at), float(v)) for at, v in s.execute(stmt) if v is not None]
    return rows[::-1]


def rollup(rows: Iterable[Aggregate], by: By, calendar: ShiftCalendar) -> list[Aggregate]:
    """Merge 15-minute buckets into the periods asked for (lots stay as they are), in time order."""
    ordered = sorted(rows, key=lambda r: r.start)
    if by == "lot":
        return ordered
    zone = calendar.zone
    labels: dict[str, Callable[[datetime], tuple[str, datetime]]] = {
        "hour": lambda t: _local_floor(t.astimezone(zone), "%Y-%m-%d %H:00"),
        "day": lambda t: _local_floor(t.astimezone(zone), "%Y-%m-%d"),
        "shift": lambda t: (calendar.label(t), calendar.shift_of(t)[2]),
    }
    label_of = labels[by]
    merged: dict[str, Aggregate] = {}
    for row in ordered:
        label, start = label_of(bucket_start(int(row.label)))
        if label not in merged:
            merged[label] = Aggregate(label, start.astimezone(UTC))
        merged[label].merge(row)
    return list(merged.values())


def _local_floor(local: datetime, fmt: str) -> tuple[str, datetime]:
    if fmt.endswith("%H:00"):
        start = local.replace(minute=0, second=0, microsecond=0)
    else:
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return local.strftime(fmt), start


def window_of(station: str, since: datetime | None, until: datetime | None, hours: float = 8.0) -> Window:
    end = until or datetime.now(UTC)
    return Window(station, since or end - timedelta(hours=hours), end)


# -- plant settings ------------------------------------------------------------------------

SHIFTS_KEY = "shifts"


def shift_calendar(engine: Engine) -> ShiftCalendar:
    """The plant's shift calendar, or the default one if none was set."""
    with Session(engine) as s:
        row = s.get(PlantSettingRow, SHIFTS_KEY)
        return ShiftCalendar.model_validate(row.value) if row is not None else ShiftCalendar()


def set_shift_calendar(engine: Engine, calendar: ShiftCalendar, by: str) -> None:
    with Session(engine) as s, s.begin():
        row = s.get(PlantSettingRow, SHIFTS_KEY)
        value = calendar.model_dump(mode="json")
        now = datetime.now(UTC)
        if row is None:
            s.add(PlantSettingRow(key=SHIFTS_KEY, value=value, updated_by=by, updated_at=now))
        else:
            row.value, row.updated_by, row.updated_at = value, by, now


# -- frozen control limits -----------------------------------------------------------------


def _limits(row: ControlLimitsRow) -> Limits:
    return Limits(
        chart=row.chart,
        params={k: float(v) for k, v in row.params.items()},
        points=row.points,
        version=row.version,
        frozen_by=row.frozen_by,
        frozen_at=as_utc(row.frozen_at),
    )


def freeze_limits(
    engine: Engine, station: str, metric: str, limits: Limits, by: str, note: str | None = None
) -> Limits:
    """Keep ``limits`` as the next version for this station, metric and chart."""
    with Session(engine) as s, s.begin():
        latest = s.scalar(
            select(func.max(ControlLimitsRow.version)).where(
                ControlLimitsRow.station_id == station,
                ControlLimitsRow.metric == metric,
                ControlLimitsRow.chart == limits.chart,
            )
        )
        frozen = limits.freeze(int(latest or 0) + 1, by, datetime.now(UTC))
        s.add(
            ControlLimitsRow(
                station_id=station,
                metric=metric,
                chart=frozen.chart,
                params=dict(frozen.params),
                points=frozen.points,
                version=frozen.version,
                frozen_by=by,
                frozen_at=frozen.frozen_at,
                note=note,
            )
        )
    return frozen


def frozen_limits(engine: Engine, station: str, metric: str, chart: str, version: int | None = None) -> Limits | None:
    """The newest frozen limits (or the version asked for), or None if none were frozen."""
    stmt = select(ControlLimitsRow).where(
        ControlLimitsRow.station_id == station, ControlLimitsRow.metric == metric, ControlLimitsRow.chart == chart
    )
    stmt = (
        stmt.where(ControlLimitsRow.version == version) if version else stmt.order_by(ControlLimitsRow.version.desc())
    )
    with Session(engine) as s:
        row = s.scalars(stmt.limit(1)).first()
        return None if row is None else _limits(row)
