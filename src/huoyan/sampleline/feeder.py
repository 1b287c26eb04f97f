"""Feeds a folder's images into a hot folder at a fixed rate, as a camera or PLC client would.

The demo, `huoyan feed` and the station benchmark use it to play a line: each image is
written under a temporary name and renamed, so the station never sees half a file.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path


def feed_folder(
    files: Iterable[Path],
    inbox: Path,
    rate: float,
    stop: threading.Event | None = None,
    on_visible: Callable[[str], None] | None = None,
) -> int:
    """Copy images into a hot folder at ``rate`` per second, each written under a temporary
    name and renamed, as a well-behaved camera or PLC client would. Returns the count."""
    inbox.mkdir(parents=True, exist_ok=True)
    period = 1.0 / rate
    due = time.monotonic()
    n = 0
    for i, src in enumerate(files):
        if stop is not None and stop.is_set():
            break
        time.sleep(max(0.0, due - time.monotonic()))
        due += period
        name = f"{i:06d}_{src.parent.name}_{src.name}"
        tmp = inbox / f".{name}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, inbox / name)
        if on_visible is not None:
            on_visible(name)
        n += 1
    return n
