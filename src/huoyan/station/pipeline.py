"""The station loop: intake → bounded queue → micro-batched inference → group-committed records.

Three asyncio tasks joined by bounded queues. Intake pulls arrivals from the source,
decodes them on a thread of their own (overlapping the running batch), applies the
source's overflow policy and pauses while the disk is nearly full. Inference takes
whatever has queued up (up to ``batch_size``) and runs it in a worker thread, so a busy
line gets larger batches and an idle one gets batch-of-one latency. The writer commits
every finished record it has in one transaction, on its own thread, and only then tells
the source that the part is done. Stopping (SIGTERM) ends intake and drains the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from huoyan.core.models import Verdict
from huoyan.core.records import Arrival, InspectionRecord, Severity, StationEvent, StoredRecord
from huoyan.core.text import Message
from huoyan.station.inspect import Prepared
from huoyan.station.sources import Source

log = logging.getLogger(__name__)
T = TypeVar("T")


class Sink(Protocol):
    """The record store as the station uses it (``huoyan.store.records.RecordStore``)."""

    def stored_verdict(self, key: str) -> Verdict | None: ...

    def write(self, items: Sequence[StoredRecord]) -> None: ...

    def event(self, event: StationEvent) -> None: ...

    def flush(self) -> bool: ...


class BatchInspector(Protocol):
    def prepare(self, arrival: Arrival) -> Prepared: ...

    def run(self, batch: Sequence[Prepared]) -> list[StoredRecord]: ...


@dataclass
class Stats:
    """Live counters for the status line and the end-of-run summary."""

    started: float = field(default_factory=time.monotonic)
    verdicts: Counter[str] = field(default_factory=Counter)
    arrived: int = 0
    skipped: int = 0
    dropped: int = 0
    queue_depth: int = 0
    stored_times: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=500))
    alarms: dict[str, str] = field(default_factory=dict)

    def rate(self, window_s: float = 5.0) -> float:
        now = time.monotonic()
        recent = [t for t in self.stored_times if now - t <= window_s]
        span = min(window_s, now - self.started)
        return len(recent) / span if span > 0 else 0.0

    def latency(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        values = sorted(self.latencies_ms)
        return values[min(len(values) - 1, int(q * len(values)))]

    def line(self) -> str:
        p50, p99 = self.latency(0.5), self.latency(0.99)
        lat = "-" if p50 is None or p99 is None else f"{p50:.0f}/{p99:.0f} ms"
        v = self.verdicts
        alarms = f" ALARM: {'; '.join(self.alarms)}" if self.alarms else ""
        return (
            f"{self.rate():5.1f} parts/s  OK {v['OK']}  NG {v['NG']}  ERROR {v['ERROR']}  "
            f"queue {self.queue_depth}  latency p50/p99 {lat}  dropped {self.dropped}{alarms}"
        )

    def summary(self) -> dict[str, object]:
        return {
            "parts": sum(self.verdicts.values()),
            "verdicts": dict(self.verdicts),
            "already_recorded": self.skipped,
            "dropped_frames": self.dropped,
            "seconds": round(time.monotonic() - self.started, 2),
            "latency_ms_p50": self.latency(0.5),
            "latency_ms_p99": self.latency(0.99),
        }


_END = None


def _call_each(listeners: Sequence[Callable[[T], None]], arg: T, what: str) -> None:
    """Tell every listener; one that fails is logged and does not stop the line."""
    for listener in listeners:
        try:
            listener(arg)
        except Exception:
            log.exception("listener %r failed for %s", listener, what)


Pairs = list[tuple[Arrival, StoredRecord]]


class Station:
    def __init__(
        self,
        station_id: str,
        source: Source,
        inspector: BatchInspector,
        sink: Sink,
        data_dir: Path,
        batch_size: int = 8,
        min_free_mb: int = 200,
        listeners: Sequence[Callable[[InspectionRecord], None]] = (),
        event_listeners: Sequence[Callable[[StationEvent], None]] = (),
        item_listeners: Sequence[Callable[[StoredRecord], None]] = (),
    ) -> None:
        self.station_id = station_id
        self.source = source
        self.inspector = inspector
        self.sink = sink
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.min_free_mb = min_free_mb
        self.listeners = list(listeners)
        self.event_listeners = list(event_listeners)
        # Told at decision time like ``listeners``, with the blobs and live preview too.
        self.item_listeners = list(item_listeners)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.stats = Stats()
        self._last_arrival = time.monotonic()
        self._inflight = 0
        self._drop_reported = 0
        source.on_event = self.emit
        self._taking = asyncio.Event()
        self._taking.set()
        self._prep_pool = ThreadPoolExecutor(1, thread_name_prefix="huoyan-decode")
        self._infer_pool = ThreadPoolExecutor(1, thread_name_prefix="huoyan-infer")
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="huoyan-write")

    # -- events -----------------------------------------------------------------------
    def emit(self, event: StationEvent) -> None:
        """Record an event; the sink also tells us of its own (database outage) via ``note``."""
        self.note(event)
        try:
            self.sink.event(event)
        except Exception:
            log.exception("could not store event %s", event.kind)

    def _tell_listeners(self, event: StationEvent) -> None:
        _call_each(self.event_listeners, event, event.kind)

    def _alert(self, kind: str, severity: Severity, message: str, active: bool = True) -> None:
        self.emit(
            StationEvent(station_id=self.station_id, kind=kind, severity=severity, message=message, active=active)
        )

    def note(self, event: StationEvent) -> None:
        self._tell_listeners(event)
        if event.severity == Severity.ALARM and event.active:
            self.stats.alarms[event.kind] = event.message
            log.error("%s: %s", event.kind, event.message)
        elif not event.active:
            self.stats.alarms.pop(event.kind, None)
            log.info("%s cleared: %s", event.kind, event.message)
        else:
            log.warning("%s: %s", event.kind, event.message)

    def stop(self) -> None:
        """Stop taking new parts; everything already taken is still inspected and stored."""
        self.source.stop()
        self._taking.set()  # a paused intake must wake up to see the stop

    def pause(self) -> None:
        """Take no new parts until ``resume`` (the line said Stop or Halt); parts taken go on."""
        self._taking.clear()

    def resume(self) -> None:
        self._taking.set()

    @property
    def paused(self) -> bool:
        return not self._taking.is_set()

    @property
    def in_flight(self) -> int:
        return self._inflight

    def use(self, inspector: BatchInspector) -> None:
        """Judge the next parts with another recipe; call only while nothing is in flight."""
        if self._inflight:
            raise RuntimeError(Message("parts are in flight: pause and wait for them before switching recipes"))
        self.inspector = inspector

    # -- intake -------------------------------------------------------------------------
    def _disk_low(self) -> bool:
        return shutil.disk_usage(self.data_dir).free < self.min_free_mb * 1024 * 1024

    async def _wait_for_disk(self) -> None:
        if not self._disk_low():
            return
        self._alert(
            "disk-full", Severity.ALARM, f"less than {self.min_free_mb} MB free in {self.data_dir}: intake paused"
        )
        while self._disk_low() and not self.source.stopped:
            await asyncio.sleep(1.0)
        self._alert("disk-full", Severity.INFO, "disk space available again: intake resumed", active=False)

    def _report_drops(self) -> None:
        if self.stats.dropped > self._drop_reported:
            n = self.stats.dropped - self._drop_reported
            self._drop_reported = self.stats.dropped
            total = self.stats.dropped
            self._alert(
                "frames-dropped",
                Severity.ALARM,
                f"{n} frames dropped because inspection fell behind ({total} in total)",
            )

    async def _intake(self, queue: asyncio.Queue[Prepared | None], max_parts: int | None) -> None:
        loop = asyncio.get_running_loop()
        it = aiter(self.source.arrivals())
        try:
            while True:
                await self._wait_for_disk()
                await self._taking.wait()
                try:
                    arrival = await anext(it)
                except StopAsyncIteration:
                    break
                # A part the source was waiting for when a pause came waits for the resume:
                # paused means nothing new in flight (a recipe switch relies on it).
                await self._taking.wait()
                self._last_arrival = time.monotonic()
                self.stats.arrived += 1
                if arrival.recovered:
                    verdict = await loop.run_in_executor(self._write_pool, self.sink.stored_verdict, arrival.key)
                    if verdict is not None:
                        self.stats.skipped += 1
                        await self.source.settle(arrival, verdict)
                        continue
                self._inflight += 1
                prepared = await loop.run_in_executor(self._prep_pool, self.inspector.prepare, arrival)
                if self.source.overflow == "drop_oldest" and queue.full():
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()
                        self._inflight -= 1
                        self.stats.dropped += 1
                        self._report_drops()
                await queue.put(prepared)
                self.stats.queue_depth = queue.qsize()
                if max_parts is not None and self.stats.arrived >= max_parts:
                    self.source.stop()
        finally:
            await queue.put(_END)

    # -- inference --------------------------------------------------------------------------
    async def _infer(self, queue: asyncio.Queue[Prepared | None], done: asyncio.Queue[Pairs | None]) -> None:
        loop = asyncio.get_running_loop()
        ending = False
        while not ending:
            first = await queue.get()
            if first is _END:
                break
            batch = [first]
            while len(batch) < self.batch_size and not queue.empty():
                nxt = queue.get_nowait()
                if nxt is _END:
                    ending = True
                    break
                batch.append(nxt)
            self.stats.queue_depth = queue.qsize()
            items = await loop.run_in_executor(self._infer_pool, self.inspector.run, batch)
            for item in items:
                _call_each(self.listeners, item.record, item.record.key)
                _call_each(self.item_listeners, item, item.record.key)
            await done.put([(p.arrival, item) for p, item in zip(batch, items, strict=True)])
        await done.put(_END)

    # -- records --------------------------------------------------------------------------------
    async def _write(self, done: asyncio.Queue[Pairs | None]) -> None:
        loop = asyncio.get_running_loop()
        ending = False
        while not ending:
            first = await done.get()
            if first is _END:
                break
            pairs = list(first)
            while not done.empty():
                nxt = done.get_nowait()
                if nxt is _END:
                    ending = True
                    break
                pairs.extend(nxt)
            items = [item for _, item in pairs]
            while True:
                try:
                    await loop.run_in_executor(self._write_pool, self.sink.write, items)
                    break
                except Exception as exc:
                    # Disk full or failing, or a fault in the store: keep the records in memory
                    # and retry; never drop them. (A record the database refuses for its
                    # content is set aside by the store itself, so this loop cannot stick on one.)
                    log.exception("cannot write records")
                    self._alert("storage-error", Severity.ALARM, f"cannot write records ({exc}); retrying")
                    await asyncio.sleep(1.0)
            now = time.monotonic()
            for arrival, item in pairs:
                # Counted before the source hears of it, so whoever waits on the part sees it counted.
                self.stats.verdicts[item.record.verdict.value] += 1
                self.stats.stored_times.append(now)
                self.stats.latencies_ms.append(item.record.latency_ms)
                await self.source.settle(arrival, item.record.verdict)
                self._inflight -= 1

    async def _flusher(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(2.0)
            try:
                await loop.run_in_executor(self._write_pool, self.sink.flush)
            except Exception:
                log.exception("spool flush failed; trying again")

    async def _idle_watch(self, idle_exit: float) -> None:
        while not self.source.stopped:
            await asyncio.sleep(min(0.2, idle_exit))
            if self._inflight == 0 and time.monotonic() - self._last_arrival >= idle_exit:
                log.info("no parts for %.1f s: stopping", idle_exit)
                self.source.stop()

    async def _status(self, show: Callable[[Stats], None], every: float) -> None:
        while True:
            await asyncio.sleep(every)
            show(self.stats)

    async def _final_flush(self) -> None:
        """One last attempt to empty the spool before exit (what stays is flushed on next start)."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._write_pool, self.sink.flush)
        except Exception:
            log.exception("final spool flush failed")

    async def run(
        self,
        idle_exit: float | None = None,
        max_parts: int | None = None,
        status: Callable[[Stats], None] | None = None,
        status_every: float = 1.0,
    ) -> Stats:
        """Run until the source ends or is stopped, then drain; return the counters."""
        queue: asyncio.Queue[Prepared | None] = asyncio.Queue(self.source.queue_size)
        # Generous: a slow fsync or commit must not hold back verdicts (listeners get them
        # at decision time); the queue only bounds memory if storage stalls for long.
        done: asyncio.Queue[Pairs | None] = asyncio.Queue(64)
        helpers = [asyncio.create_task(self._flusher())]
        if idle_exit is not None:
            helpers.append(asyncio.create_task(self._idle_watch(idle_exit)))
        if status is not None:
            helpers.append(asyncio.create_task(self._status(status, status_every)))
        try:
            await asyncio.gather(self._intake(queue, max_parts), self._infer(queue, done), self._write(done))
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._final_flush()
            self._prep_pool.shutdown(wait=True)
            self._infer_pool.shutdown(wait=True)
            self._write_pool.shutdown(wait=True)
        return self.stats
