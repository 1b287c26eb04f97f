"""A durable on-disk queue for records and events while the database is unreachable.

Each entry is one JSON file written with ``write_durably``; names sort in arrival
order. Entries are removed only after the database has committed them, and the store
inserts idempotently, so a crash between commit and removal repeats nothing.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from huoyan.core.models import Verdict
from huoyan.store.files import fsync_dir, write_durably


class Spool:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._counter = itertools.count()
        # One station owns its spool folder, so the count is kept here rather than
        # globbing the folder on every write.
        self._size = sum(1 for _ in self.folder.glob("*.json"))

    def append(self, kind: str, payload: dict[str, Any]) -> Path:
        name = f"{time.time_ns():020d}-{next(self._counter):06d}-{kind}.json"
        path = self.folder / name
        write_durably(path, json.dumps({"kind": kind, "payload": payload}).encode())
        self._size += 1
        return path

    def entries(self) -> Iterator[tuple[Path, str, dict[str, Any]]]:
        for path in sorted(self.folder.glob("*.json")):
            entry = json.loads(path.read_bytes())
            yield path, entry["kind"], entry["payload"]

    def __len__(self) -> int:
        return self._size

    def keys(self) -> dict[str, Verdict]:
        """Idempotency keys and verdicts of spooled records, answered while the database is away."""
        return {p["key"]: Verdict(p["verdict"]) for _, kind, p in self.entries() if kind == "record"}

    def remove(self, path: Path) -> None:
        if path.exists():
            path.unlink()
            self._size -= 1
        fsync_dir(self.folder)
