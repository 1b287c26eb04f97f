"""Builds a running station from a recipe: the one module that joins vision, station and store.

Each stage only knows the core models; this is where a ``PatchCore`` becomes the
station's engine and a ``RecordStore`` its sink. The CLI, the demo and the station
benchmark all start stations through ``open_station`` so they run the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from huoyan.core.control import RecipeInfo, RecipeSwitchError
from huoyan.core.durable import remove_stale_temporaries
from huoyan.core.recipe import Recipe, RecipeError, load_recipe
from huoyan.core.records import StationEvent
from huoyan.io.feedback import Channel, LineFeedback, SignalTimes
from huoyan.station.inspect import Inspector, Previewer
from huoyan.station.pipeline import Station, Stats
from huoyan.station.sources import Camera, HttpUpload, PartIds, SeqCounter, Source, make_source
from huoyan.store.blobs import BlobStore
from huoyan.store.database import make_engine, resolve_url, upgrade
from huoyan.store.records import UNAVAILABLE, RecipeConflict, RecordStore, data_paths
from huoyan.store.spool import Spool
from huoyan.vision.imageio import decode_image
from huoyan.vision.patchcore import PatchCore

log = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def open_database(recipe_or_url: Recipe | str | None, migrate: bool = True) -> Engine:
    """The engine for a recipe (its URL, $HUOYAN_DATABASE_URL or SQLite in its data_dir)."""
    if isinstance(recipe_or_url, Recipe):
        url = resolve_url(recipe_or_url.storage.database, recipe_or_url.storage.data_dir)
    else:
        url = resolve_url(recipe_or_url)
    engine = make_engine(url)
    if migrate:
        upgrade(engine)
    return engine


@dataclass
class OpenStation:
    station: Station
    store: RecordStore
    source: Source
    engine: Engine
    model_sha256: str
    line: StationLine | None = None
    feedback: LineFeedback | None = None
    model_path: Path | None = None
    model_card: dict[str, Any] | None = None


def recipe_config(recipe: Recipe) -> dict[str, Any]:
    """The recipe half of what the record store registers."""
    return {
        "station_id": recipe.station,
        "product": recipe.product,
        "recipe_id": recipe.recipe,
        "recipe_version": recipe.version,
        "recipe_sha256": recipe.content_sha256(),
        "recipe_body": recipe.model_dump(mode="json", by_alias=True),
    }


def with_threshold(recipe: Recipe, threshold: float | None) -> Recipe:
    """``recipe`` deciding at a fixed raw-score threshold (None: the model's calibrated one),
    as a derived version so that every record names the threshold rule that decided it."""
    if threshold is None:
        return recipe
    decision = recipe.decision.model_copy(update={"threshold": float(threshold)})
    return recipe.model_copy(update={"decision": decision, "version": f"{recipe.version}+threshold={threshold:.6g}"})


def store_config(recipe: Recipe, model_path: Path, model: PatchCore, model_sha: str) -> dict[str, Any]:
    """What the record store registers for a recipe and its model."""
    return {
        **recipe_config(recipe),
        "model_sha256": model_sha,
        "model_name": model_path.name,
        "model_card": model.card_.model_dump(mode="json") if model.card_ else {},
    }


class StationLine:
    """``LineControl`` for a running station: triggers, pause/resume and recipe switches.

    The recipe table comes from the recipe's ``feedback.recipes``; each entry must be
    for the same station and source (a switch changes what is judged and how, not where
    parts come from). A switch pauses intake, waits for the parts in flight, loads the
    new model, registers recipe and model with the store and resumes.
    """

    def __init__(self, station: Station, store: RecordStore, recipe: Recipe, model_sha: str, runtime: str) -> None:
        self.station = station
        self.store = store
        self.recipe = recipe
        self.base_recipe = recipe  # without a threshold set on the line
        self.config: dict[str, Any] = {}  # what the store was last told (set by open_station)
        self.runtime = runtime
        self.table = {slot.index: Path(slot.file) for slot in recipe.feedback.recipes}
        self.catalogue = self._read_table()
        self._active = self._info(recipe, model_sha)
        self._lock = asyncio.Lock()
        self.preview: Previewer | None = None

    def _read_table(self) -> dict[int, Recipe]:
        """The table's recipes, read once at start (a switch reads its file again); bad entries are logged."""
        out = {}
        for index, path in self.table.items():
            try:
                out[index] = load_recipe(path)
            except RecipeError as exc:
                log.warning("recipe table entry %d: %s", index, exc)
        return out

    def _index_of(self, recipe: Recipe) -> int:
        for index, other in self.catalogue.items():
            if other.recipe == recipe.recipe and other.version == recipe.version:
                return index
        return 0

    def _info(self, recipe: Recipe, model_sha: str, index: int | None = None) -> RecipeInfo:
        return RecipeInfo(
            index=self._index_of(recipe) if index is None else index,
            recipe_id=recipe.recipe,
            version=recipe.version,
            product=recipe.product,
            sha256=recipe.content_sha256(),
            model_sha256=model_sha,
        )

    @property
    def triggerable(self) -> bool:
        src = self.station.source
        return isinstance(src, Camera) and src.cfg.mode == "trigger"

    def trigger(self, payload: dict[str, Any]) -> None:
        if not isinstance(self.station.source, Camera):
            raise RuntimeError("this station's source takes no triggers")
        self.station.source.trigger(payload)

    def pause(self) -> None:
        self.station.pause()

    def resume(self) -> None:
        self.station.resume()

    def active_recipe(self) -> RecipeInfo:
        return self._active

    def recipes(self) -> list[RecipeInfo]:
        out = {self._active.index: self._active} if self._active.index == 0 else {}
        for index, r in self.catalogue.items():
            out[index] = self._active if index == self._active.index else self._info(r, "", index)
        return list(out.values())

    def _find(self, key: str | int) -> tuple[int, Path]:
        if isinstance(key, int):
            if key in self.table:
                return key, self.table[key]
            raise RecipeSwitchError(f"no recipe with index {key} in this station's table")
        for index, r in self.catalogue.items():
            if (key.startswith("product:") and r.product == key[8:]) or r.recipe == key:
                return index, self.table[index]
        raise RecipeSwitchError(f"no recipe {key!r} in this station's table")

    def _load(self, path: Path) -> tuple[Recipe, Inspector, dict[str, Any]]:
        try:
            recipe = load_recipe(path)
        except RecipeError as exc:
            raise RecipeSwitchError(str(exc)) from exc
        if recipe.station != self.recipe.station or recipe.source != self.recipe.source:
            raise RecipeSwitchError(f"{path}: a recipe switch keeps the station id and the source")
        return (recipe, *self._load_model(recipe, Path(recipe.model)))

    def _load_model(self, recipe: Recipe, model_path: Path) -> tuple[Inspector, dict[str, Any]]:
        try:
            model = PatchCore.load(model_path, runtime=self.runtime).prepare()
        except (OSError, ValueError) as exc:
            raise RecipeSwitchError(f"cannot load model {model_path}: {exc}") from exc
        sha = file_sha256(model_path)
        inspector = Inspector(model, recipe, sha, decode_image, preview=self.preview)
        return inspector, store_config(recipe, model_path, model, sha)

    async def _swap(self, recipe: Recipe, inspector: Inspector, config: dict[str, Any]) -> None:
        """Pause intake, wait for the parts in flight, switch store and inspector, resume."""
        was_paused = self.station.paused
        self.station.pause()
        try:
            while self.station.in_flight:
                await asyncio.sleep(0.005)
            try:
                await asyncio.to_thread(self.store.switch, **config)
            except RecipeConflict as exc:
                raise RecipeSwitchError(str(exc)) from exc
            self.station.use(inspector)
            self.recipe = recipe
            self.config = config
        finally:
            if not was_paused:
                self.station.resume()

    async def prepare_recipe(self, key: str | int) -> RecipeInfo:
        async with self._lock:
            index, path = self._find(key)
            recipe, inspector, config = await asyncio.to_thread(self._load, path)
            await self._swap(recipe, inspector, config)
            self.base_recipe = recipe
            self._active = self._info(recipe, config["model_sha256"], index)
            log.info("recipe switched to %s v%s (index %d)", recipe.recipe, recipe.version, index)
            return self._active

    async def use_model(self, model_path: Path) -> str:
        """Judge from now on with another model under the same recipe (a model version
        activated or rolled back); returns the model's sha256."""
        async with self._lock:
            # A threshold set on the line is a raw score of the old model: the new one
            # decides at its own calibrated threshold.
            recipe = self.base_recipe
            inspector, config = await asyncio.to_thread(self._load_model, recipe, model_path)
            await self._swap(recipe, inspector, config)
            self._active = self._info(self.recipe, config["model_sha256"], self._active.index)
            log.info("model switched to %s (%s)", model_path, config["model_sha256"][:12])
            return str(config["model_sha256"])

    async def set_threshold(self, threshold: float | None) -> RecipeInfo:
        """Decide at ``threshold`` (a raw score) from the next part on, or at the model's
        calibrated threshold again (None). Registered as a derived recipe version."""
        async with self._lock:
            current = self.station.inspector
            if not isinstance(current, Inspector):
                raise RecipeSwitchError("this station's inspector takes no threshold")
            recipe = with_threshold(self.base_recipe, threshold)
            inspector = Inspector(current.engine, recipe, current.model_sha256, current.decode, preview=self.preview)
            await self._swap(recipe, inspector, {**self.config, **recipe_config(recipe)})
            self._active = self._info(recipe, current.model_sha256, self._active.index)
            log.info("threshold set to %s (recipe version %s)", threshold or "calibrated", recipe.version)
            return self._active

    def set_preview(self, preview: Previewer | None) -> None:
        """Draw live-view previews from now on (or stop, with None)."""
        self.preview = preview
        inspector = self.station.inspector
        if isinstance(inspector, Inspector):
            inspector.preview = preview


def open_feedback(
    recipe: Recipe, line: StationLine, data_dir: Path, emit: Callable[[StationEvent], None]
) -> LineFeedback:
    """The line-feedback channels the recipe enables (imported only when used)."""
    fb = recipe.feedback
    times = SignalTimes()
    channels: list[Channel] = []
    outboxes = data_dir / "outbox" / recipe.station
    if fb.opcua is not None:
        from huoyan.io.opcua.server import OpcUaChannel

        channels.append(OpcUaChannel(fb.opcua, recipe.station, line, times, data_dir))
    if fb.modbus is not None:
        from huoyan.io.modbus import ModbusChannel

        channels.append(ModbusChannel(fb.modbus, line, times))
    if fb.mqtt is not None:
        from huoyan.io.mqtt import MqttChannel

        channels.append(MqttChannel(fb.mqtt, recipe.station, fb.plant, fb.line, outboxes / "mqtt", times, emit))
    if fb.webhook is not None:
        from huoyan.io.webhook import WebhookChannel

        channels.append(WebhookChannel(fb.webhook, recipe.station, outboxes / "webhook", times, emit))
    return LineFeedback(fb.plant, fb.line, channels, times)


def open_station(
    recipe: Recipe,
    database_url: str | None = None,
    batch_size: int = 8,
    runtime: str = "onnx",
    on_event: Callable[[StationEvent], None] | None = None,
    model_path: Path | None = None,
    threshold: float | None = None,
) -> OpenStation:
    """Load the model (the recipe's, or ``model_path``: a version activated on the server),
    migrate and open the database, register, recover, and build the station. A
    ``threshold`` (raw score, set on the server) replaces the recipe's decision threshold."""
    base_recipe, recipe = recipe, with_threshold(recipe, threshold)
    model_path = model_path or Path(recipe.model)
    model = PatchCore.load(model_path, runtime=runtime).prepare()
    model_sha = file_sha256(model_path)
    data_dir = Path(recipe.storage.data_dir)
    engine = open_database(database_url or recipe, migrate=False)  # migrated below, outage-tolerant
    blobs_dir, spool_dir = data_paths(data_dir)
    # Only the folders whose writers are ours: a hot folder may hold a camera's own temporaries.
    stale = sum(remove_stale_temporaries(f) for f in (blobs_dir, spool_dir, data_dir / "outbox"))
    if stale:
        log.info("removed %d temporary files left by a killed writer in %s", stale, data_dir)
    store = RecordStore(engine, BlobStore(blobs_dir), Spool(spool_dir / recipe.station))
    store.configure(**store_config(recipe, model_path, model, model_sha))
    try:
        upgrade(engine)
        store.register()
        store.flush()
    except UNAVAILABLE as exc:
        log.error("database not reachable at start (%s); records go to the local spool until it is", exc)
    # Persisted beside the spool: numbers stay unique when the database cannot say which are taken.
    counter = SeqCounter(store.last_seq(recipe.station), path=spool_dir / f"{recipe.station}.seq")
    source = make_source(recipe.source, recipe.station, PartIds(recipe.part_id), counter)
    inspector = Inspector(model, recipe, model_sha, decode_image)
    station = Station(
        recipe.station,
        source,
        inspector,
        store,
        data_dir,
        batch_size=batch_size,
        min_free_mb=recipe.storage.min_free_mb,
    )
    store.on_event = station.note if on_event is None else on_event
    if isinstance(source, HttpUpload):
        station.listeners.append(source.on_record)
    line = StationLine(station, store, recipe, model_sha, runtime)
    line.config = store_config(recipe, model_path, model, model_sha)
    line.base_recipe = base_recipe
    feedback = open_feedback(recipe, line, data_dir, station.emit)
    if feedback.channels:
        station.listeners.append(feedback.on_record)
        station.event_listeners.append(feedback.on_event)
    card = model.card_.model_dump(mode="json") if model.card_ else {}
    return OpenStation(station, store, source, engine, model_sha, line, feedback, model_path, card)


def print_status(stats: Stats) -> None:
    line = stats.line()
    if sys.stderr.isatty():
        width = shutil.get_terminal_size((120, 20)).columns
        sys.stderr.write("\r" + line[: width - 1].ljust(width - 1))
    else:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run_station(
    opened: OpenStation,
    idle_exit: float | None = None,
    max_parts: int | None = None,
    status: Callable[[Stats], None] | None = print_status,
    status_every: float = 1.0,
    on_start: Callable[[asyncio.AbstractEventLoop], None] | None = None,
) -> dict[str, Any]:
    """Run in the foreground; SIGTERM and Ctrl-C stop intake and drain in-flight parts."""

    async def main() -> Stats:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(sig, opened.station.stop)
        if on_start is not None:
            on_start(loop)
        feedback = opened.feedback
        if feedback is not None:
            await feedback.start()
        try:
            return await opened.station.run(idle_exit, max_parts, status, status_every)
        finally:
            if feedback is not None:
                await feedback.stop()

    try:
        stats = asyncio.run(main())
    finally:
        opened.source.counter.close()
    if status is print_status and sys.stderr.isatty():
        sys.stderr.write("\n")
    summary = stats.summary()
    summary["spooled"] = len(opened.store.spool)
    if opened.feedback is not None and opened.feedback.channels:
        summary["signal_latency_ms"] = opened.feedback.times.summary()
    return summary


def feed_folder(
    files: Iterable[Path],
    inbox: Path,
    rate: float,
    stop: threading.Event | None = None,
    on_visible: Callable[[str], None] | None = None,
) -> int:
    """Copy images into a hot folder at ``rate`` per second, each written under a temporary
    name and renamed, as a well-behaved camera or PLC client would. Returns the count."""
    inbox.mkdir(parents=True, exist_ok=True)
    period = 1.0 / rate
    due = time.monotonic()
    n = 0
    for i, src in enumerate(files):
        if stop is not None and stop.is_set():
            break
        time.sleep(max(0.0, due - time.monotonic()))
        due += period
        name = f"{i:06d}_{src.parent.name}_{src.name}"
        tmp = inbox / f".{name}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, inbox / name)
        if on_visible is not None:
            on_visible(name)
        n += 1
    return n
