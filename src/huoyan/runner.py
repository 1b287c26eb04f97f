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

from huoyan.core.recipe import Recipe
from huoyan.core.records import StationEvent
from huoyan.station.inspect import Inspector
from huoyan.station.pipeline import Station, Stats
from huoyan.station.sources import PartIds, SeqCounter, Source, make_source
from huoyan.store.blobs import BlobStore
from huoyan.store.database import make_engine, resolve_url, upgrade
from huoyan.store.records import UNAVAILABLE, RecordStore, data_paths
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


def open_station(
    recipe: Recipe,
    database_url: str | None = None,
    batch_size: int = 8,
    runtime: str = "onnx",
    on_event: Callable[[StationEvent], None] | None = None,
) -> OpenStation:
    """Load the model, migrate and open the database, register, recover, and build the station."""
    model_path = Path(recipe.model)
    model = PatchCore.load(model_path, runtime=runtime).prepare()
    model_sha = file_sha256(model_path)
    data_dir = Path(recipe.storage.data_dir)
    engine = open_database(database_url or recipe, migrate=False)  # migrated below, outage-tolerant
    blobs_dir, spool_dir = data_paths(data_dir)
    store = RecordStore(engine, BlobStore(blobs_dir), Spool(spool_dir / recipe.station))
    store.configure(
        station_id=recipe.station,
        product=recipe.product,
        recipe_id=recipe.recipe,
        recipe_version=recipe.version,
        recipe_sha256=recipe.content_sha256(),
        recipe_body=recipe.model_dump(mode="json", by_alias=True),
        model_sha256=model_sha,
        model_name=model_path.name,
        model_card=model.card_.model_dump(mode="json") if model.card_ else {},
    )
    try:
        upgrade(engine)
        store.register()
        store.flush()
    except UNAVAILABLE as exc:
        log.error("database not reachable at start (%s); records go to the local spool until it is", exc)
    counter = SeqCounter(store.last_seq(recipe.station))
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
    return OpenStation(station, store, source, engine, model_sha)


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
        return await opened.station.run(idle_exit, max_parts, status, status_every)

    stats = asyncio.run(main())
    if status is print_status and sys.stderr.isatty():
        sys.stderr.write("\n")
    summary = stats.summary()
    summary["spooled"] = len(opened.store.spool)
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
