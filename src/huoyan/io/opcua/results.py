"""The results an OPC UA client can fetch again: the most recent ones, and those it holds.

OPC 40100-1 7.10: GetResultById, GetResultComponentsById and GetResultListFiltered return
a ResultHandle; until the client calls ReleaseResultHandle with it, the results behind it
stay available. Huoyan keeps the newest ``keep`` results in memory (the records database
has them all) and never drops one that a handle holds. A client that never releases
cannot exhaust memory: past ``max_handles`` the oldest handle is released.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

# When a client asks for "no limit" (MaxResults 0), one answer still stays a sensible size.
MAX_LIST = 1000


class HeldResults:
    def __init__(self, keep: int, max_handles: int = 256) -> None:
        self.keep = keep
        self.max_handles = max_handles
        self._results: OrderedDict[str, Any] = OrderedDict()
        self._handles: OrderedDict[int, set[str]] = OrderedDict()
        self._numbers = itertools.count(1)

    def add(self, key: str, result: Any) -> None:
        self._results[key] = result
        self._results.move_to_end(key)
        if len(self._results) > self.keep:
            held = set().union(*self._handles.values()) if self._handles else set()
            for old in [k for k in self._results if k not in held][: len(self._results) - self.keep]:
                del self._results[old]

    def get(self, key: str) -> Any | None:
        return self._results.get(key)

    def newest_first(self) -> Iterator[Any]:
        return reversed(self._results.values())

    def hold(self, keys: list[str]) -> int:
        """A new handle on these results (the Handle data type is a UInt32 above 0)."""
        handle = next(self._numbers)
        self._handles[handle] = set(keys)
        while len(self._handles) > self.max_handles:
            oldest, _ = self._handles.popitem(last=False)
            log.warning("opcua: result handle %d released: more than %d held", oldest, self.max_handles)
        return handle

    def release(self, handle: int) -> bool:
        return self._handles.pop(handle, None) is not None

    def page(self, match: Callable[[Any], bool], start: int, limit: int) -> tuple[list[Any], bool]:
        """Matching results, newest first, from ``start``; and whether that is the end of the list."""
        limit = min(limit or MAX_LIST, MAX_LIST)
        matching = (r for r in self.newest_first() if match(r))
        window = list(itertools.islice(matching, start, start + limit + 1))
        return window[:limit], len(window) <= limit
