"""Station checks that run once an hour, off the station's thread.

A check is a record listener: the first part of a new hour starts it on a thread of its
own, so a slow database never holds up inspection, and the event it returns goes where
every station alarm goes (the records, the line's channels, the dashboard), handed back
to the station's event loop. A station with no parts has no hours to check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from huoyan.core.records import InspectionRecord, StationEvent

log = logging.getLogger(__name__)


class HourlyCheck:
    """Runs ``check(until)`` when the first part of a new hour arrives; subclasses say what it does."""

    #: Failures that are logged (the station goes on) rather than raised.
    failures: tuple[type[Exception], ...] = ()
    #: What failed, for the log: "<station>: <what> (<error>)".
    failed: str = "the hourly check failed"

    def __init__(self, station_id: str, emit: Callable[[StationEvent], None], thread: str) -> None:
        self.station_id = station_id
        self.emit = emit
        self._hour: datetime | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=thread)

    def check(self, until: datetime) -> StationEvent | None:
        raise NotImplementedError

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
        except self.failures as exc:
            log.warning("%s: %s (%s)", self.station_id, self.failed, exc)
            return
        if event is None:
            return
        if loop is None:
            self.emit(event)
        else:
            loop.call_soon_threadsafe(self.emit, event)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
