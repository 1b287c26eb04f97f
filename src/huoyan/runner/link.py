"""A station on another PC reporting to a central ``huoyan serve``: its status once a
second, and the server's commands carried out between parts.

The station runs as ever (its records go to the plant's database, its signals to the
PLC); the link only reports and listens. Each report (``core.station.LinkReport``) is
one HTTP POST with the station's API key; the answer carries the commands waiting for it
(pause, resume, threshold, switch to a recipe of its table, activate a model version),
whose outcomes go with the next report, and says whether a live view of the station is
open: while one is, the station draws previews and each report brings the picture of its
newest part. The images and heat maps of NG and ERROR parts are uploaded to the server's
blob store once their records are in the database, so the dashboard shows them; a
backlog (after an outage) drains oldest first. A model version is fetched by its SHA-256
and checked before it is used. When the server cannot be reached the station keeps
inspecting; the link says so once, tries again every few seconds, and the next report
that gets through brings the server up to date.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
from collections import deque
from pathlib import Path
from typing import Any

import httpx

from huoyan.core.durable import write_durably
from huoyan.core.recipe import Recipe
from huoyan.core.station import LINK_PARTS, CommandDone, LinkReply, LinkReport, StationCommand, recipe_key
from huoyan.runner.status import draw_preview, ng_rate, part_message, preview_url, station_status
from huoyan.store.blobs import file_sha256

log = logging.getLogger(__name__)
KEY_ENV = "HUOYAN_SERVER_KEY"  # the API key a station reports with (scope 'station')
UPLOADS_PER_REPORT = 16  # NG evidence uploaded after each report: a backlog drains at 16 a second


class ServerLink:
    """Reports the station ``opened`` to the server at ``url`` every ``every_s`` seconds."""

    def __init__(self, opened: Any, recipe: Recipe, url: str, api_key: str, every_s: float = 1.0) -> None:
        self.opened = opened
        self.recipe = recipe
        self.url = url.rstrip("/")
        self.headers = {"X-API-Key": api_key}
        self.every_s = every_s
        self.model_version: int | None = None  # the version the server last had it activate
        self.done: list[CommandDone] = []
        self.connected: bool | None = None  # unknown until the first report
        self._last: deque[str] = deque(maxlen=100)
        self._evidence: deque[str] = deque()  # SHA-256 of NG evidence not uploaded yet, oldest first
        # Decided and raised since the last report, numbered so that a report removes what it told.
        self._numbers = itertools.count(1)
        self._told = 0  # the number of the last part or event a report carried
        self._parts: deque[tuple[int, dict[str, Any]]] = deque(maxlen=LINK_PARTS)
        self._events: deque[tuple[int, Any]] = deque(maxlen=LINK_PARTS)
        self.models_dir = Path(recipe.storage.data_dir) / "models"
        self.watched = False  # a live view is open on the server: previews are drawn
        self._preview: tuple[int, bytes] | None = None  # the newest part's picture, by its number

    def attach(self) -> ServerLink:
        """Follow the station's parts: verdicts for the NG rate, NG evidence to upload."""
        self.opened.station.item_listeners.append(self._on_item)
        self.opened.station.event_listeners.append(lambda event: self._events.append((next(self._numbers), event)))
        return self

    def _on_item(self, item: Any) -> None:
        verdict = item.record.verdict.value
        self._last.append(verdict)
        number = next(self._numbers)
        self._parts.append((number, {**part_message(item.record), "ng_rate": ng_rate(self._last)}))
        if item.preview is not None:
            self._preview = (number, item.preview)
        if verdict != "OK":  # NG and ERROR parts' images and heat maps, for the central dashboard
            self._evidence.extend(item.blobs)

    def report(self) -> LinkReport:
        status = station_status(
            self.opened, self.recipe, running=True, error=None, model_version=self.model_version,
            last_verdicts=self._last,
        )  # fmt: skip
        self._told = max([n for n, _ in self._parts] + [n for n, _ in self._events] + [self._told])
        parts = [p for _, p in self._parts]
        # One picture a report, of its newest part: a second's worth of previews would be megabytes.
        if parts and self._preview is not None and self._preview[0] == self._parts[-1][0]:
            parts[-1] = {**parts[-1], "preview": preview_url(self._preview[1])}
        return LinkReport(status=status, done=list(self.done), parts=parts, events=[e for _, e in self._events])

    def _watch(self, watched: bool) -> None:
        """Draw previews only while the server has the station's live view open."""
        line = getattr(self.opened, "line", None)
        if watched != self.watched and line is not None:
            line.set_preview(draw_preview if watched else None)
            self.watched = watched

    async def run(self) -> None:
        """Report until cancelled (the station's loop ends)."""
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=10.0) as client:
            wait = self.every_s
            while True:
                try:
                    reply = await self._exchange(client)
                    if not self.connected:
                        log.info("reporting to %s", self.url)
                    self.connected, wait = True, self.every_s
                    self._watch(reply.watchers > 0)
                    for command in reply.commands:
                        self.done.append(await self._carry_out(client, command))
                    await self._upload_evidence(client)
                except Exception as exc:  # whatever failed, the station inspects on and reports again
                    if self.connected is not False:
                        log.warning("server %s unreachable (%s); inspecting on, reporting again when it answers",
                                    self.url, exc)  # fmt: skip
                    self.connected = False
                    self._watch(False)  # nobody can watch through a link that is down
                    wait = min(5.0, wait * 2)
                await asyncio.sleep(wait)

    async def _exchange(self, client: httpx.AsyncClient) -> LinkReply:
        sent = self.report()
        answer = await client.post(
            f"/api/remote/stations/{self.recipe.station}/link", content=sent.model_dump_json(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        if answer.status_code != 200:
            raise ValueError(f"the server answered {answer.status_code}: {answer.text[:300]}")
        told = {d.id for d in sent.done}
        self.done = [d for d in self.done if d.id not in told]  # delivered: not told again
        # Shown live now; what was decided or raised meanwhile waits for the next report.
        for queue in (self._parts, self._events):
            while queue and queue[0][0] <= self._told:
                queue.popleft()
        return LinkReply.model_validate_json(answer.content)

    async def _upload_evidence(self, client: httpx.AsyncClient) -> None:
        """Upload up to ``UPLOADS_PER_REPORT`` pieces of NG evidence, oldest first; one whose
        record the server cannot see yet (still in the station's spool) waits for the next round."""
        blobs = self.opened.store.blobs
        for _ in range(UPLOADS_PER_REPORT):
            if not self._evidence:
                return
            sha = self._evidence[0]
            try:
                data = await asyncio.to_thread(blobs.get, sha)
            except FileNotFoundError:
                return  # not written yet: the record is still on its way to the store
            answer = await client.put(f"/api/remote/blobs/{sha}", content=data,
                                      headers={"Content-Type": "application/octet-stream"})  # fmt: skip
            if answer.status_code == 404:
                return  # the record is not in the database yet
            if answer.status_code not in (200, 201, 204):
                raise ValueError(f"evidence {sha[:12]} refused: {answer.status_code} {answer.text[:200]}")
            self._evidence.popleft()

    async def _carry_out(self, client: httpx.AsyncClient, command: StationCommand) -> CommandDone:
        line = self.opened.line
        try:
            if command.action == "pause":
                line.pause()
            elif command.action == "resume":
                line.resume()
            elif command.action == "threshold":
                await line.set_threshold(command.threshold)
            elif command.action == "recipe" and command.recipe:
                await line.prepare_recipe(recipe_key(command.recipe))
            elif command.action == "activate" and command.model is not None:
                path = await self._fetch_model(client, command.model.sha256)
                await line.use_model(path)
                self.model_version = command.model.version
            else:
                raise ValueError(f"command {command.action!r} lacks what it acts on")
        except Exception as exc:  # the outcome goes to the server; the station inspects on
            log.warning("command %s (%s) failed: %s", command.id, command.action, exc)
            return CommandDone(id=command.id, ok=False, error=str(exc) or type(exc).__name__)
        log.info("command %s: %s done", command.id, command.action)
        return CommandDone(id=command.id, ok=True)

    async def _fetch_model(self, client: httpx.AsyncClient, sha256: str) -> Path:
        """The model version's file, fetched once by its digest and checked on arrival."""
        path = self.models_dir / f"{sha256}.safetensors"
        if path.is_file() and await asyncio.to_thread(file_sha256, path) == sha256:
            return path
        answer = await client.get(f"/api/remote/models/{sha256}")
        answer.raise_for_status()
        if hashlib.sha256(answer.content).hexdigest() != sha256:
            raise ValueError(f"model {sha256[:12]} arrived damaged: its SHA-256 differs")
        await asyncio.to_thread(write_durably, path, answer.content)
        return path
