"""The audit trail: who did what and when, refused attempts included, in a hash chain.

Each entry's sha256 covers its own content and the previous entry's hash. Editing,
inserting or deleting a row in the middle breaks every later link, which
``verify_chain`` reports. (Deleting the newest rows is only caught against a hash
kept elsewhere, for example one printed into a shift report.)
"""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from huoyan.core.records import utcnow
from huoyan.store.records import as_utc
from huoyan.store.schema import AuditRow

GENESIS = "0" * 64


def _digest(prev: str, at: datetime, actor: str, action: str, target: str, outcome: str, detail: Any) -> str:
    body = json.dumps(
        [prev, as_utc(at).isoformat(), actor, action, target, outcome, detail], sort_keys=True, default=str
    )
    return hashlib.sha256(body.encode()).hexdigest()


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()  # one writer per process keeps the chain linear

    def add(self, actor: str, action: str, target: str = "", outcome: str = "ok", **detail: Any) -> str:
        # Microseconds are dropped: not every database keeps them, and the hash must
        # come out the same when the row is read back.
        at = utcnow().replace(microsecond=0)
        with self._lock, Session(self.engine) as s, s.begin():
            last = s.scalar(select(AuditRow.sha256).order_by(AuditRow.id.desc()).limit(1).with_for_update())
            prev = last or GENESIS
            clean = json.loads(json.dumps(detail, default=str))
            digest = _digest(prev, at, actor, action, target, outcome, clean)
            s.add(
                AuditRow(
                    at=at,
                    actor=actor,
                    action=action,
                    target=target,
                    outcome=outcome,
                    detail=clean,
                    prev_sha256=prev,
                    sha256=digest,
                )
            )
        return digest

    def entries(self, limit: int = 200, offset: int = 0, actor: str | None = None) -> list[dict[str, Any]]:
        stmt = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit).offset(offset)
        if actor:
            stmt = stmt.where(AuditRow.actor == actor)
        with Session(self.engine) as s:
            return [
                {
                    "id": r.id,
                    "at": as_utc(r.at),
                    "actor": r.actor,
                    "action": r.action,
                    "target": r.target,
                    "outcome": r.outcome,
                    "detail": r.detail,
                    "sha256": r.sha256,
                }
                for r in s.scalars(stmt)
            ]

    def verify_chain(self) -> tuple[bool, int | None]:
        """(True, None) if every link holds, else (False, id of the first bad entry)."""
        prev = GENESIS
        with Session(self.engine) as s:
            for r in s.scalars(select(AuditRow).order_by(AuditRow.id)):
                expected = _digest(prev, r.at, r.actor, r.action, r.target, r.outcome, r.detail)
                if r.prev_sha256 != prev or r.sha256 != expected:
                    return False, r.id
                prev = r.sha256
        return True, None
