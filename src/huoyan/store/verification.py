"""Everything an auditor checks in one pass: the account audit trail, and each station's
record and review chains against the checkpoints that (verified) trail holds. What
``huoyan audit verify`` prints and the dashboard's admin page shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine

from huoyan.store.audit import AuditLog, ChainCheck
from huoyan.store.chain import (
    CHECKPOINT_ACTION,
    REVIEW_CHECKPOINT_ACTION,
    ChainReport,
    stations,
    verify_reviews,
    verify_station,
)

Mark = tuple[int, str]  # a position in a chain and the hash it must have there


@dataclass
class Marks:
    """Heads from outside the database (a signed checkpoint) that the chains must pass through."""

    audit: list[Mark] = field(default_factory=list)  # (entries, the newest entry's hash)
    records: dict[str, list[Mark]] = field(default_factory=dict)
    reviews: dict[str, list[Mark]] = field(default_factory=dict)


@dataclass
class Verification:
    """The audit trail, and each station's record and review chains against the
    checkpoints that (verified) trail holds and any given from outside."""

    audit: ChainCheck
    records: list[ChainReport]
    reviews: list[ChainReport]
    marks: list[str] = field(default_factory=list)  # the audit trail against outside marks

    @property
    def intact(self) -> bool:
        return self.audit.intact and not self.marks and all(r.intact for r in [*self.records, *self.reviews])

    def as_dict(self) -> dict[str, Any]:
        return {"intact": self.intact, **asdict(self)}


def _audit_marks(audit: AuditLog, entries: int, marks: list[Mark]) -> list[str]:
    problems = []
    for n, sha in marks:
        if n == 0:  # signed while the trail was empty: nothing to pass through
            continue
        if n > entries:
            problems.append(f"the audit trail has {entries} entries, but a checkpoint says {n}: entries were removed")
        elif audit.sha_at(n) != sha:
            problems.append(f"audit entry {n} differs from the checkpoint: the trail was rewritten")
    return problems


def verify_all(
    engine: Engine, audit: AuditLog, station: str | None = None, outside: Marks | None = None
) -> Verification:
    outside = outside or Marks()
    review_marks = audit.details(REVIEW_CHECKPOINT_ACTION)
    records, reviews = [], []
    named = set(outside.records) | set(outside.reviews)  # a station deleted whole is still looked for
    for st in [station] if station else sorted(set(stations(engine)) | named):
        marks = [(int(d["pos"]), str(d["sha256"])) for d in audit.details(CHECKPOINT_ACTION, st)]
        records.append(verify_station(engine, st, marks + outside.records.get(st, [])))
        marks = [(int(d["pos"]), str(d["sha256"])) for d in review_marks if d.get("station") == st and d.get("pos")]
        reviews.append(verify_reviews(engine, st, marks + outside.reviews.get(st, [])))
    check = audit.verify()
    return Verification(check, records, reviews, _audit_marks(audit, check.entries, outside.audit))
