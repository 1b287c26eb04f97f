"""The NG-rate rule alarm: each hour, the station tests its hourly p chart against the
limits frozen for it (Phase II) and raises the ``ng-rate-rule`` alarm when the hour just
ended completes a run-rule pattern (Western Electric 1-4), clearing it when an hour does
not. Without frozen limits there is nothing to test against, and nothing is raised: limits
estimated from the same hours would move with the process they are meant to judge.

The test reads the database's rollup (a few dozen rows), as an hourly check
(``runner.hourly``): off the station's thread, its alarm handed back to the station.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from huoyan.core.records import Severity, StationEvent
from huoyan.quality.charts import ChartError
from huoyan.quality.rules import DEFAULT_RULES
from huoyan.runner.hourly import HourlyCheck
from huoyan.store import quality as Q

KIND = "ng-rate-rule"
HOURS = 24  # the chart the newest hour is tested in: runs of up to 8 hours need their history


class RuleWatch(HourlyCheck):
    """Tests the hour just ended once the first part of a new hour arrives."""

    failures = (SQLAlchemyError, ChartError, Q.QualityQueryError)
    failed = "the NG-rate rules could not be tested"

    def __init__(self, engine: Engine, station_id: str, emit: Callable[[StationEvent], None]) -> None:
        super().__init__(station_id, emit, "huoyan-rules")
        self.engine = engine
        self._raised = False

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
