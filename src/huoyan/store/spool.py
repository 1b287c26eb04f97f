"""A durable on-disk queue for records and events while the database is unreachable.

Entries are removed only after the database has committed them, and the store
inserts idempotently, so a crash between commit and removal repeats nothing.
"""

from __future__ import annotations

from pathlib import Path

from huoyan.core.durable import DurableQueue
from huoyan.core.models import Verdict


class Spool(DurableQueue):
    """The outage spool, with ``rejected``: entries the database refused for their content
    (kept for an engineer to look at, never dropped)."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__(folder)
        self.rejected = DurableQueue(self.folder / "rejected")

    def keys(self) -> dict[str, Verdict]:
        """Idempotency keys and verdicts of spooled records, answered while the database is away."""
        return {p["key"]: Verdict(p["verdict"]) for _, kind, p in self.entries() if kind == "record"}
