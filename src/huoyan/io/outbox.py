"""A channel's disk-backed outbox: messages are delivered in order, at least once, across outages.

``put`` never blocks the station: it hands the message to the outbox thread, which
first makes it durable (``DurableQueue``) and then delivers the oldest message until
the peer accepts it, backing off while the peer is unreachable. A message leaves the
disk only once delivered, so a broker or receiver that is down for an hour, or a
station restart in between, loses nothing. A delivery whose acknowledgement was lost
can repeat; messages carry ``key`` and ``seq`` so that consumers can drop repeats.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huoyan.core.durable import DurableQueue, write_durably

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """The peer did not take the message this time; it will be tried again."""


class Rejected(Exception):
    """The peer refused the message for good (a 4xx answer): it is set aside, not retried forever."""


Deliver = Callable[[str, dict[str, Any]], None]
Delivered = Callable[[str, dict[str, Any]], None]


class Outbox:
    def __init__(
        self,
        name: str,
        folder: Path,
        deliver: Deliver,
        on_delivered: Delivered | None = None,
        on_state: Callable[[bool, str], None] | None = None,
        first_backoff_s: float = 0.2,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.name = name
        self.queue = DurableQueue(folder)
        self.deliver = deliver
        self.on_delivered = on_delivered
        self.on_state = on_state
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self._incoming: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        self._pending: deque[tuple[Path, str, dict[str, Any]]] = deque(self.queue.entries())
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._healthy = True
        self._drain_s = 2.0

    def __len__(self) -> int:
        return len(self._pending) + self._incoming.qsize()

    def put(self, kind: str, payload: dict[str, Any]) -> None:
        self._incoming.put((kind, payload))
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"huoyan-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, drain_s: float = 2.0) -> None:
        """Persist everything handed over; try to deliver for up to ``drain_s``; the rest waits on disk."""
        self._drain_s = drain_s
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=drain_s + 5)

    def _persist_incoming(self) -> None:
        while True:
            try:
                kind, payload = self._incoming.get_nowait()
            except queue.Empty:
                return
            path = self.queue.append(kind, payload)
            self._pending.append((path, kind, payload))

    def _set_health(self, healthy: bool, why: str) -> None:
        if healthy != self._healthy:
            self._healthy = healthy
            if self.on_state is not None:
                self.on_state(healthy, why)

    def _run(self) -> None:
        backoff = self.first_backoff_s
        deadline: float | None = None
        while True:
            self._persist_incoming()
            if self._stop.is_set():
                if deadline is None:
                    deadline = time.monotonic() + self._drain_s
                if not self._pending or time.monotonic() >= deadline:
                    return
            if not self._pending:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            path, kind, payload = self._pending[0]
            try:
                self.deliver(kind, payload)
            except Rejected as exc:
                log.error("%s: message rejected (%s); kept in %s", self.name, exc, self.queue.folder / "rejected")
                write_durably(self.queue.folder / "rejected" / path.name, path.read_bytes())
                self._pending.popleft()
                self.queue.remove(path)
                if self.on_state is not None:
                    self.on_state(False, f"{self.name}: a message was rejected ({exc}); see rejected/")
                continue
            except DeliveryError as exc:
                self._set_health(False, f"{self.name}: {exc}; {len(self)} messages queued on disk")
                log.warning("%s: delivery failed (%s); retrying in %.1f s", self.name, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            except Exception:  # a bug must not kill the thread and strand the queue
                log.exception("%s: delivery raised; retrying", self.name)
                self._stop.wait(backoff)
                continue
            backoff = self.first_backoff_s
            self._pending.popleft()
            self.queue.remove(path)
            self._set_health(True, f"{self.name}: delivering again")
            if self.on_delivered is not None:
                self.on_delivered(kind, payload)
