"""Slows password guessing at the login route without locking the real user out.

Failures count per (user name, address). The first ``free`` failures of a pair cost
nothing; each further one doubles the wait before that pair may try again (1 s, 2 s,
4 s … up to ``max_delay_s``). A guesser at another address therefore never delays the
real admin at theirs, right password included. Per address alone, ``address_limit``
failures within ``window_s`` refuse further attempts from it (any user name) until the
oldest leaves the window: one machine cannot sweep through many user names. A success
clears its pair. Kept in the server's memory: a restart forgets it, which costs a
guesser a restart of the server they cannot reach.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass
class _Pair:
    failures: int = 0
    last: float = 0.0


class LoginThrottle:
    def __init__(
        self,
        free: int = 3,
        base_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        address_limit: int = 30,
        window_s: float = 900.0,
    ) -> None:
        self.free = free
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.address_limit = address_limit
        self.window_s = window_s
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._addresses: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        q = self._addresses.setdefault(address, deque())
        while q and now - q[0] > self.window_s:
            q.popleft()
        return q

    def _delay(self, failures: int) -> float:
        """The wait after ``failures`` failures of one pair."""
        over = failures - self.free
        return 0.0 if over <= 0 else min(self.max_delay_s, self.base_delay_s * 2.0 ** (over - 1))

    def wait_s(self, username: str, address: str) -> float:
        """Seconds until ``username`` may try again from ``address`` (0: now)."""
        now = time.monotonic()
        with self._lock:
            waits = []
            pair = self._pairs.get((username, address))
            if pair is not None and now - pair.last > self.window_s:
                del self._pairs[(username, address)]  # forgotten after a quiet window
            elif pair is not None:
                waits.append(pair.last + self._delay(pair.failures) - now)
            recent = self._recent(address, now)
            if len(recent) >= self.address_limit:
                waits.append(self.window_s - (now - recent[0]))
        return max([0.0, *waits])

    def failed(self, username: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            pair = self._pairs.setdefault((username, address), _Pair())
            pair.failures += 1
            pair.last = now
            self._recent(address, now).append(now)

    def succeeded(self, username: str, address: str) -> None:
        with self._lock:
            self._pairs.pop((username, address), None)
