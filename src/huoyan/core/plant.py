"""Plant-wide settings: the shift calendar that shift reports and charts by shift use.

Stored in the database (``plant_settings``), so the CLI and every server read the same.
A shift runs from its start until the next shift starts, in the plant's time zone; a
part belongs to the shift in which it arrived, and a shift that starts before midnight
and ends after it is dated by the day it started.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Shift starts must fall on a quarter hour: records are bucketed by 15 minutes in SQL.
BUCKET_S = 900


class Shift(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=32)
    # Local wall-clock time, HH:MM: JSON Schema's "time" format would demand a UTC offset,
    # which a shift that starts at 06:00 all year round does not have.
    start: str = Field(
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="local time the shift starts, HH:MM on a quarter hour"
    )

    @field_validator("start", mode="before")
    @classmethod
    def _as_text(cls, v: object) -> object:
        return v.strftime("%H:%M") if isinstance(v, time) else v

    @field_validator("start")
    @classmethod
    def _quarter_hour(cls, v: str) -> str:
        if int(v[3:]) % 15:
            raise ValueError(f"{v}: a shift must start on a quarter hour (:00, :15, :30, :45)")
        return v

    @property
    def at(self) -> time:
        return time(int(self.start[:2]), int(self.start[3:]))


class ShiftCalendar(BaseModel):
    """The plant's shifts and time zone. The default: three shifts A, B, C from 06:00, 14:00
    and 22:00, in UTC until the plant sets its own zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = Field(default="UTC", max_length=64, description="IANA time zone, e.g. Asia/Shanghai")
    shifts: list[Shift] = Field(
        default_factory=lambda: [
            Shift(name="A", start="06:00"),
            Shift(name="B", start="14:00"),
            Shift(name="C", start="22:00"),
        ],
        min_length=1,
        max_length=12,
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name no file system takes
            raise ValueError(f"{v!r} is not a time zone name (e.g. Asia/Shanghai, Europe/Berlin, UTC)") from None
        return v

    @model_validator(mode="after")
    def _distinct(self) -> ShiftCalendar:
        names = [s.name for s in self.shifts]
        starts = [s.at for s in self.shifts]
        if len(set(names)) != len(names):
            raise ValueError("shifts: each shift needs its own name")
        if len(set(starts)) != len(starts):
            raise ValueError("shifts: two shifts start at the same time")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def shift_of(self, at: datetime) -> tuple[date, str, datetime]:
        """The shift an instant falls in: the local day it started, its name, and its start (UTC-aware)."""
        local = at.astimezone(self.zone)
        ordered = sorted(self.shifts, key=lambda s: s.at)
        day = local.date()
        current = None
        for s in ordered:
            if local.time() >= s.at:
                current = s
        if current is None:  # before the first start of the day: the previous day's last shift
            current, day = ordered[-1], day - timedelta(days=1)
        start = datetime.combine(day, current.at, tzinfo=self.zone)
        return day, current.name, start

    def label(self, at: datetime) -> str:
        day, name, _ = self.shift_of(at)
        return f"{day.isoformat()} {name}"

    def period(self, label: str) -> tuple[datetime, datetime]:
        """The start and end (UTC-aware) of the shift a label such as '2026-11-30 A' names."""
        day_text, _, name = label.partition(" ")
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            raise ValueError(f"{label!r}: name a shift as 'YYYY-MM-DD NAME', e.g. '2026-11-30 A'") from None
        ordered = sorted(self.shifts, key=lambda s: s.at)
        names = [s.name for s in ordered]
        if name not in names:
            raise ValueError(f"{label!r}: no shift {name!r}; the shifts are {', '.join(names)}")
        i = names.index(name)
        start = datetime.combine(day, ordered[i].at, tzinfo=self.zone)
        following = ordered[(i + 1) % len(ordered)]
        end_day = day if i + 1 < len(ordered) else day + timedelta(days=1)
        end = datetime.combine(end_day, following.at, tzinfo=self.zone)
        return start.astimezone(UTC), end.astimezone(UTC)
