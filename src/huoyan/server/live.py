"""The live view's fan-out: station threads publish, browser connections (SSE) subscribe.

Stations run on threads of their own; each subscriber is an asyncio queue on the
server's loop, fed with ``call_soon_threadsafe``. A browser that cannot keep up loses
parts from its own queue rather than slowing the line or growing memory. The last few
parts are kept so a page that opens shows something at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SUBSCRIBER_QUEUE = 100
BACKLOG = 12


@dataclass
class _Channel:
    recent: deque[tuple[str, dict[str, Any]]] = field(default_factory=lambda: deque(maxlen=BACKLOG))
    subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[tuple[str, dict[str, Any]]]]] = field(
        default_factory=set
    )


class LiveHub:
    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}
        self._lock = threading.Lock()
        # Told (station, watcher count) when a station gains its first or loses its last
        # watcher, so stations draw previews only while someone looks.
        self.on_watchers: Callable[[str, int], None] | None = None

    def _channel(self, station: str) -> _Channel:
        return self._channels.setdefault(station, _Channel())

    def publish(self, station: str, kind: str, payload: dict[str, Any]) -> None:
        """Thread-safe; ``kind`` 'part' messages are kept in the backlog."""
        with self._lock:
            channel = self._channel(station)
            if kind == "part":
                channel.recent.append((kind, payload))
            targets = list(channel.subscribers)
        for loop, queue in targets:
            with contextlib.suppress(RuntimeError):  # that loop has closed: its subscriber is gone
                loop.call_soon_threadsafe(_offer, queue, (kind, payload))

    def watchers(self, station: str) -> int:
        with self._lock:
            return len(self._channel(station).subscribers)

    def subscribe(self, station: str) -> Subscription:
        """Start receiving one station's messages now: the backlog first, then each new one.
        Registration is immediate, so nothing published after this call is missed."""
        sub = Subscription(self, station, asyncio.get_running_loop())
        with self._lock:
            channel = self._channel(station)
            for message in channel.recent:
                sub.queue.put_nowait(message)
            channel.subscribers.add(sub.entry)
            count = len(channel.subscribers)
        self._tell(station, count)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            channel = self._channel(sub.station)
            channel.subscribers.discard(sub.entry)
            count = len(channel.subscribers)
        self._tell(sub.station, count)

    def _tell(self, station: str, count: int) -> None:
        if self.on_watchers is not None:
            self.on_watchers(station, count)


class Subscription:
    def __init__(self, hub: LiveHub, station: str, loop: asyncio.AbstractEventLoop) -> None:
        self.hub = hub
        self.station = station
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.entry = (loop, self.queue)

    async def get(self) -> tuple[str, dict[str, Any]]:
        return await self.queue.get()

    def close(self) -> None:
        self.hub.unsubscribe(self)


def _offer(queue: asyncio.Queue[tuple[str, dict[str, Any]]], message: tuple[str, dict[str, Any]]) -> None:
    if queue.full():
        queue.get_nowait()  # drop this subscriber's oldest message, not the line's time
    queue.put_nowait(message)


def sse(kind: str, payload: dict[str, Any]) -> str:
    """One Server-Sent Events message."""
    return f"event: {kind}\ndata: {json.dumps(payload, default=str)}\n\n"
