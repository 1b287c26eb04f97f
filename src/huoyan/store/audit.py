"""The audit trail: who did what and when, refused attempts included, in a keyed hash chain.

Each entry's sha256 covers its own content and the previous entry's hash, so editing,
inserting or deleting a row in the middle breaks every later link. A hash chain alone
can be recomputed by anyone who can write to the database, so each entry also carries
an HMAC-SHA256 of its hash under a key kept outside the database
(``$HUOYAN_AUDIT_KEY``, else a key file made on first use in the data folder). A
single-row head holds the number of entries and the newest hash, MACed too: deleting
the newest rows no longer goes unnoticed, and the head's row lock makes every writer,
in every process, append in turn (PostgreSQL queues on the row lock, SQLite on its
write lock), so the chain never forks.

Entries written before the chain was keyed carry no MAC; they are still linked, and
``verify`` says where the keyed part begins. To notice a wholesale rollback to an
older copy of the database, record the head (``huoyan audit verify`` prints it) in a
shift report or another system now and then.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from huoyan.core.durable import write_durably
from huoyan.core.records import utcnow
from huoyan.store.records import as_utc
from huoyan.store.schema import AuditHeadRow, AuditRow

log = logging.getLogger(__name__)
GENESIS = "0" * 64
KEY_ENV = "HUOYAN_AUDIT_KEY"
KEY_FILE = Path("secrets") / "audit.key"
HEAD_ID = 1


def audit_key(data_dir: Path) -> bytes:
    """The chain's key: ``$HUOYAN_AUDIT_KEY``, else ``<data_dir>/secrets/audit.key``, made
    (readable by its owner only) on first use. Every process that writes to one database's
    trail needs the same key: set the variable where several hosts share a database."""
    from_env = os.environ.get(KEY_ENV)
    if from_env:
        return from_env.encode()
    path = data_dir / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_durably(path, secrets.token_hex(32).encode())
        os.chmod(path, 0o600)
        log.warning("made a new audit key in %s; set %s to share one key between hosts", path, KEY_ENV)
    return path.read_bytes().strip()


def _digest(prev: str, at: datetime, actor: str, action: str, target: str, outcome: str, detail: Any) -> str:
    body = json.dumps(
        [prev, as_utc(at).isoformat(), actor, action, target, outcome, detail], sort_keys=True, default=str
    )
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    """What ``AuditLog.verify`` found."""

    intact: bool
    entries: int
    head_sha256: str
    first_bad_id: int | None = None
    keyed_from_id: int | None = None
    problem: str | None = None


class AuditLog:
    def __init__(self, engine: Engine, key: bytes) -> None:
        self.engine = engine
        self._key = key
        self._lock = threading.Lock()  # one writer per process at a time; the head row does the rest

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def _head_mac(self, entries: int, last_id: int | None, last_sha256: str) -> str:
        return self._mac(f"head:{entries}:{last_id}:{last_sha256}")

    def add(self, actor: str, action: str, target: str = "", outcome: str = "ok", **detail: Any) -> str:
        # Microseconds are dropped: not every database keeps them, and the hash must
        # come out the same when the row is read back.
        at = utcnow().replace(microsecond=0)
        clean = json.loads(json.dumps(detail, default=str))
        with self._lock, Session(self.engine) as s, s.begin():
            # The first statement writes the head: this transaction now holds the head
            # until commit, so a concurrent writer reads the head this one leaves.
            bumped = s.execute(
                update(AuditHeadRow)
                .where(AuditHeadRow.id == HEAD_ID)
                .values(entries=AuditHeadRow.entries + 1)
                .returning(AuditHeadRow.entries, AuditHeadRow.last_sha256)
            ).one_or_none()
            if bumped is None:
                raise RuntimeError("the audit head is missing: run `huoyan db upgrade`")
            entries, prev = bumped
            digest = _digest(prev, at, actor, action, target, outcome, clean)
            row = AuditRow(
                at=at,
                actor=actor,
                action=action,
                target=target,
                outcome=outcome,
                detail=clean,
                prev_sha256=prev,
                sha256=digest,
                mac=self._mac(digest),
            )
            s.add(row)
            s.flush()
            s.execute(
                update(AuditHeadRow)
                .where(AuditHeadRow.id == HEAD_ID)
                .values(
                    last_id=row.id,
                    last_sha256=digest,
                    mac=self._head_mac(entries, row.id, digest),
                    updated_at=utcnow(),
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

    def details(self, action: str, target: str | None = None) -> list[dict[str, Any]]:
        """The detail of every entry of this action (on this target, if given), oldest first."""
        stmt = select(AuditRow.detail).where(AuditRow.action == action).order_by(AuditRow.id)
        if target is not None:
            stmt = stmt.where(AuditRow.target == target)
        with Session(self.engine) as s:
            return [d or {} for d in s.scalars(stmt)]

    def sha_at(self, n: int) -> str | None:
        """The hash of the n-th entry (from 1), None if the trail is shorter."""
        stmt = select(AuditRow.sha256).order_by(AuditRow.id).offset(n - 1).limit(1)
        with Session(self.engine) as s:
            return s.scalar(stmt) if n >= 1 else None

    def verify(self) -> ChainCheck:
        """Walk the chain from the first entry: links, MACs (every entry from the first
        keyed one on), and the head (count, newest hash, its MAC)."""
        prev, count, last_id, keyed_from = GENESIS, 0, None, None
        with Session(self.engine) as s:
            for r in s.execute(select(AuditRow).order_by(AuditRow.id).execution_options(yield_per=1000)).scalars():
                expected = _digest(prev, r.at, r.actor, r.action, r.target, r.outcome, r.detail)
                problem = None
                if r.prev_sha256 != prev or r.sha256 != expected:
                    problem = "entry edited, inserted or removed (the hash chain breaks here)"
                elif r.mac is not None and not hmac.compare_digest(r.mac, self._mac(r.sha256)):
                    problem = "entry's MAC does not match (rewritten without the audit key, or another key)"
                elif r.mac is None and keyed_from is not None:
                    problem = "unkeyed entry after keyed ones (written without the audit key)"
                if problem is not None:
                    return ChainCheck(False, count, prev, r.id, keyed_from, problem)
                if r.mac is not None and keyed_from is None:
                    keyed_from = r.id
                prev, count, last_id = r.sha256, count + 1, r.id
            head = s.get(AuditHeadRow, HEAD_ID)
        if head is None:
            return ChainCheck(False, count, prev, None, keyed_from, "the audit head is missing")
        if (head.entries, head.last_sha256) != (count, prev):
            return ChainCheck(
                False,
                count,
                prev,
                None,
                keyed_from,
                f"the head says {head.entries} entries ending in {head.last_sha256[:12]}, the log has {count} "
                f"ending in {prev[:12]}: entries were removed from the end (or the head was edited)",
            )
        if head.mac is None and keyed_from is not None:
            return ChainCheck(False, count, prev, None, keyed_from, "the head carries no MAC")
        if head.mac is not None and not hmac.compare_digest(head.mac, self._head_mac(count, last_id, prev)):
            return ChainCheck(False, count, prev, None, keyed_from, "the head's MAC does not match")
        return ChainCheck(True, count, prev, None, keyed_from)
