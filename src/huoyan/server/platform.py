"""What the server's routes share: the database, the stores over it, and the hosted stations.

One ``Platform`` per app, kept on ``app.state``; routes receive it through the
``platform`` dependency. Starting it migrates the database and starts the hosted
stations and the training worker; stopping it drains the stations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from sqlalchemy import Engine, text

from huoyan.core.detector import Fitter, fit_here
from huoyan.core.recipe import Recipe
from huoyan.core.station import StationHandle
from huoyan.server.hosting import StationHost
from huoyan.server.live import LiveHub
from huoyan.server.metrics import Metrics, snapshot
from huoyan.server.remote import RemoteStation
from huoyan.server.throttle import LoginThrottle
from huoyan.server.training import Trainer
from huoyan.store.accounts import Accounts
from huoyan.store.audit import AuditLog, audit_key
from huoyan.store.blobs import BlobStore
from huoyan.store.database import make_engine, upgrade
from huoyan.store.records import UNAVAILABLE, data_paths
from huoyan.store.reviews import Reviews
from huoyan.store.versions import ModelVersions

log = logging.getLogger(__name__)


@dataclass
class Settings:
    database_url: str
    data_dir: Path
    recipes: list[Recipe] = field(default_factory=list)
    runtime: str = "onnx"
    batch_size: int = 8
    secure_cookies: bool = False
    session_hours: float = 12.0
    train_worker: bool = True
    box_key: Path | None = None  # this plant's X25519 key, to open packages sealed for it
    fitter: Fitter = fit_here  # where retraining jobs fit (huoyan.scale.training.RayFitter: a Ray cluster)


class Platform:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: Engine = make_engine(settings.database_url)
        self.accounts = Accounts(self.engine, settings.session_hours)
        self.audit = AuditLog(self.engine, audit_key(settings.data_dir))
        self.reviews = Reviews(self.engine)
        self.versions = ModelVersions(self.engine)
        self.hub = LiveHub()
        self.throttle = LoginThrottle()
        self.metrics = Metrics(lambda: [snapshot(h.status()) for h in self.hosts.values()])
        # Evidence the server keeps itself, and every model version's artifact, by sha256.
        self.blobs = BlobStore(data_paths(settings.data_dir)[0])
        self.hosts: dict[str, StationHandle] = {}
        for recipe in settings.recipes:
            if recipe.station in self.hosts:
                raise ValueError(f"two recipes for station {recipe.station!r}: host each station once")
            self.hosts[recipe.station] = StationHost(
                recipe,
                self.hub,
                self.metrics,
                self.versions,
                self.blobs,
                settings.database_url,
                settings.runtime,
                settings.batch_size,
                audit_key=audit_key(settings.data_dir),
            )
        self.hub.on_watchers = self._watchers
        self.trainer = Trainer(
            self.versions, self.reviews, lambda: self.hosts, self.blobs, settings.data_dir / "models", settings.runtime,
            fitter=settings.fitter,
        )  # fmt: skip

    def _watchers(self, station: str, count: int) -> None:
        host = self.hosts.get(station)
        if host is not None:
            host.watch(count)

    def join_remote(self, station_id: str) -> StationHandle:
        """A station on another PC reporting for the first time: one of this server's stations from now on."""
        host = RemoteStation(station_id, lambda kind, payload: self.hub.publish(station_id, kind, payload))
        return self.hosts.setdefault(station_id, host)  # two first reports at once: one handle

    def start(self) -> None:
        try:
            upgrade(self.engine)
        except UNAVAILABLE as exc:
            # Stations still start and spool; the API answers 503 until the database is back.
            log.error("database unavailable at start (%s)", str(exc).splitlines()[0])
        for host in self.hosts.values():
            host.start()
        if self.settings.train_worker:
            self.trainer.start()

    def stop(self) -> None:
        self.trainer.stop()
        for host in self.hosts.values():
            host.stop()

    def blob(self, station_id: str, sha256: str) -> bytes:
        """A piece of evidence by its hash: from the station that kept it, else the server's store."""
        host = self.hosts.get(station_id)
        if host is not None:
            try:
                return host.blob(sha256)
            except FileNotFoundError:
                pass
        return self.blobs.get(sha256)

    def database_ok(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False


def platform(request: Request) -> Platform:
    """FastAPI dependency: the app's platform."""
    p: Platform = request.app.state.platform
    return p
