"""The live view's shift counters: a station's parts by verdict since its shift began (the
plant's shift calendar), or since an operator reset them during the shift. Resets are kept
in the database, plant-wide, so every screen on the line shows the same numbers, and a
restart of the server does not bring back counts the shift leader cleared."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from huoyan.store.quality import shift_calendar
from huoyan.store.records import RecordFilter, as_utc, verdict_counts
from huoyan.store.settings import read_setting, update_setting

RESETS_KEY = "counter-resets"


@dataclass(frozen=True)
class ShiftCounts:
    shift: str  # the shift's label, e.g. '2026-12-02 A'
    shift_start: datetime
    since: datetime  # the shift's start, or the reset during it
    reset_by: str | None
    counts: dict[str, int]


def shift_counts(engine: Engine, station: str, now: datetime | None = None) -> ShiftCounts:
    calendar = shift_calendar(engine)
    day, name, start = calendar.shift_of(now or datetime.now(UTC))
    start = start.astimezone(UTC)
    reset = (read_setting(engine, RESETS_KEY) or {}).get(station)
    since, by = start, None
    if reset is not None:
        at = as_utc(datetime.fromisoformat(reset["at"]))
        if at >= start:  # a reset in an earlier shift does not reach into this one
            since, by = at, reset["by"]
    counts = verdict_counts(engine, RecordFilter(station=station, since=since))
    return ShiftCounts(f"{day.isoformat()} {name}", start, since, by, counts)


def reset_counters(engine: Engine, station: str, by: str) -> datetime:
    """Count the station's parts from now on, for the rest of the shift."""
    now = datetime.now(UTC)
    update_setting(engine, RESETS_KEY, lambda resets: {**resets, station: {"at": now.isoformat(), "by": by}}, by)
    return now
