"""Progress of long work (a fit's feature extraction and coreset), told to whoever listens
without the work knowing who: the CLI's progress bar listens while it runs ``fit``, and
nothing listens on a station. A listener is set for the current context only, so threads
and tasks that run other work are not reported on.

Reporting costs a context-variable read per call: call it per batch or every few hundred
steps, not per row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# stage (e.g. "features"), steps done, steps in the stage
Listener = Callable[[str, int, int], None]
_listener: ContextVar[Listener | None] = ContextVar("huoyan_progress", default=None)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Report the progress of work done inside the ``with`` to ``listener``."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def report(stage: str, done: int, total: int) -> None:
    listener = _listener.get()
    if listener is not None:
        listener(stage, done, total)
