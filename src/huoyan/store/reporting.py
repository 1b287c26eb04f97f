"""What a shift or lot report says, gathered from the records.

A report covers one station over one period: a shift of the plant's calendar, a lot, or
any time window. It holds the yield and verdict counts, NG parts by defect type (the
label a reviewer confirmed, else the detector's region label, else 'defect') with example
pictures, the hourly p chart and the OK parts' score chart with their rule violations,
the alarms raised, the recipe and model versions that judged the parts, and how often
reviewers agreed with the verdicts. ``huoyan.quality.pdf`` and ``huoyan.quality.html``
render it; the CLI (``huoyan report``) and the API serve it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from huoyan.core.plant import ShiftCalendar
from huoyan.core.records import StoredInspection
from huoyan.core.text import Message
from huoyan.quality.charts import ChartError
from huoyan.quality.report import Report
from huoyan.store import quality as Q
from huoyan.store.records import RecordFilter, as_utc, get_inspection, query_events
from huoyan.store.schema import InspectionRow, ModelRow, RecipeRow, ReviewRow

log = logging.getLogger(__name__)

EXAMPLE_TYPES = 4  # the most frequent defect types shown with pictures
EXAMPLES_PER_TYPE = 2


@dataclass(frozen=True)
class Example:
    inspection_id: int
    defect: str
    source_name: str
    arrived_at: datetime
    jpeg: bytes


@dataclass(frozen=True)
class VersionUse:
    recipe_id: str
    recipe_version: str
    model_name: str | None
    model_sha256: str | None
    parts: int


@dataclass
class ShiftReport:
    station: str
    title: str
    start: datetime
    end: datetime
    timezone: str
    generated_at: datetime
    generated_by: str
    counts: dict[str, int]
    defect_types: list[tuple[str, int]]
    examples: list[Example]
    ng_chart: Report | None
    score_chart: Report | None
    alarms: list[dict[str, Any]]
    versions: list[VersionUse]
    reviews: dict[str, int]
    notes: list[str] = field(default_factory=list)

    @property
    def judged(self) -> int:
        return self.counts.get("OK", 0) + self.counts.get("NG", 0)

    @property
    def yield_rate(self) -> float | None:
        """First-pass yield: OK among judged parts (an ERROR part was not judged)."""
        return self.counts.get("OK", 0) / self.judged if self.judged else None

    @property
    def reviewed(self) -> int:
        return sum(self.reviews.values())

    @property
    def agreement(self) -> float | None:
        """Share of reviewed parts where the reviewer upheld the verdict (defect, good)."""
        agreed = self.reviews.get("defect", 0) + self.reviews.get("good", 0)
        return agreed / self.reviewed if self.reviewed else None


#: Draws a record's picture (its image, heat map and regions) as JPEG; LookupError where
#: none was kept, OSError or ValueError where it cannot be read.
Picture = Callable[[StoredInspection], bytes]


def shift_report(
    engine: Engine,
    picture: Picture,
    station: str,
    *,
    shift: str | None = None,
    lot: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    by: str = "",
) -> ShiftReport:
    """The report of ``station`` over a shift ('2026-11-30 A'), a lot, or a time window;
    ``picture`` draws the examples."""
    calendar = Q.shift_calendar(engine)
    if shift:
        start, end = calendar.period(shift)
        title = f"Shift {shift}"
    elif lot:
        start, end = _lot_span(engine, station, lot)
        title = f"Lot {lot}"
    elif since:
        start, end = since, until or datetime.now(UTC)
        title = "Period"
    else:
        raise ValueError(Message("a report covers a shift, a lot or a time window: give one"))
    where = RecordFilter(station=station, since=start, until=end, lot=lot)
    with Session(engine) as s:
        counts = {
            v: int(n)
            for v, n in s.execute(
                where.apply(select(InspectionRow.verdict, func.count()).group_by(InspectionRow.verdict))
            )
        }
        types, examples_of = _defect_types(s, where)
        versions = _versions(s, where)
        reviews = {
            str(o): int(n)
            for o, n in s.execute(
                where.apply(
                    select(ReviewRow.outcome, func.count())
                    .join(InspectionRow, InspectionRow.id == ReviewRow.inspection_id)
                    .group_by(ReviewRow.outcome)
                )
            )
        }
    notes: list[str] = []
    examples = _examples(engine, picture, types, examples_of, notes)
    window = Q.Window(station, start, end)
    ng_chart = _chart(engine, window, calendar, "ng-rate", "p", notes)
    score_chart = _chart(engine, window, calendar, "normalised-score", "xbar-s", notes)
    alarms = [e for e in query_events(engine, station, "alarm", since=start, until=end) if e["active"]]
    return ShiftReport(
        station=station,
        title=title,
        start=start,
        end=end,
        timezone=calendar.timezone,
        generated_at=datetime.now(UTC),
        generated_by=by,
        counts=counts,
        defect_types=types,
        examples=examples,
        ng_chart=ng_chart,
        score_chart=score_chart,
        alarms=alarms,
        versions=versions,
        reviews=reviews,
        notes=notes,
    )


def _lot_span(engine: Engine, station: str, lot: str) -> tuple[datetime, datetime]:
    with Session(engine) as s:
        first, last = s.execute(
            select(func.min(InspectionRow.arrived_at), func.max(InspectionRow.arrived_at)).where(
                InspectionRow.station_id == station, InspectionRow.lot == lot
            )
        ).one()
    if first is None:
        raise LookupError(Message("station '{station}' has no records of lot '{lot}'", station=station, lot=lot))
    # the window's end is exclusive: a microsecond after the lot's last part keeps it in
    return as_utc(first), as_utc(last) + timedelta(microseconds=1)


def _defect_types(s: Session, where: RecordFilter) -> tuple[list[tuple[str, int]], dict[str, list[int]]]:
    """Defective parts by type (``huoyan.store.quality.typed_defects``), most frequent
    first, and each type's part ids, newest first."""
    stmt, (kind, is_defect) = Q.typed_defects(select(InspectionRow.id).add_columns())
    rows = s.execute(
        where.apply(stmt.add_columns(kind).where(is_defect).order_by(InspectionRow.arrived_at.desc()))
    ).all()
    counts: Counter[str] = Counter()
    ids: dict[str, list[int]] = {}
    for inspection_id, label in rows:
        counts[label] += 1
        ids.setdefault(label, []).append(int(inspection_id))
    return counts.most_common(), ids


def _versions(s: Session, where: RecordFilter) -> list[VersionUse]:
    stmt = where.apply(
        select(RecipeRow.recipe_id, RecipeRow.version, ModelRow.name, ModelRow.sha256, func.count())
        .select_from(InspectionRow)
        .join(RecipeRow, RecipeRow.id == InspectionRow.recipe_pk)
        .outerjoin(ModelRow, ModelRow.id == InspectionRow.model_pk)
        .group_by(RecipeRow.recipe_id, RecipeRow.version, ModelRow.name, ModelRow.sha256)
        .order_by(func.count().desc())
    )
    return [VersionUse(r, v, n, sha, int(c)) for r, v, n, sha, c in s.execute(stmt)]


def _examples(
    engine: Engine,
    picture: Picture,
    types: list[tuple[str, int]],
    ids: dict[str, list[int]],
    notes: list[str],
) -> list[Example]:
    out = []
    for kind, _ in types[:EXAMPLE_TYPES]:
        shown = 0
        for inspection_id in ids[kind]:
            if shown == EXAMPLES_PER_TYPE:
                break
            record = get_inspection(engine, inspection_id)
            if record is None:
                continue
            try:
                jpeg = picture(record)
            except LookupError:
                continue  # no image kept (keep_ng off), or a sensor window
            except (OSError, ValueError) as exc:
                notes.append(f"the picture of inspection {inspection_id} cannot be read: {exc}")
                continue
            out.append(Example(inspection_id, kind, record.source_name, record.arrived_at, jpeg))
            shown += 1
    return out


def _chart(
    engine: Engine, window: Q.Window, calendar: ShiftCalendar, metric: str, kind: str, notes: list[str]
) -> Report | None:
    try:
        return Q.records_report(engine, window, metric, kind, "hour", calendar, title=f"{metric} by hour")
    except (ChartError, Q.QualityQueryError) as exc:
        notes.append(f"{metric} chart: {exc}")
        return None
