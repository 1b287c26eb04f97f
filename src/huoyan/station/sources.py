"""Where parts come from: a hot folder, a replayed folder, or an OpenCV camera or stream.

Every source yields ``Arrival`` objects and is told, through ``settle``, when a part's
record is durable. A new source (HTTP upload, a PLC trigger) only has to do the same.
``overflow`` says what the pipeline does when inference falls behind: "wait" holds the
source back (a hot folder just leaves files in place), "drop_oldest" discards the
oldest queued frame, counts it and raises an alarm (a free-running camera cannot wait).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from huoyan.core.durable import write_durably
from huoyan.core.models import IMAGE_SUFFIXES, Verdict
from huoyan.core.recipe import (
    CameraSource,
    HotFolderSource,
    HttpSource,
    MqttSensorSource,
    OpcUaSensorSource,
    PartId,
    ReplaySource,
    SensorReplaySource,
)
from huoyan.core.records import Arrival, InspectionRecord, Severity, StationEvent, utcnow
from huoyan.core.station import StationBusy
from huoyan.core.text import Message, fit_file_name, safe_text

log = logging.getLogger(__name__)

# Names writers use while a file is incomplete; such files are never claimed.
PARTIAL = re.compile(r"(^\.|\.tmp$|\.part$|\.partial$|~$)", re.IGNORECASE)
CLAIM_SEP = "__"
NAME_MAX = 255  # bytes in one file name (ext4, xfs, NTFS through most mounts)

EventFn = Callable[[StationEvent], None]


class SeqCounter:
    """The station's part sequence: unique and increasing across restarts (gaps allowed).

    The sequence number is half of every idempotency key, so it must never repeat, even
    when the station starts while its database is down and cannot say which numbers are
    taken. With a ``path`` (kept beside the outage spool) the counter reserves numbers in
    blocks, writing each block's end durably before handing out its first number; a
    restart begins after the last reservation, whatever the database answers. A clean
    ``close`` gives the unused rest of the block back, so only a crash leaves a gap.
    """

    BLOCK = 1000

    def __init__(self, last: int = 0, path: Path | None = None) -> None:
        self.path = path
        reserved = 0
        if path is not None and path.exists():
            try:
                reserved = int(path.read_text().strip() or 0)
            except ValueError as exc:
                raise ValueError(f"{path}: not a sequence number; remove it only if the database is reachable") from exc
        self.last = max(last, reserved)
        self._reserved = self.last
        self._lock = threading.Lock()

    def _reserve(self, upto: int) -> None:
        if self.path is not None:
            write_durably(self.path, str(upto).encode())
        self._reserved = upto

    def next(self) -> int:
        with self._lock:
            if self.path is not None and self.last + 1 > self._reserved:
                self._reserve(self.last + self.BLOCK)
            self.last += 1
            return self.last

    def advance_to(self, seq: int) -> None:
        """Numbers up to ``seq`` are taken (claims found on disk)."""
        with self._lock:
            self.last = max(self.last, seq)

    def close(self) -> None:
        """Give back the unused rest of the reserved block (clean shutdown)."""
        with self._lock:
            if self.path is not None and self._reserved > self.last:
                self._reserve(self.last)


class PartIds:
    """Derives a part id from the recipe's ``part_id`` policy."""

    def __init__(self, policy: PartId) -> None:
        self.policy = policy
        self._pattern = re.compile(policy.pattern) if policy.pattern else None

    def __call__(self, name: str, seq: int | None, payload: dict[str, Any] | None = None) -> str | None:
        p = self.policy
        if p.source == "counter":
            return f"{p.prefix}{seq:08d}" if seq is not None else None
        if p.source == "trigger":
            value = (payload or {}).get(p.key)
            return None if value is None else f"{p.prefix}{value}"
        stem = Path(name).stem
        if self._pattern is None:
            return f"{p.prefix}{stem}"
        m = self._pattern.search(name)
        if m is None:
            log.warning("part id pattern %r does not match %r; part id left empty", p.pattern, name)
            return None
        return p.prefix + (m.group("id") if "id" in m.groupdict() else m.group(0))


class Source:
    """Base of every source. Subclasses implement ``arrivals`` and, if they own files, ``settle``."""

    kind = "source"
    overflow: Literal["wait", "drop_oldest"] = "wait"

    def __init__(self, station_id: str, part_ids: PartIds, counter: SeqCounter, queue_size: int) -> None:
        self.station_id = station_id
        self.part_ids = part_ids
        self.counter = counter
        self.queue_size = queue_size
        self.on_event: EventFn | None = None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def arrivals(self) -> AsyncIterator[Arrival]:
        raise NotImplementedError

    async def settle(self, arrival: Arrival, verdict: Verdict) -> None:
        """Called once the part's record is durable."""

    def _emit(self, kind: str, severity: Severity, message: str, active: bool = True) -> None:
        if self.on_event is not None:
            self.on_event(
                StationEvent(station_id=self.station_id, kind=kind, severity=severity, message=message, active=active)
            )


class HotFolder(Source):
    """Claims files from a folder by atomic rename, and archives them after their record is stored.

    Claimed files wait in ``<path>/.processing`` named ``<seq>__<original name>``; the
    sequence number in the name is the idempotency key, so after a crash the same file
    is re-inspected under the same key (or only archived if its record already exists).
    A name too long for the claim prefix is shortened with a digest (``fit_file_name``).
    Entries that cannot be taken (symbolic links, which are never followed, FIFOs,
    folders, files that stay empty) are left in place under a ``hot-folder-skipped``
    alarm, cleared once they are gone.
    """

    kind = "hot_folder"
    SKIPPED_KIND = "hot-folder-skipped"
    EMPTY_GRACE_S = 1.0  # an empty file may be one its writer has not filled yet

    def __init__(self, cfg: HotFolderSource, station_id: str, part_ids: PartIds, counter: SeqCounter) -> None:
        super().__init__(station_id, part_ids, counter, cfg.queue)
        self.cfg = cfg
        self.inbox = Path(cfg.path)
        self.processing = self.inbox / ".processing"
        self.done = Path(cfg.done_dir or self.inbox / "done")
        self.failed = Path(cfg.failed_dir or self.inbox / "failed")
        for folder in (self.inbox, self.processing, self.done, self.failed):
            folder.mkdir(parents=True, exist_ok=True)
        self._own = {os.path.realpath(f) for f in (self.processing, self.done, self.failed)}
        self._skipped: dict[str, str] = {}  # name -> why, as last reported
        self.counter.advance_to(max((s for s, _ in self._claimed()), default=0))

    def _claimed(self) -> list[tuple[int, Path]]:
        out = []
        for p in self.processing.iterdir():
            head, sep, _ = p.name.partition(CLAIM_SEP)
            if sep and head.isdigit() and p.is_file():
                out.append((int(head), p))
        return sorted(out)

    def key(self, seq: int) -> str:
        return f"{self.station_id}:{self.kind}:{seq}"

    def _arrival(self, seq: int, path: Path, recovered: bool) -> Arrival:
        name = path.name.partition(CLAIM_SEP)[2]
        try:
            data = path.read_bytes()
        except OSError as exc:
            data = b""
            log.error("cannot read claimed file %s: %s", path, exc)
        return Arrival(
            key=self.key(seq),
            source_name=name,
            part_id=self.part_ids(name, seq),
            arrived_at=utcnow(),
            data=data,
            seq=seq,
            recovered=recovered,
            meta={"claimed_path": str(path)},
        )

    def _why_not(self, entry: os.DirEntry[str]) -> str | None:
        """Why an entry is no file to claim (None: it is a regular file)."""
        if entry.is_symlink():
            return "a symbolic link (links are not followed)"
        if entry.is_dir(follow_symlinks=False):
            return None if os.path.realpath(entry.path) in self._own else "a folder"
        if not entry.is_file(follow_symlinks=False):
            return "not a regular file (FIFO, socket or device)"
        return None

    def _scan(self, seen: dict[str, tuple[int, int, float]], now: float) -> tuple[list[str], dict[str, str]]:
        """Names whose size and mtime have held for ``settle_ms`` (updates ``seen``), and
        the entries that cannot be taken, with why."""
        ready, present, skipped = [], set(), {}
        settle = self.cfg.settle_ms / 1000
        with os.scandir(self.inbox) as it:
            for entry in it:
                if PARTIAL.search(entry.name):
                    continue
                if not entry.is_file(follow_symlinks=False):
                    why = self._why_not(entry)
                    if why is not None:
                        skipped[entry.name] = why
                    continue
                present.add(entry.name)
                st = entry.stat(follow_symlinks=False)
                sig = (st.st_size, st.st_mtime_ns)
                prev = seen.get(entry.name)
                if prev is None or prev[:2] != sig:
                    seen[entry.name] = (*sig, now)
                elif st.st_size > 0 and now - prev[2] >= settle:
                    ready.append(entry.name)
                elif st.st_size == 0 and now - prev[2] >= max(settle, self.EMPTY_GRACE_S):
                    skipped[entry.name] = "an empty file"
        for gone in set(seen) - present:
            del seen[gone]
        return sorted(ready, key=lambda n: (seen[n][1], n)), skipped

    def _report_skipped(self, skipped: dict[str, str]) -> None:
        new = {n: why for n, why in skipped.items() if self._skipped.get(n) != why}
        if new:
            listed = "; ".join(f"{safe_text(n, 200)!r}: {why}" for n, why in sorted(new.items())[:10])
            more = f" (and {len(new) - 10} more)" if len(new) > 10 else ""
            self._emit(self.SKIPPED_KIND, Severity.ALARM, f"left in {self.inbox}: {listed}{more}")
        elif self._skipped and not skipped:
            self._emit(self.SKIPPED_KIND, Severity.INFO, "no entries left that cannot be taken", active=False)
        self._skipped = skipped

    def _claim(self, name: str) -> tuple[int, Path] | None:
        seq = self.counter.next()
        prefix = f"{seq:010d}{CLAIM_SEP}"
        target = self.processing / (prefix + fit_file_name(name, NAME_MAX - len(prefix)))
        try:
            os.rename(self.inbox / name, target)
        except FileNotFoundError:
            return None  # another station or the operator took it first
        except OSError as exc:
            log.error("cannot claim %r: %s", name, exc)
            self._emit(self.SKIPPED_KIND, Severity.ALARM, f"cannot claim {safe_text(name, 200)!r}: {exc.strerror}")
            return None
        return seq, target

    async def arrivals(self) -> AsyncIterator[Arrival]:
        for seq, path in self._claimed():
            yield await asyncio.to_thread(self._arrival, seq, path, True)
        seen: dict[str, tuple[int, int, float]] = {}
        unclaimable: set[str] = set()
        loop = asyncio.get_running_loop()
        while not self.stopped:
            ready, skipped = await asyncio.to_thread(self._scan, seen, loop.time())
            self._report_skipped(skipped)
            ready = [n for n in ready if n not in unclaimable]
            for name in ready:
                if self.stopped:
                    return
                claimed = await asyncio.to_thread(self._claim, name)
                seen.pop(name, None)
                if claimed is None:
                    if os.path.lexists(self.inbox / name):
                        unclaimable.add(name)  # reported once; not retried in a tight loop
                    continue
                yield await asyncio.to_thread(self._arrival, *claimed, False)
            if not ready:
                await self._pause(self.cfg.poll_ms / 1000)

    async def settle(self, arrival: Arrival, verdict: Verdict) -> None:
        await asyncio.to_thread(self._archive, Path(arrival.meta["claimed_path"]), verdict)

    def _archive(self, claimed: Path, verdict: Verdict) -> None:
        folder = self.failed if verdict == Verdict.ERROR else self.done
        target = folder / claimed.name.partition(CLAIM_SEP)[2]
        if target.exists():
            target = folder / claimed.name  # the sequence number keeps it apart
        try:
            os.replace(claimed, target)
        except FileNotFoundError:
            pass
        except OSError as exc:
            # The record is durable; the file stays claimed and is archived on the next start.
            log.error("cannot archive %s: %s", claimed, exc)


class Replay(Source):
    """Feeds a folder's images at ``rate`` parts per second (optionally looping)."""

    kind = "replay"

    def __init__(self, cfg: ReplaySource, station_id: str, part_ids: PartIds, counter: SeqCounter) -> None:
        super().__init__(station_id, part_ids, counter, cfg.queue)
        self.cfg = cfg
        self.files = sorted(p for p in Path(cfg.path).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise FileNotFoundError(f"replay source: no images under {cfg.path}")

    async def arrivals(self) -> AsyncIterator[Arrival]:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.cfg.rate
        due = loop.time()
        lap = 0
        while not self.stopped:
            for i, path in enumerate(self.files):
                await self._pause(max(0.0, due - loop.time()))
                if self.stopped:
                    return
                due += period
                data = await asyncio.to_thread(path.read_bytes)
                rel = str(path.relative_to(self.cfg.path))
                seq = self.counter.next()
                yield Arrival(
                    # Lap and index make the key stable, so a restarted replay skips what it stored.
                    key=f"{self.station_id}:{self.kind}:{lap}:{i}:{rel}",
                    source_name=rel,
                    part_id=self.part_ids(rel, seq),
                    arrived_at=utcnow(),
                    data=data,
                    seq=seq,
                    recovered=True,
                )
            if not self.cfg.loop:
                return
            lap += 1


class Camera(Source):
    """An OpenCV capture. Free-run takes a frame every 1/rate s; trigger mode one per ``trigger``.

    A video file is read frame by frame (a simulated camera); a device or stream is
    drained continuously by a grabber thread so each part gets the newest frame, not
    one that waited in the driver's buffer.
    """

    kind = "camera"

    def __init__(self, cfg: CameraSource, station_id: str, part_ids: PartIds, counter: SeqCounter) -> None:
        super().__init__(station_id, part_ids, counter, cfg.queue)
        self.cfg = cfg
        self.overflow = "drop_oldest" if cfg.mode == "free_run" else "wait"
        dev = cfg.device
        self.target: int | str = int(dev) if isinstance(dev, str) and dev.isdigit() else dev
        self.is_file = isinstance(self.target, str) and "://" not in self.target
        self._triggers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._latest: np.ndarray | None = None
        self._cap: cv2.VideoCapture | None = None
        self._grabber: threading.Thread | None = None

    def trigger(self, payload: dict[str, Any] | None = None) -> None:
        """Take one picture (trigger mode); ``payload`` may carry the part id."""
        self._triggers.put_nowait(payload or {})

    def _open(self) -> cv2.VideoCapture | None:
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def _grab_loop(self) -> None:
        while not self.stopped and self._cap is not None:
            ok, frame = self._cap.read()
            if not ok:
                break
            self._latest = frame

    def _read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        if self.is_file:
            ok, frame = self._cap.read()
            return frame if ok else None
        return self._latest

    async def _connect(self) -> bool:
        while not self.stopped:
            self._cap = await asyncio.to_thread(self._open)
            if self._cap is not None:
                if not self.is_file:
                    self._grabber = threading.Thread(target=self._grab_loop, daemon=True)
                    self._grabber.start()
                return True
            if self.is_file:
                raise FileNotFoundError(f"camera source: cannot open video file {self.target}")
            self._emit("camera-disconnected", Severity.ALARM, f"cannot open camera {self.target}; retrying")
            await self._pause(2.0)
        return False

    async def _next_payload(self, due: float) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        if self.cfg.mode == "free_run":
            await self._pause(max(0.0, due - loop.time()))
            return None if self.stopped else {}
        while not self.stopped:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(self._triggers.get(), 0.2)
        return None

    async def arrivals(self) -> AsyncIterator[Arrival]:
        if not await self._connect():
            return
        loop = asyncio.get_running_loop()
        due = loop.time()
        try:
            while not self.stopped:
                payload = await self._next_payload(due)
                if payload is None:
                    return
                due = max(due + 1.0 / self.cfg.rate, loop.time())
                bgr = await asyncio.to_thread(self._read)
                if bgr is None:
                    if self.is_file:
                        return  # end of the recording
                    await self._pause(0.05)
                    continue
                seq = self.counter.next()
                name = f"frame-{seq:010d}"
                yield Arrival(
                    key=f"{self.station_id}:{self.kind}:{seq}",
                    source_name=name,
                    part_id=self.part_ids(name, seq, payload),
                    arrived_at=utcnow(),
                    image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    if bgr.ndim == 3
                    else cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB),
                    seq=seq,
                    meta={"trigger": payload} if payload else {},
                )
        finally:
            self.stop()
            if self._grabber is not None:
                self._grabber.join(timeout=2)
            if self._cap is not None:
                self._cap.release()


class SourceBusy(StationBusy):
    """The HTTP source's queue is full, or the station is not running."""


class HttpUpload(Source):
    """Parts uploaded over HTTP. ``submit`` may be called from any thread; its future
    resolves with the part's record once that record is durable (``settle``)."""

    kind = "http"

    def __init__(self, cfg: HttpSource, station_id: str, part_ids: PartIds, counter: SeqCounter) -> None:
        super().__init__(station_id, part_ids, counter, cfg.queue)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[Arrival] | None = None
        self._waiting: dict[str, concurrent.futures.Future[InspectionRecord]] = {}
        self._decided: dict[str, InspectionRecord] = {}
        self._taken: set[str] = set()  # handed to the station, not yet settled
        self._lock = threading.Lock()

    def submit(
        self, data: bytes, name: str, part_id: str | None = None, lot: str | None = None
    ) -> concurrent.futures.Future[InspectionRecord]:
        """Queue one uploaded image (of ``lot``, if given). Raises ``SourceBusy`` when the queue is full."""
        future: concurrent.futures.Future[InspectionRecord] = concurrent.futures.Future()
        with self._lock:  # the same lock the end of ``arrivals`` takes: no part slips in after it
            loop, inbox = self._loop, self._inbox
            if loop is None or inbox is None or self.stopped:
                raise SourceBusy(Message("the station is not taking parts"))
            if len(self._waiting) >= self.queue_size:
                raise SourceBusy(
                    Message("{count} uploads are waiting for inspection; try again shortly", count=len(self._waiting))
                )
            seq = self.counter.next()
            arrival = Arrival(
                key=f"{self.station_id}:{self.kind}:{seq}",
                source_name=name,
                part_id=part_id or self.part_ids(name, seq),
                arrived_at=utcnow(),
                data=data,
                seq=seq,
                meta={"lot": lot} if lot else {},
            )
            self._waiting[arrival.key] = future
            loop.call_soon_threadsafe(inbox.put_nowait, arrival)
        return future

    def fail_pending(self, why: Message) -> None:
        """Answer every upload still waiting with ``why`` (the station stopped on a fault)."""
        with self._lock:
            waiting, self._waiting = self._waiting, {}
            self._taken.clear()
        for future in waiting.values():
            if not future.done():
                future.set_exception(SourceBusy(why))

    def on_record(self, record: InspectionRecord) -> None:
        """Station listener: the record as decided, handed back once it is durable."""
        if record.key in self._waiting:
            self._decided[record.key] = record

    async def settle(self, arrival: Arrival, verdict: Verdict) -> None:
        with self._lock:
            future = self._waiting.pop(arrival.key, None)
            self._taken.discard(arrival.key)
        record = self._decided.pop(arrival.key, None)
        if future is not None and record is not None and not future.done():
            future.set_result(record)

    async def arrivals(self) -> AsyncIterator[Arrival]:
        inbox: asyncio.Queue[Arrival] = asyncio.Queue()
        with self._lock:
            self._loop, self._inbox = asyncio.get_running_loop(), inbox
        try:
            while not self.stopped:
                with contextlib.suppress(TimeoutError):
                    arrival = await asyncio.wait_for(inbox.get(), 0.2)
                    self._taken.add(arrival.key)
                    yield arrival
        finally:
            # Parts already taken are still inspected and settled; every other one fails now,
            # including any whose hand-over to this loop was still on its way.
            with self._lock:
                self._loop = None
                for key in [k for k in self._waiting if k not in self._taken]:
                    self._waiting.pop(key).set_exception(
                        SourceBusy(Message("the station stopped before this part was inspected"))
                    )


def make_source(
    cfg: Any,
    station_id: str,
    part_ids: PartIds,
    counter: SeqCounter,
    spec: Any = None,
    reader: Any = None,
) -> Source:
    """The source a recipe's ``source`` section names. Sensor sources also need the
    model's windows (``sensors.WindowSpec``) and, to replay files, a reader of recordings."""
    if isinstance(cfg, HttpSource):
        return HttpUpload(cfg, station_id, part_ids, counter)
    if isinstance(cfg, HotFolderSource):
        return HotFolder(cfg, station_id, part_ids, counter)
    if isinstance(cfg, ReplaySource):
        return Replay(cfg, station_id, part_ids, counter)
    if isinstance(cfg, CameraSource):
        return Camera(cfg, station_id, part_ids, counter)
    from huoyan.station import sensors

    if spec is None:
        raise ValueError(f"a {cfg.type} source needs a model that judges windows of a sensor channel")
    if isinstance(cfg, SensorReplaySource):
        if reader is None:
            raise ValueError("a sensor_replay source needs a reader of recordings")
        return sensors.SensorReplay(cfg, station_id, part_ids, counter, spec, reader.read, reader.suffixes)
    if isinstance(cfg, MqttSensorSource):
        return sensors.MqttSensor(cfg, station_id, part_ids, counter, spec)
    if isinstance(cfg, OpcUaSensorSource):
        return sensors.OpcUaSensor(cfg, station_id, part_ids, counter, spec)
    raise ValueError(f"unknown source type {getattr(cfg, 'type', cfg)!r}")
