"""Everything an auditor checks in one pass: the account audit trail, and each station's
record and review chains against the checkpoints that (verified) trail holds. What
``huoyan audit verify`` prints and the dashboard's admin page shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
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


@dataclass
class Verification:
    """The audit trail, and each station's record and review chains against the
    checkpoints that (verified) trail holds."""

    audit: ChainCheck
    records: list[ChainReport]
    reviews: list[ChainReport]

    @property
    def intact(self) -> bool:
        return self.audit.intact and all(r.intact for r in [*self.records, *self.reviews])

    def as_dict(self) -> dict[str, Any]:
        return {"intact": self.intact, **asdict(self)}


def verify_all(engine: Engine, audit: AuditLog, station: str | None = None) -> Verification:
    review_marks = audit.details(REVIEW_CHECKPOINT_ACTION)
    records, reviews = [], []
    for st in [station] if station else stations(engine):
        marks = [(int(d["pos"]), str(d["sha256"])) for d in audit.details(CHECKPOINT_ACTION, st)]
        records.append(verify_station(engine, st, marks))
        marks = [(int(d["pos"]), str(d["sha256"])) for d in review_marks if d.get("station") == st and d.get("pos")]
        reviews.append(verify_reviews(engine, st, marks))
    return Verification(audit.verify(), records, reviews)
