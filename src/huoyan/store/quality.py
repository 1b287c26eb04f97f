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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import Engine, Float, Integer, and_, case, func, literal, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from huoyan.core.plant import BUCKET_S, ShiftCalendar
from huoyan.core.recipe import Spec
from huoyan.core.text import Message
from huoyan.quality.charts import ATTRIBUTE_CHARTS, Limits, Subgroups
from huoyan.quality.drift import BASELINE, Reference
from huoyan.quality.report import Report, report
from huoyan.quality.series import Options, Series
from huoyan.store.records import as_utc
from huoyan.store.schema import (
    ControlLimitsRow,
    InspectionRow,
    MeasurementRow,
    ModelRow,
    RecipeRow,
    RegionRow,
    ReviewRow,
    RollupRow,
)
from huoyan.store.settings import read_setting, update_setting

By = Literal["hour", "shift", "day", "lot"]
GROUPINGS: tuple[str, ...] = ("part", "hour", "shift", "day", "lot")

#: Metrics of measured values: OK parts' scores, defect regions' areas, sensor features.
VALUE_METRICS = ("score", "normalised-score", "region-area", "region-area-mm2")
FEATURE_PREFIX = "feature:"
#: Metrics of counts: NG parts among judged parts; defect regions per judged part; and
#: ``defect:<type>``, the parts of one defect type among judged parts (``typed_defects``).
COUNT_METRICS = ("ng-rate", "defects")
DEFECT_PREFIX = "defect:"


def is_counted(metric: str) -> bool:
    return metric in COUNT_METRICS or metric.startswith(DEFECT_PREFIX)


def typed_defects(stmt: Any) -> tuple[Any, Any]:
    """``stmt`` (a select over inspections) joined to what says a part's defect type, the
    type's column, and the condition that the part is a defect at all. A part is a defect
    if it was judged NG and its latest review does not call it a false alarm, or a reviewer
    flagged it a missed defect; its type is that review's label, else its first named
    region's, else 'defect'. The shift report and the ``defect:<type>`` charts both count so."""
    latest = (
        select(ReviewRow.inspection_id, func.max(ReviewRow.id).label("rid"))
        .group_by(ReviewRow.inspection_id)
        .subquery()
    )
    review = aliased(ReviewRow)
    named = (
        select(RegionRow.inspection_id, func.min(RegionRow.label).label("label"))
        .where(RegionRow.label.is_not(None))
        .group_by(RegionRow.inspection_id)
        .subquery()
    )
    joined = (
        stmt.outerjoin(latest, latest.c.inspection_id == InspectionRow.id)
        .outerjoin(review, review.id == latest.c.rid)
        .outerjoin(named, named.c.inspection_id == InspectionRow.id)
    )
    kind = func.coalesce(review.label, named.c.label, literal("defect"))
    is_defect = or_(
        and_(InspectionRow.verdict == "NG", or_(review.outcome.is_(None), review.outcome != "false_alarm")),
        review.outcome == "missed_defect",
    )
    return joined, (kind, is_defect)


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
    """A station's parts that arrived from ``since`` (included) to ``until`` (excluded)."""

    station: str
    since: datetime
    until: datetime

    def where(self) -> Any:
        return and_(
            InspectionRow.station_id == self.station,
            InspectionRow.arrived_at >= self.since,
            InspectionRow.arrived_at < self.until,
        )


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
        Message(
            "unknown metric '{metric}': counts are {counts}; values are {values} or {prefix}<name> "
            "(a sensor feature, e.g. feature:rms)",
            metric=metric,
            counts=", ".join(COUNT_METRICS),
            values=", ".join(VALUE_METRICS),
            prefix=FEATURE_PREFIX,
        )
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
    if not is_counted(metric):
        raise QualityQueryError(
            Message(
                "'{metric}' is not counted; count metrics are {counts} and {prefix}<type>",
                metric=metric,
                counts=", ".join(COUNT_METRICS),
                prefix=DEFECT_PREFIX,
            )
        )
    with Session(engine) as s:
        if metric == "ng-rate":
            rows = _from_rollup(s, window, by, _rollup_counts, _raw_counts)
        elif metric.startswith(DEFECT_PREFIX):
            # judged parts from the rollup; the parts of the type counted among them (in ``ng``)
            rows = _from_rollup(s, window, by, _rollup_counts, _raw_counts)
            key = _key(by).label("k")
            stmt, (kind, is_defect) = typed_defects(select(key, func.count()).select_from(InspectionRow))
            stmt = stmt.where(window.where(), is_defect, kind == metric[len(DEFECT_PREFIX) :]).group_by("k")
            found = {str(k): int(n) for k, n in s.execute(stmt)}
            for row in rows:
                row.ng = found.get(row.label, 0)
        else:
            rows = _raw_counts(s, window, by)
            regions = (
                select(_key(by).label("k"), func.count(RegionRow.id))
                .join(RegionRow, RegionRow.inspection_id == InspectionRow.id)
                .where(window.where(), InspectionRow.verdict.in_(("OK", "NG")))
                .group_by("k")
            )
            found = {str(k): int(n) for k, n in s.execute(regions)}
            for row in rows:
                row.count = found.get(row.label, 0)
    return rollup(rows, by, calendar)


def value_aggregates(engine: Engine, window: Window, metric: str, by: By, calendar: ShiftCalendar) -> list[Aggregate]:
    """Per period or lot: how many values, their sum, sum of squares, least and greatest."""
    with Session(engine) as s:
        if metric in ROLLED_UP:
            prefix = ROLLED_UP[metric]
            rows = _from_rollup(
                s,
                window,
                by,
                lambda s, w, b: _rollup_values(s, w, b, prefix),
                lambda s, w, b: _raw_values(s, w, b, metric),
            )
        else:
            rows = _raw_values(s, window, by, metric)
    return rollup(rows, by, calendar)


#: Value metrics the rollup table sums (column prefix there).
ROLLED_UP = {"score": "score", "normalised-score": "norm"}

Query = Callable[[Session, Any, By], list[Aggregate]]


def _from_rollup(s: Session, window: Window, by: By, rolled: Query, raw: Query) -> list[Aggregate]:
    """The rollup's whole buckets inside the window, and the parts themselves in the
    partial buckets at its two ends, merged: exact for any window, reading few rows."""
    first = -(-int(window.since.timestamp()) // BUCKET_S)  # ceil: the first whole bucket
    end = int(window.until.timestamp()) // BUCKET_S  # floor: past the last whole bucket
    if first >= end:
        return raw(s, window, by)
    pieces = rolled(s, _Buckets(window.station, first, end), by)
    pieces += raw(s, Window(window.station, window.since, bucket_start(first)), by)
    pieces += raw(s, Window(window.station, bucket_start(end), window.until), by)
    merged: dict[str, Aggregate] = {}
    for row in pieces:
        if row.label in merged:
            start = min(merged[row.label].start, row.start)
            merged[row.label].merge(row)
            merged[row.label].start = start
        else:
            merged[row.label] = row
    return list(merged.values())


@dataclass(frozen=True)
class _Buckets:
    station: str
    first: int
    end: int


def _rollup_key(by: By) -> Any:
    return RollupRow.lot if by == "lot" else RollupRow.bucket


def _rollup_where(b: _Buckets, by: By) -> list[Any]:
    where = [RollupRow.station_id == b.station, RollupRow.bucket >= b.first, RollupRow.bucket < b.end]
    if by == "lot":
        where.append(RollupRow.lot != "")
    return where


def _rollup_counts(s: Session, b: Any, by: By) -> list[Aggregate]:
    key = _rollup_key(by).label("k")
    stmt = (
        select(
            key,
            func.min(RollupRow.bucket),
            func.sum(RollupRow.judged),
            func.sum(RollupRow.ng),
            func.sum(RollupRow.errors),
        )
        .where(*_rollup_where(b, by))
        .group_by("k")
    )
    return [
        Aggregate(str(k), bucket_start(int(first)), int(j), int(n), int(e)) for k, first, j, n, e in s.execute(stmt)
    ]


def _rollup_values(s: Session, b: Any, by: By, prefix: str) -> list[Aggregate]:
    col = {name: getattr(RollupRow, f"{prefix}_{name}") for name in ("n", "sum", "squares", "min", "max")}
    key = _rollup_key(by).label("k")
    stmt = (
        select(
            key,
            func.min(RollupRow.bucket),
            func.sum(col["n"]),
            func.sum(col["sum"]),
            func.sum(col["squares"]),
            func.min(col["min"]),
            func.max(col["max"]),
        )
        .where(*_rollup_where(b, by), col["n"] > 0)
        .group_by("k")
    )
    return [
        _value_row(k, bucket_start(int(first)), n, total, sq, low, high)
        for k, first, n, total, sq, low, high in s.execute(stmt)
    ]


def _raw_counts(s: Session, window: Window, by: By) -> list[Aggregate]:
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
        .group_by("k")
    )
    if by == "lot":
        stmt = stmt.where(InspectionRow.lot.is_not(None))
    return [
        Aggregate(str(k), as_utc(first), int(judged or 0), int(ng or 0), int(errors or 0))
        for k, first, judged, ng, errors in s.execute(stmt)
    ]


def _raw_values(s: Session, window: Window, by: By, metric: str) -> list[Aggregate]:
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
    stmt = _joined(stmt, table).where(window.where(), *conditions).group_by("k")
    if by == "lot":
        stmt = stmt.where(InspectionRow.lot.is_not(None))
    return [
        _value_row(k, as_utc(first), n, total, squares, low, high)
        for k, first, n, total, squares, low, high in s.execute(stmt)
        if n
    ]


def _value_row(key: Any, start: datetime, n: Any, total: Any, squares: Any, low: Any, high: Any) -> Aggregate:
    return Aggregate(
        str(key),
        start,
        count=int(n),
        total=float(total or 0.0),
        squares=float(squares or 0.0),
        low=float(low) if low is not None else float("inf"),
        high=float(high) if high is not None else float("-inf"),
    )


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


def series_of(
    engine: Engine,
    window: Window,
    metric: str,
    chart: str,
    by: str,
    calendar: ShiftCalendar,
    limit: int = 10_000,
) -> Series:
    """The points of a chart of ``metric`` from the records: counts per period or lot for an
    attributes chart, each part's value (``by`` part, the newest ``limit``) or the sums of
    a period's or lot's values for a variables chart. Periods without parts are no points."""
    counted = is_counted(metric)
    if counted != (chart in ATTRIBUTE_CHARTS):
        need = Message("an attributes chart (p, np, c, u, laney-p)") if counted else Message("a variables chart")
        raise QualityQueryError(
            Message("{metric} is charted on {need}, not on a {chart} chart", metric=metric, need=need, chart=chart)
        )
    if by not in GROUPINGS:
        raise QualityQueryError(
            Message("unknown grouping '{by}'; group by {groupings}", by=by, groupings=", ".join(GROUPINGS))
        )
    if counted:
        if by == "part":
            raise QualityQueryError(
                Message("counts are charted per period or lot; one point per part charts measured values")
            )
        rows = [r for r in count_aggregates(engine, window, metric, by, calendar) if r.judged > 0]  # type: ignore[arg-type]
        counts = [float(r.count if metric == "defects" else r.ng) for r in rows]
        return Series([r.label for r in rows], counts=counts, sizes=[float(r.judged) for r in rows])
    if by == "part":
        found = values(engine, window, metric, limit)
        labels = [at.astimezone(calendar.zone).strftime("%Y-%m-%d %H:%M:%S") for at, _ in found]
        return Series(labels, groups=[[v] for _, v in found])
    rows = [r for r in value_aggregates(engine, window, metric, by, calendar) if r.count >= 2]  # type: ignore[arg-type]
    if not rows:
        return Series([], groups=[])
    sums = Subgroups.of_sums(
        [r.count for r in rows],
        [r.total for r in rows],
        [r.squares for r in rows],
        [r.low for r in rows],
        [r.high for r in rows],
    )
    return Series([r.label for r in rows], subgroups=sums)


def recipe_spec(engine: Engine, window: Window, metric: str) -> Spec | None:
    """The specification of ``metric`` in the recipe the window's newest part was inspected
    under (``quality.specs`` of the recipe stored with the records), or None. Read from
    the records, so it holds for every station writing to this database, wherever it runs,
    and follows a recipe switch."""
    with Session(engine) as s:
        body = s.scalar(
            select(RecipeRow.body)
            .join(InspectionRow, InspectionRow.recipe_pk == RecipeRow.id)
            .where(window.where())
            .order_by(InspectionRow.arrived_at.desc(), InspectionRow.id.desc())
            .limit(1)
        )
    quality = body.get("quality") if isinstance(body, dict) else None
    raw = quality.get("specs", {}).get(metric) if isinstance(quality, dict) else None
    try:
        return None if raw is None else Spec.model_validate(raw)
    except ValidationError:  # a recipe stored by a release whose specs had another shape
        return None


def records_report(
    engine: Engine,
    window: Window,
    metric: str,
    kind: str,
    by: str,
    calendar: ShiftCalendar,
    *,
    title: str,
    options: Options | None = None,
    rules: str | Sequence[str] = "western-electric",
    estimate: bool = False,
) -> Report | None:
    """A chart of the station's records with its violations, and the capability against
    the recipe's specification for the metric (``recipe_spec``) where it has one; on the
    newest limits frozen for the station, metric and chart unless ``estimate`` (Phase I).
    None when the window holds no point. What the API, the shift report and the hourly
    rule alarm chart."""
    series = series_of(engine, window, metric, kind, by, calendar)
    if not series.labels:
        return None
    frozen = None if estimate else frozen_limits(engine, window.station, metric, kind)
    spec = recipe_spec(engine, window, metric)
    lsl, usl = (spec.lsl, spec.usl) if spec is not None else (None, None)
    return report(kind, series, title, replace(options or Options(), frozen=frozen), rules, lsl, usl)


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


# -- plant settings ------------------------------------------------------------------------

SHIFTS_KEY = "shifts"


def shift_calendar(engine: Engine) -> ShiftCalendar:
    """The plant's shift calendar, or the default one if none was set."""
    value = read_setting(engine, SHIFTS_KEY)
    return ShiftCalendar.model_validate(value) if value is not None else ShiftCalendar()


def set_shift_calendar(engine: Engine, calendar: ShiftCalendar, by: str) -> None:
    update_setting(engine, SHIFTS_KEY, lambda _: calendar.model_dump(mode="json"), by)


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


def limits_history(engine: Engine, station: str, metric: str, chart: str) -> list[Limits]:
    """Every frozen version, newest first."""
    stmt = (
        select(ControlLimitsRow)
        .where(
            ControlLimitsRow.station_id == station, ControlLimitsRow.metric == metric, ControlLimitsRow.chart == chart
        )
        .order_by(ControlLimitsRow.version.desc())
    )
    with Session(engine) as s:
        return [_limits(row) for row in s.scalars(stmt)]


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


def newest_frozen(engine: Engine, station: str) -> list[tuple[str, Limits, str | None]]:
    """The newest frozen limits of each of a station's metrics and charts: (metric, limits,
    note), what a package carries to another plant."""
    newest = (
        select(ControlLimitsRow.metric, ControlLimitsRow.chart, func.max(ControlLimitsRow.version).label("version"))
        .where(ControlLimitsRow.station_id == station)
        .group_by(ControlLimitsRow.metric, ControlLimitsRow.chart)
        .subquery()
    )
    stmt = (
        select(ControlLimitsRow)
        .join(
            newest,
            and_(
                ControlLimitsRow.metric == newest.c.metric,
                ControlLimitsRow.chart == newest.c.chart,
                ControlLimitsRow.version == newest.c.version,
            ),
        )
        .where(ControlLimitsRow.station_id == station)
        .order_by(ControlLimitsRow.metric, ControlLimitsRow.chart)
    )
    with Session(engine) as s:
        return [(row.metric, _limits(row), row.note) for row in s.scalars(stmt)]


# -- drift of the model's view -------------------------------------------------------------


@dataclass(frozen=True)
class DriftInputs:
    model_sha256: str
    reference: Reference
    reference_source: str  # 'calibration' (the model card's) or 'baseline' (its first OK scores here)
    recent: list[float]


def drift_inputs(engine: Engine, station: str, recent: int = 2000, baseline: int = BASELINE) -> DriftInputs | None:
    """What the drift view compares: the newest OK scores of the station's current model
    (the model of its newest judged part) against that model's calibration scores, or
    against the first ``baseline`` OK scores it gave at this station; None if there is
    nothing to compare yet."""
    with Session(engine) as s:
        newest = s.execute(
            select(InspectionRow.model_pk, InspectionRow.threshold)
            .where(
                InspectionRow.station_id == station,
                InspectionRow.model_pk.is_not(None),
                InspectionRow.verdict != "ERROR",
            )
            .order_by(InspectionRow.arrived_at.desc(), InspectionRow.id.desc())
            .limit(1)
        ).first()
        if newest is None:
            return None
        model_pk, threshold = newest
        model = s.get(ModelRow, model_pk)
        if model is None:
            return None
        ok = [
            InspectionRow.station_id == station,
            InspectionRow.model_pk == model_pk,
            InspectionRow.verdict == "OK",
            InspectionRow.score.is_not(None),
        ]
        latest = s.scalars(
            select(InspectionRow.score)
            .where(*ok)
            .order_by(InspectionRow.arrived_at.desc(), InspectionRow.id.desc())
            .limit(recent)
        ).all()[::-1]
        card: dict[str, Any] = dict(model.card or {})
        calibration = card.get("calibration") or {}
        quantiles = calibration.get("score_quantiles")
        if quantiles:
            size = int(calibration.get("n_calibration") or 0)
            reference = Reference.of_quantiles(quantiles, size, threshold)
            return DriftInputs(model.sha256, reference, "calibration", [float(v) for v in latest if v is not None])
        first = s.scalars(
            select(InspectionRow.score).where(*ok).order_by(InspectionRow.arrived_at, InspectionRow.id).limit(baseline)
        ).all()
    if len(first) < baseline:
        return None
    reference = Reference.of_scores([float(v) for v in first if v is not None], threshold=threshold)
    return DriftInputs(model.sha256, reference, "baseline", [float(v) for v in latest if v is not None])
