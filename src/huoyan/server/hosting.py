"""Stations run inside the server: each on a thread with its own event loop.

``StationHost`` is the in-process ``core.station.StationHandle``: the server drives
every station through that protocol only. The host opens the station exactly as
``huoyan run`` does (``runner.open_station``), with the model version the server last
activated for it (taken from the blob store by sha256), and listens to it: each
decided part goes to the live view and the metrics, each alarm too. Model activation
and uploads cross into the station's loop thread-safely.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huoyan.core.recipe import Recipe
from huoyan.core.records import InspectionRecord, Severity, StationEvent, StoredRecord
from huoyan.core.station import ModelVersionRef, StationStatus, recipe_key
from huoyan.core.text import Message
from huoyan.runner import OpenStation, open_station, run_station
from huoyan.runner.status import draw_preview, ng_rate, part_message, preview_url, station_status, threshold_of
from huoyan.server.live import LiveHub
from huoyan.server.metrics import Metrics
from huoyan.station.sources import HttpUpload, SourceBusy
from huoyan.store.blobs import BlobStore, file_sha256
from huoyan.store.records import UNAVAILABLE, data_paths
from huoyan.store.versions import ModelVersions, artifact_of

log = logging.getLogger(__name__)
RESTART_MAX_S = 30.0
NG_WINDOW = 100


class StationHost:
    def __init__(
        self,
        recipe: Recipe,
        hub: LiveHub,
        metrics: Metrics,
        versions: ModelVersions,
        artifacts: BlobStore,
        database_url: str,
        runtime: str = "onnx",
        batch_size: int = 8,
        audit_key: bytes | None = None,
    ) -> None:
        self.recipe = recipe
        self.audit_key = audit_key  # the server's: the station's chain checkpoints go to the same trail
        self._station_id = recipe.station
        self.artifacts = artifacts  # model versions, by sha256
        self.hub = hub
        self.metrics = metrics
        self.versions = versions
        self.database_url = database_url
        self.runtime = runtime
        self.batch_size = batch_size
        self.blobs = BlobStore(data_paths(Path(recipe.storage.data_dir))[0])
        self.opened: OpenStation | None = None
        self.model_version: int | None = None
        self.error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._last: deque[str] = deque(maxlen=NG_WINDOW)
        self._started_loop = threading.Event()
        self._stopping = threading.Event()
        self._watchers = 0  # live-view subscribers, kept across a restart

    @property
    def station_id(self) -> str:
        return self._station_id

    @property
    def max_image_pixels(self) -> int:
        return self.recipe.preprocess.max_image_pixels

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        self.opened = self._open()
        self._thread = threading.Thread(target=self._run, name=f"station-{self.station_id}", daemon=True)
        self._thread.start()
        self._started_loop.wait(30)

    def _open(self) -> OpenStation:
        """Open the station as ``huoyan run`` does, with the model version last activated."""
        try:
            active = self.versions.active(self.station_id)
        except UNAVAILABLE as exc:
            # The station runs without its database (records spool); the recipe's model judges.
            log.error("station %s: database unavailable (%s); using the recipe's model", self.station_id, exc)
            active = None
        model_path = None
        if active is not None:
            try:
                model_path = artifact_of(active, self.artifacts)
            except FileNotFoundError as exc:
                log.error("station %s: %s; using the recipe's model", self.station_id, exc)
                active = None
        threshold = self._kept_threshold(active)
        opened = open_station(
            self.recipe,
            self.database_url,
            self.batch_size,
            self.runtime,
            model_path=model_path,
            threshold=threshold,
            audit_key=self.audit_key,
        )
        if active is None:  # the recipe's own model: kept as version 1 (or the version it already is)
            try:
                self.artifacts.put_file(Path(self.recipe.model), opened.model_sha256)
            except OSError as exc:  # a full disk: the station runs; activating it later reads the recipe's path
                log.error("station %s: cannot keep the recipe's model in the blob store (%s)", self.station_id, exc)
        try:
            self.model_version = active["version"] if active else self._recipe_model_version(opened)
        except UNAVAILABLE:
            self.model_version = None
        opened.station.item_listeners.append(self._on_item)
        opened.station.event_listeners.append(self._on_event)
        if opened.line is not None and self._watchers:  # reopened after a fault while watched
            opened.line.set_preview(draw_preview)
        return opened

    def _recipe_model_version(self, opened: OpenStation) -> int | None:
        """The version number of the recipe's model, registered as version 1 if the station
        has none. A station whose active version's file is gone runs the recipe's model:
        its status then names that model's version (if it is one), not the active one."""
        recipe_model = Path(self.recipe.model)
        current = self.versions.ensure_initial(
            self.station_id,
            opened.model_sha256,
            recipe_model.name,
            opened.model_card or {},
            str(recipe_model.resolve()),
        )
        if current["model_sha256"] == opened.model_sha256:
            return int(current["version"])
        return self.versions.number_of(self.station_id, opened.model_sha256)

    def _kept_threshold(self, active: dict[str, Any] | None) -> float | None:
        """The threshold an engineer set, if it still belongs to this recipe version and model."""
        try:
            kept = self.versions.threshold_override(self.station_id)
        except UNAVAILABLE:
            return None
        if kept is None:
            return None
        model_sha = active["model_sha256"] if active else file_sha256(Path(self.recipe.model))
        same = (kept["recipe_id"], kept["base_version"], kept["model_sha256"]) == (
            self.recipe.recipe,
            self.recipe.version,
            model_sha,
        )
        if not same:
            log.warning("station %s: threshold set for another recipe version or model; not applied", self.station_id)
            return None
        return float(kept["threshold"])

    def _run(self) -> None:
        """Run the station; if it fails, tell the line, wait, open it afresh and go on,
        until ``stop``. A failure must not leave the server without its station."""

        def on_start(loop: asyncio.AbstractEventLoop) -> None:
            self._loop = loop
            self.error = None
            self._started_loop.set()

        failures = 0
        while not self._stopping.is_set():
            try:
                if self.opened is None:
                    self.opened = self._open()
                run_station(self.opened, status=None, on_start=on_start)
                return
            except Exception as exc:
                failures += 1
                self._loop = None
                self.error = f"station stopped: {exc}; restarting"
                log.exception("station %s stopped; restarting it", self.station_id)
                if self.opened is not None and isinstance(self.opened.source, HttpUpload):
                    self.opened.source.fail_pending(
                        Message("the station stopped before this part was recorded ({reason})", reason=str(exc))
                    )
                self.opened = None
                self._on_event(
                    StationEvent(
                        station_id=self.station_id,
                        kind="station-restarted",
                        severity=Severity.ALARM,
                        message=f"the station stopped ({exc}) and is being restarted",
                    )
                )
                self._stopping.wait(min(RESTART_MAX_S, 0.5 * 2 ** min(failures, 6)))
            finally:
                self._loop = None
                self._started_loop.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        loop, opened = self._loop, self.opened
        if loop is not None and opened is not None:
            loop.call_soon_threadsafe(opened.station.stop)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._loop is not None

    # -- listeners (station threads) ---------------------------------------------------------
    def _on_item(self, item: StoredRecord) -> None:
        r = item.record
        self._last.append(r.verdict.value)
        self.metrics.part(self.station_id, r.verdict.value, r.latency_ms)
        payload = part_message(r)
        payload["ng_rate"] = ng_rate(self._last)
        if item.preview is not None:
            payload["preview"] = preview_url(item.preview)
        self.hub.publish(self.station_id, "part", payload)

    def _on_event(self, event: StationEvent) -> None:
        if event.severity == Severity.ALARM and event.active:
            self.metrics.alarm(self.station_id, event.kind)
        self.hub.publish(self.station_id, "alarm", event.model_dump(mode="json"))

    def watch(self, watchers: int) -> None:
        """Draw previews only while someone watches the live view."""
        self._watchers = watchers
        if self.opened is not None and self.opened.line is not None:
            self.opened.line.set_preview(draw_preview if watchers else None)

    # -- state ----------------------------------------------------------------------------
    def status(self) -> StationStatus:
        return station_status(
            self.opened,
            self.recipe,
            running=self.running,
            error=self.error,
            model_version=self.model_version,
            last_verdicts=self._last,
        )

    def threshold(self) -> float | None:
        return threshold_of(self.opened)

    def blob(self, sha256: str) -> bytes:
        return self.blobs.get(sha256)

    # -- actions ----------------------------------------------------------------------------
    def submit(
        self, data: bytes, name: str, part_id: str | None, lot: str | None = None
    ) -> concurrent.futures.Future[InspectionRecord]:
        source = self.opened.source if self.opened else None
        if not isinstance(source, HttpUpload):
            raise TypeError(
                Message(
                    "station {station} takes parts from its {source} source",
                    station=self.station_id,
                    source=self.recipe.source.type,
                )
            )
        if not self.running:
            raise SourceBusy(Message("station {station} is not running", station=self.station_id))
        return source.submit(data, name, part_id, lot)

    def _running_line(self) -> tuple[asyncio.AbstractEventLoop, Any]:
        """The station's loop and line controller, or RuntimeError when it is not running."""
        loop, opened = self._loop, self.opened
        if loop is None or opened is None or opened.line is None:
            raise RuntimeError(Message("station {station} is not running", station=self.station_id))
        return loop, opened.line

    async def _on_line(self, work: Callable[[Any], Any]) -> Any:
        """``work(line)`` done on the station's own loop, between parts (awaited there when it
        is a coroutine), and its result awaited here."""
        loop, line = self._running_line()

        async def run() -> Any:
            result = work(line)
            return await result if inspect.isawaitable(result) else result

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), loop))

    async def activate(self, model: ModelVersionRef) -> None:
        """Switch the running station to a model version, read from the blob store by sha256."""
        self._running_line()
        path = self.artifacts.path(model.sha256)
        if not path.is_file():
            raise FileNotFoundError(
                Message(
                    "model version {version} ({digest}) is not in the model store",
                    version=model.version,
                    digest=model.sha256[:12],
                )
            )
        if await asyncio.to_thread(file_sha256, path) != model.sha256:
            raise ValueError(
                Message("the model store's copy of version {version} does not match its sha256", version=model.version)
            )
        start = time.perf_counter()
        await self._on_line(lambda line: line.use_model(path))
        self.model_version = model.version
        took = time.perf_counter() - start
        log.info("station %s: model version %s active (%.1f s)", self.station_id, model.version, took)

    async def pause(self) -> None:
        await self._on_line(lambda line: line.pause())

    async def resume(self) -> None:
        await self._on_line(lambda line: line.resume())

    async def switch_recipe(self, recipe: str) -> None:
        await self._on_line(lambda line: line.prepare_recipe(recipe_key(recipe)))

    async def set_threshold(self, threshold: float | None, by: str) -> None:
        """Decide at this raw-score threshold from the next part on (None: the calibrated one)."""
        _, line = self._running_line()
        info = await self._on_line(lambda line: line.set_threshold(threshold))
        base = line.base_recipe
        if threshold is None:
            self.versions.clear_threshold_override(self.station_id)
        else:
            self.versions.set_threshold_override(
                self.station_id, base.recipe, base.version, info.model_sha256, threshold, by
            )
