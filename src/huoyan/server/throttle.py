"""Slows password guessing at the login route.

After ``limit`` failed logins for one key (a user name, an address) within
``window_s``, further attempts for it are refused (429) until the oldest failure
leaves the window; a success clears the key's count. Kept in the server's memory:
a restart forgets it, which costs a guesser a restart of the server they cannot reach.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class LoginThrottle:
    def __init__(self, limit: int = 5, window_s: float = 900.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and now - q[0] > self.window_s:
            q.popleft()
        return q

    def wait_s(self, *keys: str) -> float:
        """Seconds until any of ``keys`` may try again (0: now)."""
        now = time.monotonic()
        with self._lock:
            waits = [self.window_s - (now - q[0]) for k in keys if len(q := self._recent(k, now)) >= self.limit]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for k in keys:
                self._recent(k, now).append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
