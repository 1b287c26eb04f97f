"""A part seen by several channels: its files (one per channel, joined by the part id in
their names) gathered into one arrival.

``Gathering`` wraps a file source (a hot folder, a replay). Each file goes to the
channel whose ``files`` pattern its name matches; a part is handed over once every
channel has its file, or ``wait_s`` after its first file arrived, with the channels
still missing named (their verdict will be ERROR). A file of a channel the part already
has starts the next part of that id (the first is handed over as it is); a file that
matches no channel, or whose name gives no part id, is handed over alone and recorded
as an ERROR. Nothing is dropped. The gathered arrival's key is its first file's key
with a ``+`` (the same after a restart, when the hot folder claims the same files
again), and settling it settles every file (each is archived).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from huoyan.core.models import Verdict
from huoyan.core.recipe import Channel
from huoyan.core.records import Arrival
from huoyan.station.sources import Source

log = logging.getLogger(__name__)

PARTS = "parts"  # meta: [(channel, arrival)] of a gathered arrival
MISSING = "missing"  # meta: channels with no file
UNMATCHED = "unmatched"  # meta: why a lone file joined no part


@dataclass
class _Pending:
    part_id: str
    first: Arrival
    deadline: float
    parts: dict[str, Arrival] = field(default_factory=dict)


class Gathering(Source):
    kind = "gathering"

    def __init__(self, inner: Source, channels: list[Channel], wait_s: float) -> None:
        super().__init__(inner.station_id, inner.part_ids, inner.counter, inner.queue_size)
        self.inner = inner
        self.channels = channels
        self.patterns = [(c.name, re.compile(c.files)) for c in channels]
        self.wait_s = wait_s
        self.overflow = inner.overflow

    def stop(self) -> None:
        super().stop()
        self.inner.stop()

    def channel_of(self, name: str) -> str | None:
        return next((channel for channel, pattern in self.patterns if pattern.search(name)), None)

    def _gathered(self, p: _Pending) -> Arrival:
        """The part as it stands: its files, and the channels it has none of."""
        parts = [(c.name, p.parts[c.name]) for c in self.channels if c.name in p.parts]
        missing = [c.name for c in self.channels if c.name not in p.parts]
        first = min((a for _, a in parts), key=lambda a: a.seq or 0)
        return Arrival(
            key=f"{first.key}+",
            source_name=p.part_id,
            part_id=p.part_id,
            arrived_at=min(a.arrived_at for _, a in parts),
            seq=first.seq,
            recovered=any(a.recovered for _, a in parts),
            meta={PARTS: parts, MISSING: missing},
        )

    def _alone(self, arrival: Arrival, why: str) -> Arrival:
        arrival.meta[UNMATCHED] = why
        return arrival

    async def _pump(self, queue: asyncio.Queue[Arrival | None]) -> None:
        try:
            async for arrival in self.inner.arrivals():
                await queue.put(arrival)
        finally:
            await queue.put(None)

    async def arrivals(self) -> AsyncIterator[Arrival]:
        self.inner.on_event = self.on_event
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Arrival | None] = asyncio.Queue(maxsize=max(4, self.queue_size))
        pump = asyncio.create_task(self._pump(queue))
        pending: dict[str, _Pending] = {}
        try:
            ended = False
            while not ended or pending:
                due = min((p.deadline for p in pending.values()), default=None)
                timeout = None if due is None else max(0.0, due - loop.time())
                item: Arrival | None = None
                if not ended:
                    try:
                        item = await asyncio.wait_for(queue.get(), timeout)
                    except TimeoutError:
                        item = None
                    else:
                        ended = item is None
                for part_id in [k for k, w in pending.items() if ended or w.deadline <= loop.time()]:
                    late = pending.pop(part_id)
                    yield self._gathered(late)
                if item is None:
                    continue
                channel = self.channel_of(item.source_name)
                if channel is None:
                    yield self._alone(item, f"{item.source_name}: the name matches no channel's files pattern")
                    continue
                if item.part_id is None:
                    yield self._alone(item, f"{item.source_name}: the name gives no part id (part_id.pattern)")
                    continue
                waiting = pending.get(item.part_id)
                if waiting is not None and channel in waiting.parts:
                    pending.pop(item.part_id)  # a second file of this channel: the next part of that id
                    yield self._gathered(waiting)
                    waiting = None
                if waiting is None:
                    waiting = pending[item.part_id] = _Pending(item.part_id, item, loop.time() + self.wait_s)
                waiting.parts[channel] = item
                if len(waiting.parts) == len(self.channels):
                    yield self._gathered(pending.pop(item.part_id))
        finally:
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump

    async def settle(self, arrival: Arrival, verdict: Verdict) -> None:
        for _, part in arrival.meta.get(PARTS, [(None, arrival)]):
            await self.inner.settle(part, verdict)
