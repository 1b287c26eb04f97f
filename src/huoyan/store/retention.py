"""Retention: old parts' evidence files leave the blob store by rule; the records stay.

A record's rows (verdict, scores, regions, the digests of its evidence) are small, and
they are the part's audit trail: they are never removed here, and the record chain still
verifies afterwards, since it covers each evidence file's digest, not its bytes. What
fills a station's disk is the evidence itself (images, heat maps, signal windows), so
that is what ``apply_retention`` removes: the blobs of one station's records that arrived
before the recipe's cutoff (``storage.retention``: OK parts, and NG or ERROR parts, each
with a period of their own). It keeps

- the evidence of reviewed parts (a person's judgement rests on it, and reviews feed
  retraining);
- every blob still referenced by evidence that has not expired: the store is
  content-addressed, so the same bytes may belong to several records, of any station;
- model artifacts and the images a model version of the station was trained on;
- a blob stored again within the last day (``BlobStore.put`` renews its time): a record
  being stored now, or waiting in a station's spool through a database outage, never
  loses the bytes it references. (Such bytes, identical to an expired part's, stay
  until a later part holding them expires.)

Each run carries on from the cutoffs where the one before stopped (kept in the plant
settings), so it reads only the records that expired since; a run that fails part-way
is repeated whole by the next one. Every run that removed something leaves an audit
entry with its counts, and ``removed_before`` lets the dashboard tell a file removed by
the rule from one that went missing.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, exists, func, not_, or_, select
from sqlalchemy.orm import Session

from huoyan.core.models import Verdict
from huoyan.core.recipe import Retention
from huoyan.store.audit import AuditLog
from huoyan.store.blobs import BlobStore
from huoyan.store.records import as_utc
from huoyan.store.schema import EvidenceRow, InspectionRow, ModelRow, ModelVersionRow, ReviewRow
from huoyan.store.settings import read_setting, update_setting

ACTION = "evidence-retention"
PAGE = 2000  # evidence rows per query: their digests go into IN lists
STORED_AGAIN_S = 86400.0  # a blob stored again this recently is in use (see above)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RetentionReport:
    """What one run did (or, dry, would do) for one station."""

    station_id: str
    dry_run: bool
    ok_before: datetime | None  # OK parts that arrived before this lose their evidence
    ng_before: datetime | None
    records: int  # records whose evidence expired in this run
    blobs_removed: int
    bytes_removed: int
    blobs_kept: int  # still referenced elsewhere, a model's, or stored again meanwhile
    blobs_missing: int  # gone already

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("ok_before", "ng_before"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


def _setting_key(station_id: str) -> str:
    # Station ids run to 128 characters, setting keys to 64.
    return "retention:" + hashlib.sha256(station_id.encode()).hexdigest()[:40]


def removed_before(engine: Engine, station_id: str) -> dict[Verdict, datetime]:
    """How far retention has gone for a station: records of each verdict that arrived
    before the time given (and were not reviewed) have had their evidence removed."""
    value = read_setting(engine, _setting_key(station_id)) or {}
    done = {k: datetime.fromisoformat(str(v)) for k, v in value.items() if k in ("ok", "ng") and v}
    out = {Verdict.OK: done["ok"]} if "ok" in done else {}
    if "ng" in done:
        out |= {Verdict.NG: done["ng"], Verdict.ERROR: done["ng"]}
    return out


def _expired(
    station_id: str, ok: tuple[datetime, datetime] | None, ng: tuple[datetime, datetime] | None
) -> ColumnElement[bool]:
    """Records of the station that arrived in the window of their verdict and were never reviewed."""
    windows = []
    if ok is not None:
        windows.append(
            and_(
                InspectionRow.verdict == Verdict.OK.value,
                InspectionRow.arrived_at >= ok[0],
                InspectionRow.arrived_at < ok[1],
            )
        )
    if ng is not None:
        windows.append(
            and_(
                InspectionRow.verdict != Verdict.OK.value,
                InspectionRow.arrived_at >= ng[0],
                InspectionRow.arrived_at < ng[1],
            )
        )
    reviewed = exists().where(ReviewRow.inspection_id == InspectionRow.id)
    return and_(InspectionRow.station_id == station_id, or_(*windows), not_(reviewed))


def _protected(s: Session, station_id: str) -> set[str]:
    """Blobs no rule removes: model artifacts and the station's models' training images."""
    keep = set(s.scalars(select(ModelRow.sha256)))
    for trained_on in s.scalars(select(ModelVersionRow.trained_on).where(ModelVersionRow.station_id == station_id)):
        images = (trained_on or {}).get("image_sha256")
        if isinstance(images, list):
            keep.update(str(sha) for sha in images)
    return keep


def apply_retention(
    engine: Engine,
    blobs: BlobStore,
    station_id: str,
    rule: Retention,
    now: datetime | None = None,
    dry_run: bool = False,
    audit: AuditLog | None = None,
    actor: str = "retention",
) -> RetentionReport:
    """Remove the evidence of the station's records that expired under ``rule`` since the last run."""
    in_use_since = time.time() - STORED_AGAIN_S
    now = now or datetime.now(UTC)
    ok_before = now - timedelta(days=rule.ok_days) if rule.ok_days else None
    ng_before = now - timedelta(days=rule.ng_days) if rule.ng_days else None
    done = removed_before(engine, station_id)
    ok = (done.get(Verdict.OK, _EPOCH), ok_before) if ok_before else None
    ng = (done.get(Verdict.NG, _EPOCH), ng_before) if ng_before else None
    # Any record that is not expired keeps its blobs, whatever its station or verdict.
    live = not_(
        _expired(station_id, (_EPOCH, ok_before) if ok_before else None, (_EPOCH, ng_before) if ng_before else None)
    )
    records = removed = freed = kept = missing = 0
    if ok or ng:
        expired = _expired(station_id, ok, ng)
        with Session(engine) as s:
            protected = _protected(s, station_id)
            records = s.scalar(select(func.count()).select_from(InspectionRow).where(expired)) or 0
            seen: set[str] = set()  # a digest met again on a later page was decided already
            last_id = 0
            while page := s.execute(
                select(EvidenceRow.id, EvidenceRow.sha256)
                .join(InspectionRow, InspectionRow.id == EvidenceRow.inspection_id)
                .where(expired, EvidenceRow.id > last_id)
                .order_by(EvidenceRow.id)
                .limit(PAGE)
            ).all():
                last_id = page[-1][0]
                digests = {sha for _, sha in page} - seen
                seen |= digests
                kept += len(digests & protected)
                digests -= protected
                still_used = set(
                    s.scalars(
                        select(EvidenceRow.sha256)
                        .join(InspectionRow, InspectionRow.id == EvidenceRow.inspection_id)
                        .where(EvidenceRow.sha256.in_(digests), live)
                        .distinct()
                    )
                )
                kept += len(still_used)
                for sha in sorted(digests - still_used):
                    size = _size(blobs, sha)
                    if size is None:
                        missing += 1
                    elif (
                        blobs.stored_since(sha, in_use_since)  # a dry run says what the run would keep
                        if dry_run
                        else not blobs.remove(sha, unless_stored_since=in_use_since)
                    ):
                        kept += 1
                    else:
                        removed, freed = removed + 1, freed + size
    report = RetentionReport(station_id, dry_run, ok_before, ng_before, records, removed, freed, kept, missing)
    if not dry_run:
        _advance(engine, station_id, ok_before, ng_before, actor)
        if audit is not None and records:
            audit.add(actor, ACTION, station_id, **report.as_dict())
    return report


def _size(blobs: BlobStore, sha: str) -> int | None:
    try:
        return blobs.path(sha).stat().st_size
    except FileNotFoundError:
        return None


def _advance(engine: Engine, station_id: str, ok_before: datetime | None, ng_before: datetime | None, by: str) -> None:
    """Record how far this run went, so the next one starts there."""

    def further(value: dict[str, Any]) -> dict[str, Any]:
        value.setdefault("station_id", station_id)
        for name, before in (("ok", ok_before), ("ng", ng_before)):
            if before is not None and (not value.get(name) or datetime.fromisoformat(str(value[name])) < before):
                value[name] = as_utc(before).isoformat()
        return value

    update_setting(engine, _setting_key(station_id), further, by)
