"""Station assembly: a recipe becomes a running station, the one place that joins vision, station and store.

Each stage only knows the core models; this is where a saved detector becomes the
station's model and a ``RecordStore`` its sink, and the line-feedback channels the
recipe enables are opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from huoyan.core.durable import remove_stale_temporaries
from huoyan.core.recipe import Recipe
from huoyan.core.records import StationEvent
from huoyan.detectors import load_station_detector
from huoyan.io.feedback import Channel, LineFeedback, SignalTimes
from huoyan.runner.line import StationLine
from huoyan.runner.recipes import (
    RECORDING_READER,
    StationInspector,
    make_fused_inspector,
    make_inspector,
    store_config,
    window_spec,
    with_threshold,
)
from huoyan.runner.retention_watch import RetentionWatch
from huoyan.runner.rule_watch import RuleWatch
from huoyan.station.drift import DriftWatch
from huoyan.station.fuse import FusedInspector
from huoyan.station.gather import Gathering
from huoyan.station.inspect_signals import SignalInspector
from huoyan.station.pipeline import Station, Stats
from huoyan.station.sources import HttpUpload, PartIds, SeqCounter, Source, make_source
from huoyan.store.audit import AuditLog
from huoyan.store.audit import audit_key as key_of
from huoyan.store.blobs import BlobStore, file_sha256
from huoyan.store.chain import CHECKPOINT_ACTION
from huoyan.store.database import make_engine, resolve_url, upgrade
from huoyan.store.records import UNAVAILABLE, RecordStore, data_paths
from huoyan.store.spool import Spool

log = logging.getLogger(__name__)


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
    audit_key: bytes | None = None,
) -> OpenStation:
    """Load the model (the recipe's, or ``model_path``: a version activated on the server),
    migrate and open the database, register, recover, and build the station. A
    ``threshold`` (raw score, set on the server) replaces the recipe's decision threshold.
    The record chain's checkpoints go to the audit trail under ``audit_key`` (a hosting
    server's), else the key of the recipe's data_dir (``$HUOYAN_AUDIT_KEY`` if set)."""
    base_recipe, recipe = recipe, with_threshold(recipe, threshold)
    model_path = model_path or Path(recipe.model)
    inspector: StationInspector
    if recipe.channels:
        # The server hands over its copy of the recipe's model (a version in its blob store): the same file.
        if model_path != Path(recipe.model) and file_sha256(model_path) != file_sha256(Path(recipe.model)):
            raise ValueError("a station of several channels runs its recipe's models; it takes no other model")
        inspector, config = make_fused_inspector(recipe, runtime)
        model: Any = None
        model_sha = config["model_sha256"]
    else:
        model = load_station_detector(model_path, recipe.detector, runtime)
        model_sha = file_sha256(model_path)
        config = store_config(recipe, model_path, model, model_sha)
        inspector = make_inspector(model, recipe, model_sha)
    data_dir = Path(recipe.storage.data_dir)
    engine = open_database(database_url or recipe, migrate=False)  # migrated below, outage-tolerant
    blobs_dir, spool_dir = data_paths(data_dir)
    # Only the folders whose writers are ours: a hot folder may hold a camera's own temporaries.
    stale = sum(remove_stale_temporaries(f) for f in (blobs_dir, spool_dir, data_dir / "outbox"))
    if stale:
        log.info("removed %d temporary files left by a killed writer in %s", stale, data_dir)
    audit = AuditLog(engine, audit_key or key_of(data_dir))

    def checkpoint(station_id: str, pos: int, sha: str) -> None:
        """The record chain's head, kept in the keyed audit trail: a cut-off tail shows."""
        audit.add(f"station:{station_id}", CHECKPOINT_ACTION, station_id, pos=pos, sha256=sha)

    blobs = BlobStore(blobs_dir)
    store = RecordStore(engine, blobs, Spool(spool_dir / recipe.station), on_checkpoint=checkpoint)
    store.configure(**config)
    try:
        upgrade(engine)
        store.register()
        store.flush()
    except UNAVAILABLE as exc:
        log.error("database not reachable at start (%s); records go to the local spool until it is", exc)
    # Persisted beside the spool: numbers stay unique when the database cannot say which are taken.
    counter = SeqCounter(store.last_seq(recipe.station), path=spool_dir / f"{recipe.station}.seq")
    spec = None if model is None else window_spec(model)
    source = make_source(recipe.source, recipe.station, PartIds(recipe.part_id), counter, spec, RECORDING_READER)
    if recipe.channels:
        source = Gathering(source, recipe.channels, recipe.fusion.wait_s)
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
    for part in inspector.channels.values() if isinstance(inspector, FusedInspector) else [inspector]:
        if isinstance(part, SignalInspector):
            part.on_event = station.emit
    if isinstance(source, HttpUpload):
        station.listeners.append(source.on_record)
    line = StationLine(station, store, recipe, model_sha, runtime)
    line.config = config
    line.base_recipe = base_recipe
    feedback = open_feedback(recipe, line, data_dir, station.emit)
    if feedback.channels:
        station.listeners.append(feedback.on_record)
        station.event_listeners.append(feedback.on_event)
    if recipe.quality.drift and not recipe.channels:

        def current_card(sha: str) -> dict[str, Any] | None:
            """The card of the model the line runs now (a server may activate another)."""
            return line.config.get("model_card") if line.config.get("model_sha256") == sha else None

        station.listeners.append(DriftWatch(recipe.station, station.emit, current_card))
    station.listeners.append(RuleWatch(engine, recipe.station, station.emit))
    rule = recipe.storage.retention
    if rule.ok_days or rule.ng_days:
        station.listeners.append(RetentionWatch(engine, blobs, recipe.station, rule, audit, station.emit))
    card = config["model_card"]
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
