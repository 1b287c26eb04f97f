"""Helpers for the server tests: recipes for hosted stations, users of each role, a live uvicorn."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import uvicorn
from fastapi import FastAPI

from huoyan.core.recipe import Recipe, load_recipe
from huoyan.server.app import create_app
from huoyan.server.platform import Platform, Settings
from huoyan.store.accounts import Role, Scope
from huoyan.store.database import make_engine, upgrade
from linepeers import free_port, wait_for_port

PASSWORD = "correct-horse-1"


def write_recipe(folder: Path, station: str, model: Path, source: str, keep_ok_every: int = 1) -> Recipe:
    """A station recipe; ``source`` is 'http' or a hot-folder path."""
    src = "{type: http}" if source == "http" else f"{{type: hot_folder, path: {source}, settle_ms: 0}}"
    path = folder / f"{station}.yaml"
    path.write_text(
        f"station: {station}\nproduct: washer\nrecipe: washer-top\nversion: '1'\nmodel: {model}\n"
        f"source: {src}\nstorage: {{data_dir: {folder / 'data'}, keep_ok_every: {keep_ok_every}}}\n"
        "part_id: {from: filename, pattern: '^(?P<id>[A-Za-z0-9-]+)'}\n"
    )
    return load_recipe(path)


@dataclass
class Keys:
    """An API key for each role, with every scope: the key acts with its user's whole role."""

    by_role: dict[Role, str] = field(default_factory=dict)

    def headers(self, role: Role) -> dict[str, str]:
        return {"X-API-Key": self.by_role[role]}


def make_platform_app(
    db_url: str, folder: Path, recipes: list[Recipe], train_worker: bool = False, start_platform: bool = True
) -> tuple[FastAPI, Platform, Keys]:
    upgrade(make_engine(db_url))
    settings = Settings(database_url=db_url, data_dir=folder / "data", recipes=recipes, train_worker=train_worker)
    app = create_app(settings, start_platform)
    p: Platform = app.state.platform
    keys = Keys()
    for role in Role:
        p.accounts.add_user(role.value, PASSWORD, role)
        keys.by_role[role] = p.accounts.add_api_key(role.value, f"{role.value} test key", [Scope.ADMIN])[1]
    return app, p, keys


def make_platform_app_again(db_url: str, folder: Path, recipes: list[Recipe]) -> tuple[FastAPI, Platform]:
    """A second server on the same database and folder (a restart): users and keys are there."""
    settings = Settings(database_url=db_url, data_dir=folder / "data", recipes=recipes, train_worker=False)
    app = create_app(settings)
    return app, app.state.platform


def png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@contextlib.contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """The app on a real uvicorn server on loopback; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
