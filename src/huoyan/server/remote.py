"""A station on another PC, as the server sees it: the ``StationHandle`` of a station that
reports over HTTP (``huoyan run --server``, ``runner.link``).

Its status is the station's last report; a station that has not reported for
``STALE_S`` is shown as not running, with how long it has been silent. An action
(pause, resume, threshold, activate, recipe switch) becomes a command handed to the station with its
next report and is awaited until the station tells its outcome, or ``WAIT_S`` passes
(then it stays queued: a station that comes back still carries it out, and the answer
says so). Uploads stay with the station; its NG evidence is uploaded to the server's blob
store, and while a live view is open its reports bring a preview of their newest part.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from huoyan.core.records import InspectionRecord
from huoyan.core.station import CommandDone, LinkReport, ModelVersionRef, StationCommand, StationStatus
from huoyan.core.text import Message

STALE_S = 5.0  # no report for this long: the station is shown as not running
WAIT_S = 10.0  # how long an action waits for the station's confirmation


class CommandTimeout(RuntimeError):
    """The station did not confirm a command in time (it stays queued for it)."""


class RemoteStation:
    """The server's handle of a station reporting from another PC."""

    _ids = itertools.count(1)

    def __init__(self, station_id: str, publish: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self._station_id = station_id
        self._lock = threading.Lock()
        self._last: StationStatus | None = None
        self._seen_at = 0.0
        self._queued: list[StationCommand] = []
        self._waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[CommandDone]]] = {}
        self.publish = publish  # (kind, payload) to the live view: each part decided, each event
        self.watchers = 0  # live views open: told to the station, which then sends previews

    @property
    def station_id(self) -> str:
        return self._station_id

    @property
    def max_image_pixels(self) -> int:
        return 0  # takes no uploads

    def start(self) -> None:
        """Nothing to start: the station runs on its own PC."""

    def stop(self, timeout: float = 30.0) -> None:
        """Nothing to stop here; waiting actions are answered as not confirmed."""
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for loop, future in waiting.values():
            loop.call_soon_threadsafe(_fail, future, "the server is stopping")

    # -- the station's reports ------------------------------------------------------------
    def reported(self, report: LinkReport) -> list[StationCommand]:
        """Take a report; the commands to hand to the station with the answer."""
        with self._lock:
            self._last, self._seen_at = report.status, time.monotonic()
            outcomes = [(self._waiting.pop(d.id, None), d) for d in report.done]
            commands, self._queued = self._queued, []
        for waiter, done in outcomes:
            if waiter is not None:
                loop, future = waiter
                loop.call_soon_threadsafe(_settle, future, done)
        if self.publish is not None:
            for part in report.parts:
                self.publish("part", part)
            for event in report.events:
                self.publish("alarm", event.model_dump(mode="json"))
        return commands

    def status(self) -> StationStatus:
        with self._lock:
            last, seen_at = self._last, self._seen_at
        if last is None:
            return StationStatus(
                station_id=self.station_id, product="", running=False, paused=False,
                error="the station has not reported yet", source="remote", recipe_id="", recipe_version="",
                model_version=None, model_sha256=None, threshold=None, threshold_set=False, counts={},
                parts_per_second=0.0, ng_rate=0.0, queue_depth=0, latency_ms_p50=None, latency_ms_p99=None,
                alarms={}, spooled=0,
            )  # fmt: skip
        silent = time.monotonic() - seen_at
        if silent <= STALE_S:
            return last
        return last.model_copy(
            update={"running": False, "parts_per_second": 0.0, "error": f"no report for {silent:.0f} s"}
        )

    # -- actions ----------------------------------------------------------------------------
    def submit(
        self, data: bytes, name: str, part_id: str | None, lot: str | None = None
    ) -> concurrent.futures.Future[InspectionRecord]:
        raise TypeError(
            Message("station {station} takes parts on its own PC, not by upload here", station=self.station_id)
        )

    def blob(self, sha256: str) -> bytes:
        raise FileNotFoundError(sha256)  # the station keeps its evidence; the server's store is asked instead

    def watch(self, watchers: int) -> None:
        """Told to the station with its next report: it draws a preview of the newest part
        of each report only while someone watches."""
        self.watchers = watchers

    async def pause(self) -> None:
        await self._command(StationCommand(id=next(self._ids), action="pause"))

    async def resume(self) -> None:
        await self._command(StationCommand(id=next(self._ids), action="resume"))

    async def set_threshold(self, threshold: float | None, by: str) -> None:
        await self._command(StationCommand(id=next(self._ids), action="threshold", threshold=threshold))

    async def switch_recipe(self, recipe: str) -> None:
        await self._command(StationCommand(id=next(self._ids), action="recipe", recipe=recipe))

    async def activate(self, model: ModelVersionRef) -> None:
        await self._command(StationCommand(id=next(self._ids), action="activate", model=model))

    async def _command(self, command: StationCommand) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CommandDone] = loop.create_future()
        with self._lock:
            self._queued.append(command)
            self._waiting[command.id] = (loop, future)
        try:
            done = await asyncio.wait_for(asyncio.shield(future), WAIT_S)
        except TimeoutError as exc:
            raise CommandTimeout(
                Message(
                    "station {station} has not confirmed '{action}' within {seconds} s; it is carried out when "
                    "the station next reports",
                    station=self.station_id,
                    action=command.action,
                    seconds=int(WAIT_S),
                )
            ) from exc
        if not done.ok:
            raise RuntimeError(
                Message("station {station} could not do it: {reason}", station=self.station_id, reason=done.error)
            )


def _settle(future: asyncio.Future[CommandDone], done: CommandDone) -> None:
    if not future.done():
        future.set_result(done)


def _fail(future: asyncio.Future[CommandDone], why: str) -> None:
    if not future.done():
        future.set_result(CommandDone(id=-1, ok=False, error=why))
