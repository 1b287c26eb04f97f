"""Control-chart aggregates from the records: SQL on SQLite and PostgreSQL gives the same
numbers as counting the parts one by one, by hour, shift (in the plant's time zone), lot."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from huoyan.core.models import Measurement, Region, Verdict
from huoyan.core.plant import Shift, ShiftCalendar
from huoyan.core.records import InspectionRecord, StoredRecord
from huoyan.quality.charts import p_chart
from huoyan.store import quality as Q
from test_store import make_store

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Two 12-hour shifts; the night shift crosses midnight and is dated by the day it began.
CALENDAR = ShiftCalendar(
    timezone="Asia/Shanghai", shifts=[Shift(name="Day", start="08:00"), Shift(name="Night", start="20:00")]
)
START = datetime(2026, 11, 30, 6, 0, tzinfo=SHANGHAI)  # 06:00 local: the end of the 29th's night shift


def parts(n: int = 400, seed: int = 0) -> list[InspectionRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        at = (START + timedelta(minutes=7 * i + rng.random())).astimezone(UTC)
        verdict = rng.choices([Verdict.OK, Verdict.NG, Verdict.ERROR], [0.85, 0.12, 0.03])[0]
        score = None if verdict == Verdict.ERROR else rng.gammavariate(2.0, 0.4) + (2.5 if verdict == Verdict.NG else 0)
        regions = [
            Region(x=0, y=0, width=4, height=4, area_px=rng.randint(5, 90), max_score=3.0, mean_score=2.0)
            for _ in range(rng.randint(1, 3) if verdict == Verdict.NG else 0)
        ]
        out.append(
            InspectionRecord(
                key=f"k{i}",
                seq=i,
                station_id="st-1",
                recipe_id="washer-top",
                recipe_version="1",
                model_sha256="b" * 64,
                threshold=2.0,
                part_id=f"P{i}",
                lot=f"L{i // 90:02d}",
                source_name=f"p{i}.png",
                verdict=verdict,
                score=score,
                normalised_score=None if score is None else score / 2.0,
                error="unreadable" if verdict == Verdict.ERROR else None,
                regions=regions,
                measurements=[Measurement(name="rms", value=rng.gauss(1.0, 0.1))],
                arrived_at=at,
                decided_at=at + timedelta(milliseconds=30),
                latency_ms=30.0,
            )
        )
    return out


@pytest.fixture()
def recorded(db_url: str, tmp_path: Path) -> tuple[object, list[InspectionRecord]]:
    store = make_store(db_url, tmp_path)
    records = parts()
    store.write([StoredRecord(r) for r in records])
    return store.engine, records


def window() -> Q.Window:
    return Q.Window("st-1", START.astimezone(UTC) - timedelta(hours=1), START.astimezone(UTC) + timedelta(days=3))


def expected_counts(records: list[InspectionRecord], label) -> dict[str, tuple[int, int, int]]:  # type: ignore[no-untyped-def]
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in records:
        row = out[label(r)]
        row[0] += r.verdict != Verdict.ERROR
        row[1] += r.verdict == Verdict.NG
        row[2] += r.verdict == Verdict.ERROR
    return {k: (a, b, c) for k, (a, b, c) in out.items()}


def test_ng_counts_by_hour_shift_and_lot_match_the_parts(recorded: tuple[object, list[InspectionRecord]]) -> None:
    engine, records = recorded
    for by, label in (
        ("hour", lambda r: r.arrived_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:00")),
        ("shift", CALENDAR.label),
        ("lot", lambda r: r.lot),
    ):
        got = Q.count_aggregates(engine, window(), "ng-rate", by, CALENDAR)  # type: ignore[arg-type]
        want = expected_counts(records, (lambda r, f=label: f(r.arrived_at)) if by == "shift" else label)
        assert {a.label: (a.judged, a.ng, a.errors) for a in got} == want, by
        assert [a.start for a in got] == sorted(a.start for a in got)
    shifts = [a.label for a in Q.count_aggregates(engine, window(), "ng-rate", "shift", CALENDAR)]
    # 06:00 on the 30th is still the night shift that began on the 29th at 20:00
    assert shifts[:3] == ["2026-11-29 Night", "2026-11-30 Day", "2026-11-30 Night"]


def test_defects_per_part_count_the_regions(recorded: tuple[object, list[InspectionRecord]]) -> None:
    engine, records = recorded
    got = Q.count_aggregates(engine, window(), "defects", "lot", CALENDAR)
    want: dict[str, int] = defaultdict(int)
    for r in records:
        want[r.lot or ""] += len(r.regions)
    assert {a.label: a.count for a in got} == dict(want)


def test_value_sums_give_each_shifts_mean_and_sd(recorded: tuple[object, list[InspectionRecord]]) -> None:
    engine, records = recorded
    got = {a.label: a for a in Q.value_aggregates(engine, window(), "score", "shift", CALENDAR)}
    by_shift: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r.verdict == Verdict.OK and r.score is not None:
            by_shift[CALENDAR.label(r.arrived_at)].append(r.score)
    assert set(got) == set(by_shift)
    for label, scores in by_shift.items():
        a = got[label]
        assert a.count == len(scores)
        assert a.total / a.count == pytest.approx(np.mean(scores), abs=1e-9)
        var = (a.squares - a.count * (a.total / a.count) ** 2) / (a.count - 1)
        assert math.sqrt(var) == pytest.approx(np.std(scores, ddof=1), abs=1e-9)
        assert (a.low, a.high) == (min(scores), max(scores))
    areas = Q.value_aggregates(engine, window(), "region-area", "day", CALENDAR)
    assert sum(a.count for a in areas) == sum(len(r.regions) for r in records)
    rms = Q.value_aggregates(engine, window(), "feature:rms", "lot", CALENDAR)
    assert sum(a.count for a in rms) == len(records)
    assert Q.value_aggregates(engine, window(), "feature:main/rms", "lot", CALENDAR)[0].count == rms[0].count


def test_the_newest_values_come_oldest_first(recorded: tuple[object, list[InspectionRecord]]) -> None:
    engine, records = recorded
    got = Q.values(engine, window(), "normalised-score", limit=50)
    ok = [r for r in records if r.verdict == Verdict.OK]
    assert [v for _, v in got] == pytest.approx([r.normalised_score for r in ok[-50:]])


def test_a_p_chart_by_shift_is_the_chart_of_the_parts(recorded: tuple[object, list[InspectionRecord]]) -> None:
    engine, records = recorded
    rows = Q.count_aggregates(engine, window(), "ng-rate", "shift", CALENDAR)
    (chart,) = p_chart([a.ng for a in rows], [a.judged for a in rows])
    judged = [r for r in records if r.verdict != Verdict.ERROR]
    assert chart.center[0] == pytest.approx(sum(r.verdict == Verdict.NG for r in judged) / len(judged), abs=1e-12)


def test_frozen_limits_are_versioned_with_who_froze_them(recorded: tuple[object, list[InspectionRecord]]) -> None:
    engine, _ = recorded
    (chart,) = p_chart([3, 5, 4], [50, 50, 50])
    assert Q.frozen_limits(engine, "st-1", "ng-rate", "p") is None
    first = Q.freeze_limits(engine, "st-1", "ng-rate", chart.limits, "qe-li", note="after line move")
    second = Q.freeze_limits(engine, "st-1", "ng-rate", chart.limits, "qe-wang")
    assert (first.version, second.version) == (1, 2)
    latest = Q.frozen_limits(engine, "st-1", "ng-rate", "p")
    assert latest is not None and latest.version == 2 and latest.frozen_by == "qe-wang"
    assert latest.params == pytest.approx(chart.limits.params)
    old = Q.frozen_limits(engine, "st-1", "ng-rate", "p", version=1)
    assert old is not None and old.frozen_by == "qe-li"


def test_the_shift_calendar_is_a_plant_setting(recorded: tuple[object, list[InspectionRecord]]) -> None:
    engine, _ = recorded
    assert Q.shift_calendar(engine) == ShiftCalendar()
    Q.set_shift_calendar(engine, CALENDAR, "admin")
    assert Q.shift_calendar(engine) == CALENDAR


def test_a_shift_calendar_refuses_what_it_cannot_mean() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="quarter hour"):
        Shift(name="A", start="06:10")
    with pytest.raises(ValidationError, match="not a time zone"):
        ShiftCalendar(timezone="Mars/Olympus")
    for odd in ("0" * 300, "../../etc/passwd", "UTC\x00", "Europe"):  # found by the API fuzzer: a long name was a 500
        with pytest.raises(ValidationError):
            ShiftCalendar(timezone=odd)
    with pytest.raises(ValidationError, match="start at the same time"):
        ShiftCalendar(shifts=[Shift(name="A", start="06:00"), Shift(name="B", start="06:00")])
    with pytest.raises(Q.QualityQueryError, match="unknown metric 'colour'"):
        Q.value_aggregates(None, window(), "colour", "hour", CALENDAR)  # type: ignore[arg-type]


def test_a_parts_lot_comes_with_it_or_from_its_file_name() -> None:
    from huoyan.core.recipe import LotId
    from huoyan.core.records import Arrival
    from huoyan.station.inspect import lot_of

    def arrival(name: str, **meta: object) -> Arrival:
        return Arrival(key=name, source_name=f"/line/in/{name}", part_id=None, arrived_at=START, meta=dict(meta))

    by_name = LotId.model_validate({"from": "filename", "pattern": r"^(?P<lot>L\d+)_"})
    assert lot_of(arrival("L0042_p17.png"), by_name) == "L0042"
    assert lot_of(arrival("p17.png"), by_name) is None  # no match: no lot, the part is still inspected
    assert lot_of(arrival("L0042_p17.png", trigger={"lot": "L9"}), by_name) == "L9"  # given with the part wins
    assert lot_of(arrival("x.png", lot="U-1"), LotId()) == "U-1"  # an upload's field
    assert lot_of(arrival("x.png", trigger={"batch": 77}), LotId(key="batch")) == "77"
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs a pattern"):
        LotId.model_validate({"from": "filename"})


def test_a_window_that_cuts_through_quarter_hours_is_counted_exactly(
    recorded: tuple[object, list[InspectionRecord]],
) -> None:
    engine, records = recorded
    since = START.astimezone(UTC) + timedelta(hours=3, minutes=10, seconds=33)
    until = since + timedelta(hours=20, minutes=2, seconds=7)
    inside = [r for r in records if since <= r.arrived_at < until]
    got = Q.count_aggregates(engine, Q.Window("st-1", since, until), "ng-rate", "hour", CALENDAR)
    assert sum(a.judged for a in got) == sum(r.verdict != Verdict.ERROR for r in inside)
    assert sum(a.ng for a in got) == sum(r.verdict == Verdict.NG for r in inside)
    scores = Q.value_aggregates(engine, Q.Window("st-1", since, until), "score", "day", CALENDAR)
    ok = [r.score for r in inside if r.verdict == Verdict.OK and r.score is not None]
    assert sum(a.count for a in scores) == len(ok)
    assert sum(a.total for a in scores) == pytest.approx(sum(ok), abs=1e-9)


def test_records_stored_before_the_rollup_are_rolled_up_by_the_migration(
    recorded: tuple[object, list[InspectionRecord]],
) -> None:
    from sqlalchemy import delete

    from huoyan.store.database import downgrade, upgrade
    from huoyan.store.schema import RollupRow

    engine, _ = recorded
    before = Q.count_aggregates(engine, window(), "ng-rate", "day", CALENDAR)
    downgrade(engine, "0006")  # the rollup table goes (and the lots with it)
    upgrade(engine)  # and comes back, rebuilt from the records
    again = Q.count_aggregates(engine, window(), "ng-rate", "day", CALENDAR)
    assert [(a.label, a.judged, a.ng, a.errors) for a in again] == [(a.label, a.judged, a.ng, a.errors) for a in before]
    from sqlalchemy.orm import Session

    with Session(engine) as s, s.begin():  # type: ignore[arg-type]
        s.execute(delete(RollupRow))
    emptied = Q.count_aggregates(engine, window(), "ng-rate", "day", CALENDAR)
    assert sum(a.judged for a in emptied) == 0  # the charts do read the rollup


def test_a_shift_starts_at_a_local_wall_clock_time() -> None:
    from pydantic import ValidationError

    assert Shift(name="A", start=time(6)).start == "06:00"  # a time object is written as HH:MM
    with pytest.raises(ValidationError):
        Shift(name="A", start="25:00")
    # 06:00 in Berlin is 05:00 UTC in winter and 04:00 UTC in summer: the same shift
    berlin = ShiftCalendar(timezone="Europe/Berlin")
    assert berlin.label(datetime(2026, 1, 15, 5, 30, tzinfo=UTC)) == "2026-01-15 A"
    assert berlin.label(datetime(2026, 7, 15, 4, 30, tzinfo=UTC)) == "2026-07-15 A"
    assert berlin.label(datetime(2026, 7, 15, 3, 30, tzinfo=UTC)) == "2026-07-14 C"


def test_a_defect_types_rate_counts_what_reviewers_said(recorded: tuple[object, list[InspectionRecord]]) -> None:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from huoyan.store.schema import InspectionRow, ReviewRow

    engine, records = recorded
    with Session(engine) as s, s.begin():  # type: ignore[arg-type]
        ids = {key: i for key, i in s.execute(select(InspectionRow.key, InspectionRow.id))}
        ng = [r for r in records if r.verdict == Verdict.NG]
        ok = [r for r in records if r.verdict == Verdict.OK]

        def review(r: InspectionRecord, outcome: str, label: str | None) -> None:
            s.add(ReviewRow(inspection_id=ids[r.key], outcome=outcome, label=label, reviewer="qe", at=START))

        for r in ng[:3]:
            review(r, "defect", "scratch")
        review(ng[3], "defect", "dent")
        review(ng[3], "defect", "scratch")  # the latest review counts
        for r in ng[4:6]:
            review(r, "false_alarm", None)
        review(ok[0], "missed_defect", "scratch")
    by_lot = Q.count_aggregates(engine, window(), "defect:scratch", "lot", CALENDAR)
    assert sum(a.ng for a in by_lot) == 5  # 3 + the re-reviewed one + a missed defect
    assert sum(a.judged for a in by_lot) == sum(r.verdict != Verdict.ERROR for r in records)
    plain = Q.count_aggregates(engine, window(), "defect:defect", "shift", CALENDAR)
    assert sum(a.ng for a in plain) == len(ng) - 4 - 2  # unlabelled NG parts, less the false alarms
    series = Q.series_of(engine, window(), "defect:scratch", "p", "day", CALENDAR)
    assert series.counts is not None and sum(series.counts) == 5
