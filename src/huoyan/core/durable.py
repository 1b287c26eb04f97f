"""Durable files and an on-disk FIFO: the one place that knows how to make data survive a crash.

The record store's outage spool and the line-feedback outboxes (MQTT, webhook) both
queue work on disk until a peer takes it, so they share ``DurableQueue``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ``write_durably``'s temporary names: .<name>.<pid>.<thread>.tmp
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.\d+\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_stale_temporaries(folder: Path) -> int:
    """Delete the temporary files that writers killed mid-write left under ``folder``
    (their process is gone, so the rename never came); returns how many."""
    removed = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            m = _TEMPORARY.match(name)
            if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
                try:
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
                except FileNotFoundError:
                    continue
    return removed


def write_durably(path: Path, data: bytes | Path) -> None:
    """Write ``data`` (bytes, or a file's content, copied in pieces) to a temporary name,
    fsync, rename, fsync the folder: readers see all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        if isinstance(data, Path):
            with open(data, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
        else:
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class DurableQueue:
    """A FIFO of JSON entries, one fsynced file each; names sort in the order they were added.

    An entry is removed only after its consumer has finished with it, so a crash
    in between repeats it rather than losing it: consumers must be idempotent.
    One process owns a queue folder, so the length is counted here rather than
    listing the folder on every append.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._size = sum(1 for _ in self.folder.glob("*.json"))

    def append(self, kind: str, payload: dict[str, Any]) -> Path:
        with self._lock:
            name = f"{time.time_ns():020d}-{next(self._counter):06d}-{kind}.json"
        path = self.folder / name
        write_durably(path, json.dumps({"kind": kind, "payload": payload}).encode())
        with self._lock:
            self._size += 1
        return path

    def entries(self) -> Iterator[tuple[Path, str, dict[str, Any]]]:
        for path in sorted(self.folder.glob("*.json")):
            try:
                entry = json.loads(path.read_bytes())
            except FileNotFoundError:
                continue  # removed by the consumer while we listed
            yield path, entry["kind"], entry["payload"]

    def __len__(self) -> int:
        return self._size

    def remove(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            return
        with self._lock:
            self._size -= 1
        fsync_dir(self.folder)
