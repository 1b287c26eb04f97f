"""The NG-rate rule alarm: each hour, the station tests its hourly p chart against the
limits frozen for it (Phase II) and raises the ``ng-rate-rule`` alarm when the hour just
ended completes a run-rule pattern (Western Electric 1-4), clearing it when an hour does
not. Without frozen limits there is nothing to test against, and nothing is raised: limits
estimated from the same hours would move with the process they are meant to judge.

The test reads the database's rollup (a few dozen rows), on a thread of its own so a slow
database never holds up inspection; its alarm goes where every station alarm goes (the
records, the line's channels, the dashboard), handed back to the station's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from huoyan.core.records import InspectionRecord, Severity, StationEvent
from huoyan.quality.charts import ChartError
from huoyan.quality.rules import DEFAULT_RULES
from huoyan.store import quality as Q

log = logging.getLogger(__name__)

KIND = "ng-rate-rule"
HOURS = 24  # the chart the newest hour is tested in: runs of up to 8 hours need their history


class RuleWatch:
    """A record listener that tests the hour just ended once the first part of a new hour arrives."""

    def __init__(self, engine: Engine, station_id: str, emit: Callable[[StationEvent], None]) -> None:
        self.engine = engine
        self.station_id = station_id
        self.emit = emit
        self._hour: datetime | None = None
        self._raised = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="huoyan-rules")

    def __call__(self, record: InspectionRecord) -> None:
        hour = record.arrived_at.replace(minute=0, second=0, microsecond=0)
        if self._hour is None or hour <= self._hour:
            self._hour = self._hour or hour
            return
        self._hour = hour
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._pool.submit(self._check_and_tell, hour, loop)

    def _check_and_tell(self, until: datetime, loop: asyncio.AbstractEventLoop | None) -> None:
        try:
            event = self.check(until)
        except (SQLAlchemyError, ChartError, Q.QualityQueryError) as exc:
            log.warning("%s: the NG-rate rules could not be tested (%s)", self.station_id, exc)
            return
        if event is None:
            return
        if loop is None:
            self.emit(event)
        else:
            loop.call_soon_threadsafe(self.emit, event)

    def check(self, until: datetime) -> StationEvent | None:
        """Test the hour before ``until``; the event to emit, if the alarm changes."""
        window = Q.Window(self.station_id, until - timedelta(hours=HOURS), until)
        calendar = Q.shift_calendar(self.engine)
        result = Q.records_report(
            self.engine, window, "ng-rate", "p", "hour", calendar, title="NG rate by hour", rules=DEFAULT_RULES
        )
        if result is None or not result.limits.frozen:
            return None
        frozen, labels = result.limits, result.labels
        newest = len(labels) - 1
        broken = [v for _, v in result.violations if v.index == newest]
        last_hour = (until - timedelta(hours=1)).astimezone(calendar.zone).strftime("%Y-%m-%d %H:00")
        if broken and labels[newest] == last_hour:
            self._raised = True
            rules = "; ".join(f"{v.rule} {v.text}" for v in broken)
            p = float(result.charts[0].statistic[newest])
            message = (
                f"NG rate {p:.2%} in the hour from {last_hour}: {rules} "
                f"(p chart on frozen limits version {frozen.version}, centre {frozen.params['p_bar']:.2%})"
            )
            return StationEvent(station_id=self.station_id, kind=KIND, severity=Severity.ALARM, message=message)
        if self._raised:
            self._raised = False
            return StationEvent(
                station_id=self.station_id,
                kind=KIND,
                severity=Severity.INFO,
                message=f"the hour from {last_hour} is back within the NG-rate rules",
                active=False,
            )
        return None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
