"""Fans each verdict out to the line's channels and measures how long each took to signal it.

The station calls ``LineFeedback.on_record`` the moment a part is decided (before its
record is committed, so the line is never held up by the database) and ``on_event``
for alarms. Each channel takes the result without blocking the station loop; when the
peer can see it (an OPC UA value written, Modbus outputs set, an MQTT PUBACK, a webhook's
2xx), the channel calls ``SignalTimes.signalled``, which logs the verdict-to-signal
latency of that part on that channel.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from huoyan.core.records import InspectionRecord, Severity, StationEvent, utcnow
from huoyan.io.message import ResultMessage, event_message

log = logging.getLogger("huoyan.io.latency")


class Channel(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def result(self, record: InspectionRecord, message: dict[str, Any]) -> None:
        """Called on the station's event loop; must return at once."""
        ...

    def event(self, event: StationEvent, message: dict[str, Any]) -> None: ...


class OutageAlarm:
    """Turns a channel thread's healthy/unhealthy flips into station alarms on the station's loop."""

    def __init__(self, station: str, kind: str, emit: Callable[[StationEvent], None] | None) -> None:
        self.station = station
        self.kind = kind
        self.emit = emit
        self.loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, healthy: bool, why: str) -> None:
        if self.emit is None or self.loop is None:
            return
        event = StationEvent(
            station_id=self.station,
            kind=self.kind,
            severity=Severity.INFO if healthy else Severity.ALARM,
            message=why,
            active=not healthy,
        )
        self.loop.call_soon_threadsafe(self.emit, event)


class SignalTimes:
    """Verdict-to-signal latency per channel: logged per part, summarised as p50/p99."""

    def __init__(self, keep: int = 5000) -> None:
        self._samples: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.keep = keep

    def signalled(self, channel: str, key: str, part_id: str | None, decided_at: datetime | str) -> float:
        if isinstance(decided_at, str):
            decided_at = datetime.fromisoformat(decided_at)
        ms = (utcnow() - decided_at).total_seconds() * 1000
        with self._lock:
            self._samples.setdefault(channel, deque(maxlen=self.keep)).append(ms)
        log.info("signal %s key=%s part=%s %.2f ms after the verdict", channel, key, part_id, ms)
        return ms

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        with self._lock:
            for channel, values in self._samples.items():
                ordered = sorted(values)
                n = len(ordered)
                out[channel] = {
                    "n": n,
                    "p50_ms": round(ordered[n // 2], 2),
                    "p99_ms": round(ordered[min(n - 1, int(0.99 * n))], 2),
                }
        return out


class LineFeedback:
    def __init__(self, plant: str, line: str, channels: Sequence[Channel], times: SignalTimes) -> None:
        self.plant = plant
        self.line = line
        self.channels = list(channels)
        self.times = times

    async def start(self) -> None:
        for c in self.channels:
            await c.start()

    async def stop(self) -> None:
        for c in reversed(self.channels):
            try:
                await c.stop()
            except Exception:
                log.exception("stopping %s failed", c.name)

    def on_record(self, record: InspectionRecord) -> None:
        message = ResultMessage.from_record(record, self.plant, self.line).to_json()
        for c in self.channels:
            try:
                c.result(record, message)
            except Exception:  # one broken channel must not silence the others
                log.exception("%s could not take result %s", c.name, record.key)

    def on_event(self, event: StationEvent) -> None:
        message = event_message(event, self.plant, self.line)
        for c in self.channels:
            try:
                c.event(event, message)
            except Exception:
                log.exception("%s could not take event %s", c.name, event.kind)
