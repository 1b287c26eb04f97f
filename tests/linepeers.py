"""Helpers for the line-feedback tests: free ports, a station running in a thread, a Mosquitto broker."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from huoyan.runner import OpenStation, run_station


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port}")


async def until(predicate: Any, timeout: float = 15.0, every: float = 0.02) -> None:
    """Wait until ``predicate()`` (plain or awaitable) is true, or raise TimeoutError."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        ok = predicate()
        if inspect.isawaitable(ok):
            ok = await ok
        if ok:
            return
        if loop.time() > end:
            raise TimeoutError("condition not met")
        await asyncio.sleep(every)


@contextlib.contextmanager
def station_thread(opened: OpenStation, port: int | None = None) -> Iterator[dict[str, Any]]:
    """Run the station (and its feedback servers) on a thread; stop and join on exit."""
    started = threading.Event()
    box: dict[str, Any] = {}

    def on_start(loop: asyncio.AbstractEventLoop) -> None:
        box["loop"] = loop
        started.set()

    def run() -> None:
        box["summary"] = run_station(opened, status=None, on_start=on_start)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30)
    if port is not None:
        wait_for_port(port)
    try:
        yield box
    finally:
        box["loop"].call_soon_threadsafe(opened.station.stop)
        thread.join(60)
        assert not thread.is_alive()


class Mosquitto:
    """A private Mosquitto broker on loopback, with persistence, that a test can stop and start."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            if os.environ.get("CI"):
                pytest.fail("mosquitto is not installed; scripts/test.sh installs it")
            pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.port = free_port()
        self.root = root
        (root / "data").mkdir(parents=True, exist_ok=True)
        self.conf = root / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {root / 'data'}/\n"
            "autosave_interval 1\n" + ("user root\n" if os.geteuid() == 0 else "")
            # As root, mosquitto would switch to its own user, who cannot write the persistence file here.
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
