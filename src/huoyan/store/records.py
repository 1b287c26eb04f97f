"""The record store: writes inspection records idempotently, and keeps them through outages.

``write`` returns only when each record is durable: committed to the database, or, while
the database is unreachable, in the on-disk ``Spool`` (an alarm is raised then, and
cleared when the spool has been flushed). Inserts skip keys already present, so a record
that is spooled, committed and spooled again by a restart is still stored once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, selectinload

from huoyan.core.models import ChannelVerdict, Measurement, Region, Verdict
from huoyan.core.records import (
    Evidence,
    InspectionRecord,
    Severity,
    StationEvent,
    StoredInspection,
    StoredRecord,
    utcnow,
)
from huoyan.core.text import Message
from huoyan.store import chain
from huoyan.store.blobs import BlobStore, sha256_hex
from huoyan.store.database import put_row
from huoyan.store.schema import (
    RECORD_CHILDREN,
    Base,
    EventRow,
    InspectionRow,
    ModelRow,
    RecipeRow,
    StationRow,
)
from huoyan.store.spool import Spool

log = logging.getLogger(__name__)

UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError)
OUTAGE_KIND = "database-unavailable"
REJECTED_KIND = "record-rejected"
COLLISION_KIND = "record-key-collision"

# The record's fields that are columns of ``inspections``, by the same name. The others
# are references (recipe, model) or rows of their own (regions, evidence).
RECORD_COLUMNS = frozenset(InspectionRecord.model_fields) & frozenset(InspectionRow.__table__.columns.keys())
RECORD_REFERENCES = frozenset({"recipe_id", "recipe_version", "model_sha256"})


def collision_key(record: InspectionRecord) -> str:
    """Where a record goes whose key is already stored for another part: the same for
    every flush of the same spooled record, so a repeat still stores it once."""
    digest = sha256_hex(record.model_dump_json().encode())[:12]
    return f"{record.key}~{digest}"


class RecipeConflict(ValueError):
    """A recipe id and version already stored with different content."""


def as_utc(ts: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time Huoyan stores is UTC."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def model_pk(session: Session, sha256: str, name: str, card: dict[str, Any]) -> int:
    """The models row of ``sha256`` (added, named ``name`` with ``card``, if it is new)."""
    put_row(session, ModelRow, {"sha256": sha256, "name": name, "card": card, "created_at": utcnow()}, ["sha256"])
    return int(session.execute(select(ModelRow.id).where(ModelRow.sha256 == sha256)).scalar_one())


class RecordStore:
    """Records for one station (or, with ``station=None``, a read-only view of all)."""

    def __init__(
        self,
        engine: Engine,
        blobs: BlobStore,
        spool: Spool,
        on_event: Callable[[StationEvent], None] | None = None,
        on_checkpoint: Callable[[str, int, str], None] | None = None,
    ) -> None:
        self.engine = engine
        # Told (station, position, chain_sha256) each time a station's chain passes a
        # multiple of chain.CHECKPOINT_EVERY; the runner writes it to the audit trail.
        self.on_checkpoint = on_checkpoint
        self._chain_heads: dict[str, tuple[int, str]] = {}
        self.blobs = blobs
        self.spool = spool
        self.on_event = on_event
        self._station: dict[str, Any] | None = None
        self._recipe: dict[str, Any] | None = None
        self._model: dict[str, Any] | None = None
        self._channel_models: list[dict[str, Any]] = []
        self._pks: dict[tuple[str, ...], int] = {}
        self._registered = False
        self._spooled_keys = spool.keys()
        self.degraded = False
        self._lock = threading.Lock()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine) as session, session.begin():
            yield session

    # -- registration ---------------------------------------------------------------
    def configure(
        self,
        station_id: str,
        product: str,
        recipe_id: str,
        recipe_version: str,
        recipe_sha256: str,
        recipe_body: dict[str, Any],
        model_sha256: str,
        model_name: str,
        model_card: dict[str, Any],
        channel_models: list[dict[str, Any]] | None = None,
    ) -> None:
        """Say which station, recipe and model this store writes for; registered on first
        contact. ``channel_models``: the other models of a station of several channels
        (``sha256``, ``name``, ``card`` each), registered too."""
        self._station = {"id": station_id, "product": product}
        self._recipe = {"recipe_id": recipe_id, "version": recipe_version, "sha": recipe_sha256, "body": recipe_body}
        self._model = {"sha256": model_sha256, "name": model_name, "card": model_card}
        self._channel_models = list(channel_models or [])
        self._registered = False  # a recipe switch registers the new recipe and model on next contact

    def switch(self, **config: Any) -> None:
        """Write for another recipe and model from now on (``configure``'s arguments); register
        them at once if the database is there, else on next contact. Raises ``RecipeConflict``."""
        with self._lock:
            self.configure(**config)
            try:
                self.register()
            except UNAVAILABLE as exc:
                log.warning("recipe switch: database unavailable (%s); registering on next contact", exc)

    def register(self) -> None:
        """Upsert station, recipe and model rows. Raises ``RecipeConflict`` or a database error."""
        assert self._station and self._recipe and self._model, "configure() first"
        now = utcnow()
        st, rc, md = self._station, self._recipe, self._model
        with self._session() as s:
            put_row(
                s,
                StationRow,
                {"id": st["id"], "product": st["product"], "created_at": now, "last_started_at": now},
                ["id"],
                update=("product", "last_started_at"),
            )
            recipe = {"recipe_id": rc["recipe_id"], "version": rc["version"]}
            content = {"content_sha256": rc["sha"], "body": rc["body"], "created_at": now}
            put_row(s, RecipeRow, {**recipe, **content}, list(recipe))
            stored_sha, recipe_pk = s.execute(
                select(RecipeRow.content_sha256, RecipeRow.id).where(
                    RecipeRow.recipe_id == rc["recipe_id"], RecipeRow.version == rc["version"]
                )
            ).one()
            if stored_sha != rc["sha"]:
                raise RecipeConflict(
                    f"recipe {rc['recipe_id']!r} version {rc['version']!r} is already stored with different "
                    "content: give the changed recipe a new version"
                )
            model = model_pk(s, md["sha256"], md["name"], md["card"])
            for other in self._channel_models:
                model_pk(s, other["sha256"], other["name"], other["card"])
            self._pks[("recipe", rc["recipe_id"], rc["version"])] = recipe_pk
            self._pks[("model", md["sha256"])] = model
        self._registered = True

    # -- queries used by the station --------------------------------------------------
    def stored_verdict(self, key: str) -> Verdict | None:
        """The verdict already stored (or spooled) under ``key``, or None if there is none."""
        if key in self._spooled_keys:
            return self._spooled_keys[key]
        try:
            with self._session() as s:
                v = s.scalar(select(InspectionRow.verdict).where(InspectionRow.key == key))
        except UNAVAILABLE:
            # Unknown: the caller re-inspects, and the idempotent insert drops the repeat.
            return None
        return None if v is None else Verdict(v)

    def last_seq(self, station_id: str) -> int:
        spooled = [p.get("seq") or 0 for _, k, p in self.spool.entries() if k == "record"]
        try:
            with self._session() as s:
                db = s.scalar(select(func.max(InspectionRow.seq)).where(InspectionRow.station_id == station_id))
        except UNAVAILABLE:
            db = None
        return max([db or 0, *spooled])

    # -- writing ----------------------------------------------------------------------
    def write(self, items: Sequence[StoredRecord]) -> None:
        """Store blobs, then the records: in the database, or in the spool while it is away.

        A record the database refuses for its content (not for being away) is set aside in
        ``spool.rejected`` with an alarm; the others are stored and the station goes on."""
        for item in items:
            for sha, data in item.blobs.items():
                self.blobs.put(data, sha)
        stamped = [i.record.model_copy(update={"stored_at": utcnow()}) for i in items]
        with self._lock:
            # While degraded, only the periodic ``flush`` probes the database, so a
            # server that hangs on connect does not stall every write.
            if self.degraded or (len(self.spool) and not self._flush_locked()):
                self._spool_records(stamped)
                return
            try:
                self._insert(stamped)
            except UNAVAILABLE as exc:
                self._go_degraded(exc)
                self._spool_records(stamped)
            except (SQLAlchemyError, LookupError):
                self._insert_each(stamped)

    def _insert_each(self, records: Sequence[InspectionRecord]) -> None:
        """One at a time, to find the record the database refuses."""
        for i, r in enumerate(records):
            try:
                self._insert([r])
            except UNAVAILABLE as exc:
                self._go_degraded(exc)
                self._spool_records(records[i:])
                return
            except (SQLAlchemyError, LookupError) as exc:
                self._reject("record", r.model_dump(mode="json"), r.key, exc)

    def event(self, event: StationEvent) -> None:
        """Store an event the station raised (``on_event`` is for the store's own: outages)."""
        with self._lock:
            if self.degraded or len(self.spool):
                self.spool.append("event", event.model_dump(mode="json"))
                return
            try:
                self._insert_event(event)
            except UNAVAILABLE as exc:
                self._go_degraded(exc)
                self.spool.append("event", event.model_dump(mode="json"))

    def flush(self) -> bool:
        """Write spooled entries to the database; True when the spool is empty afterwards."""
        with self._lock:
            return self._flush_locked()

    def _flush_locked(self) -> bool:
        if not self.degraded and not len(self.spool):
            return True
        flushed = 0
        for path, kind, payload in self.spool.entries():
            try:
                if kind == "record":
                    record = InspectionRecord.model_validate(payload)
                    self._insert([record])
                    self._spooled_keys.pop(record.key, None)
                else:
                    self._insert_event(StationEvent.model_validate(payload))
            except UNAVAILABLE as exc:
                self._go_degraded(exc)
                return False
            except (SQLAlchemyError, LookupError, ValidationError) as exc:
                # Refused for what it holds: kept aside, and the rest of the spool goes on.
                self._reject(kind, payload, str(payload.get("key", path.name)), exc)
                self._spooled_keys.pop(str(payload.get("key")), None)
            self.spool.remove(path)
            flushed += 1
        if self.degraded:
            self.degraded = False
            back = StationEvent(
                station_id=self._station["id"] if self._station else "",
                kind=OUTAGE_KIND,
                severity=Severity.INFO,
                message=f"database reachable again; {flushed} spooled entries written",
                active=False,
            )
            self._insert_event(back)
            if self.on_event is not None:
                self.on_event(back)
        return True

    def _reject(self, kind: str, payload: dict[str, Any], key: str, exc: Exception) -> None:
        reason = _reason(exc)
        self.spool.rejected.append(kind, {"entry": payload, "error": reason})
        self._alarm(
            REJECTED_KIND,
            f"{kind} {key} refused by the database ({reason}); kept in {self.spool.rejected.folder}",
        )

    def _alarm(self, kind: str, message: str) -> None:
        """An alarm of the store's own, stored like the station's (spooled if need be)."""
        alarm = StationEvent(
            station_id=self._station["id"] if self._station else "", kind=kind, severity=Severity.ALARM, message=message
        )
        log.error(alarm.message)
        try:
            if not self.degraded:
                self._insert_event(alarm)
        except UNAVAILABLE as exc:
            self._go_degraded(exc)
        if self.degraded:
            self.spool.append("event", alarm.model_dump(mode="json"))
        if self.on_event is not None:
            self.on_event(alarm)

    def _go_degraded(self, exc: Exception) -> None:
        if self.degraded:
            return
        self.degraded = True
        reason = _reason(exc)
        alarm = StationEvent(
            station_id=self._station["id"] if self._station else "",
            kind=OUTAGE_KIND,
            severity=Severity.ALARM,
            message=f"database unavailable ({reason}); records are kept on local disk in {self.spool.folder}",
        )
        log.error(alarm.message)
        self.spool.append("event", alarm.model_dump(mode="json"))
        if self.on_event is not None:
            self.on_event(alarm)

    def _spool_records(self, records: Sequence[InspectionRecord]) -> None:
        for r in records:
            self.spool.append("record", r.model_dump(mode="json"))
            self._spooled_keys[r.key] = r.verdict

    def _insert(self, records: Sequence[InspectionRecord]) -> None:
        if not self._registered:
            self.register()
        try:
            moved = self._insert_once(records)
        except IntegrityError:
            # Another writer stored one of these keys (or chain positions) between our check
            # and insert: read the chain's head again.
            self._chain_heads.clear()
            moved = []
            for r in records:
                try:
                    moved += self._insert_once([r])
                except IntegrityError:
                    if self.stored_verdict(r.key) is None:
                        raise
        for old, new in moved:
            self._alarm(COLLISION_KIND, f"key {old} was already stored for another part; this one is stored as {new}")

    def _insert_once(self, records: Sequence[InspectionRecord]) -> list[tuple[str, str]]:
        """Insert the records whose keys are new; returns (key, new key) for each record
        whose key was already taken by another part (by source name) and was stored
        under ``collision_key`` instead. A key stored for the same part is a repeat."""
        # Core bulk inserts (one statement per table) rather than ORM objects: the writer
        # shares the GIL with inference, and per-object ORM work showed in line rate.
        with self._session() as s:
            keys = [r.key for r in records]
            present = dict(
                s.execute(select(InspectionRow.key, InspectionRow.source_name).where(InspectionRow.key.in_(keys))).all()
            )
            fresh = {r.key: r for r in records if r.key not in present}
            moved = {
                r.key: r.model_copy(update={"key": collision_key(r)})
                for r in records
                if r.key in present and present[r.key] != r.source_name
            }
            if moved:
                taken = set(
                    s.scalars(select(InspectionRow.key).where(InspectionRow.key.in_([m.key for m in moved.values()])))
                )
                fresh.update({m.key: m for m in moved.values() if m.key not in taken})
            if not fresh:
                return []
            rows = [self._row(s, r) for r in fresh.values()]
            children = {
                r.key: {name: [c.model_dump() for c in getattr(r, name)] for name in RECORD_CHILDREN}
                for r in fresh.values()
            }
            heads, starts = self._chain(s, rows, children)
            ids = s.execute(
                insert(Base.metadata.tables[InspectionRow.__tablename__]).returning(
                    InspectionRow.id, InspectionRow.key
                ),
                rows,
            ).all()
            for name, table in RECORD_CHILDREN.items():
                child_rows = [{"inspection_id": pk, **c} for pk, key in ids for c in children[key][name]]
                if child_rows:
                    s.execute(insert(Base.metadata.tables[table.__tablename__]), child_rows)
        for station, (pos, sha) in heads.items():
            if (
                self.on_checkpoint is not None
                and pos // chain.CHECKPOINT_EVERY > starts[station] // chain.CHECKPOINT_EVERY
            ):
                try:
                    self.on_checkpoint(station, pos, sha)
                except Exception:  # the records are stored; a missed checkpoint only weakens the tail check
                    log.exception("record chain checkpoint at %s:%d not written", station, pos)
        return [(old, m.key) for old, m in moved.items() if m.key in fresh]

    def _chain(
        self, s: Session, rows: list[dict[str, Any]], children: dict[str, dict[str, list[dict[str, Any]]]]
    ) -> tuple[dict[str, tuple[int, str]], dict[str, int]]:
        """Give each row its station's next chain position and hash, read and extended inside
        the insert's transaction (a concurrent writer of the same station fails on the unique
        position and retries from the new head). Returns each station's new head and old position.
        The head is read from the database once, then kept: this process is the station's writer."""
        heads: dict[str, tuple[int, str]] = {}
        starts: dict[str, int] = {}
        for row in rows:
            station = row["station_id"]
            if station not in heads:
                heads[station] = self._chain_heads.get(station) or chain.head(s, station)
                starts[station] = heads[station][0]
            pos, previous = heads[station]
            row["chain_pos"] = pos + 1
            row["chain_sha256"] = chain.link(previous, chain.content_digest(row, children[row["key"]]))
            heads[station] = (pos + 1, row["chain_sha256"])
        return heads, starts

    def _pk(self, s: Session, key: tuple[str, ...], stmt: Any, record: InspectionRecord) -> int:
        """Primary key of a registered recipe or model, looked up once. A spooled record
        from an earlier run may name a recipe version or model other than today's."""
        if key not in self._pks:
            pk = s.scalar(stmt)
            if pk is None:
                raise LookupError(f"record {record.key} names {key[0]} {key[1:]} which is not registered")
            self._pks[key] = pk
        return self._pks[key]

    def _row(self, s: Session, r: InspectionRecord) -> dict[str, Any]:
        recipe = select(RecipeRow.id).where(RecipeRow.recipe_id == r.recipe_id, RecipeRow.version == r.recipe_version)
        model = select(ModelRow.id).where(ModelRow.sha256 == r.model_sha256)
        row = r.model_dump(include=set(RECORD_COLUMNS))
        row["stored_at"] = r.stored_at or utcnow()
        row["recipe_pk"] = self._pk(s, ("recipe", r.recipe_id, r.recipe_version), recipe, r)
        row["model_pk"] = None if r.model_sha256 is None else self._pk(s, ("model", r.model_sha256), model, r)
        return row

    def _insert_event(self, e: StationEvent) -> None:
        with self._session() as s:
            s.add(
                EventRow(
                    station_id=e.station_id,
                    at=e.at,
                    kind=e.kind,
                    severity=e.severity.value,
                    message=e.message,
                    active=e.active,
                )
            )


def _reason(exc: Exception) -> str:
    """The first line of what the database (or driver) said."""
    text = str(exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def stored_inspection(row: InspectionRow) -> StoredInspection:
    """An inspection row (with its recipe, model, regions and evidence loaded) as the record it stores."""
    fields: dict[str, Any] = {name: getattr(row, name) for name in RECORD_COLUMNS}
    for name, value in fields.items():
        if isinstance(value, datetime):
            fields[name] = as_utc(value)
    fields["rules"] = row.rules or []  # rows from before rule outcomes were kept have none
    return StoredInspection(
        **fields,
        id=row.id,
        recipe_id=row.recipe.recipe_id,
        recipe_version=row.recipe.version,
        model_sha256=row.model.sha256 if row.model else None,
        model_name=row.model.name if row.model else None,
        regions=[Region.model_validate(g, from_attributes=True) for g in row.regions],
        evidence=[Evidence.model_validate(e, from_attributes=True) for e in row.evidence],
        measurements=[Measurement.model_validate(m, from_attributes=True) for m in row.measurements],
        channels=[ChannelVerdict.model_validate(c, from_attributes=True) for c in row.channels],
    )


@dataclass(frozen=True)
class RecordFilter:
    """Which inspections to list: what `huoyan records` and the API's filters share."""

    station: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    verdict: str | None = None
    recipe: str | None = None
    part_id: str | None = None
    lot: str | None = None
    extra: Any = None  # another SQL condition, e.g. the review queue's

    def apply(self, stmt: Any) -> Any:
        if self.station:
            stmt = stmt.where(InspectionRow.station_id == self.station)
        if self.since:
            stmt = stmt.where(InspectionRow.arrived_at >= self.since)
        if self.until:
            stmt = stmt.where(InspectionRow.arrived_at < self.until)
        if self.verdict:
            stmt = stmt.where(InspectionRow.verdict == self.verdict.upper())
        if self.recipe:
            stmt = stmt.where(
                InspectionRow.recipe_pk.in_(select(RecipeRow.id).where(RecipeRow.recipe_id == self.recipe))
            )
        if self.part_id:
            stmt = stmt.where(InspectionRow.part_id == self.part_id)
        if self.lot:
            stmt = stmt.where(InspectionRow.lot == self.lot)
        if self.extra is not None:
            stmt = stmt.where(self.extra)
        return stmt


def _with_relations(stmt: Any) -> Any:
    return stmt.options(
        selectinload(InspectionRow.regions),
        selectinload(InspectionRow.evidence),
        selectinload(InspectionRow.measurements),
        selectinload(InspectionRow.channels),
        selectinload(InspectionRow.recipe),
        selectinload(InspectionRow.model),
    )


# How a list of records may be ordered: by arrival or score, "-" for descending.
Order = Literal["time", "-time", "score", "-score"]


def query_records(
    engine: Engine,
    station: str | None = None,
    since: datetime | None = None,
    verdict: str | None = None,
    limit: int | None = None,
    *,
    where: RecordFilter | None = None,
    offset: int = 0,
    newest_first: bool = False,
    order: Order | None = None,
) -> list[dict[str, Any]]:
    """Inspections in arrival order (newest first, or by ``order``), filtered; what
    `huoyan records` and the API list."""
    f = where or RecordFilter(station=station, since=since, verdict=verdict)
    chosen: Order = order or ("-time" if newest_first else "time")
    return [r.model_dump(mode="json") for r in query_inspections(engine, f, limit, offset, chosen)]


def query_inspections(
    engine: Engine, where: RecordFilter, limit: int | None = None, offset: int = 0, order: Order = "time"
) -> list[StoredInspection]:
    """The filtered inspections as records, in arrival order (or as ``order`` says; ties by arrival)."""
    column = InspectionRow.score if order.endswith("score") else InspectionRow.arrived_at
    if order.startswith("-"):
        keys = (column.desc().nulls_last(), InspectionRow.arrived_at.desc(), InspectionRow.id.desc())
    else:
        keys = (column.asc().nulls_last(), InspectionRow.arrived_at.asc(), InspectionRow.id.asc())
    stmt = where.apply(_with_relations(select(InspectionRow))).order_by(*keys).offset(offset)
    if limit:
        stmt = stmt.limit(limit)
    with Session(engine) as s:
        return [stored_inspection(r) for r in s.scalars(stmt)]


def recent_scores(engine: Engine, station: str, model_sha256: str | None, limit: int) -> list[tuple[float, str]]:
    """(score, verdict) of the station's newest judged parts (OK or NG) by this model."""
    stmt = (
        select(InspectionRow.score, InspectionRow.verdict)
        .where(
            InspectionRow.station_id == station,
            InspectionRow.verdict.in_(("OK", "NG")),
            InspectionRow.score.is_not(None),
        )
        .order_by(InspectionRow.arrived_at.desc(), InspectionRow.id.desc())
        .limit(limit)
    )
    if model_sha256 is not None:
        stmt = stmt.where(InspectionRow.model_pk.in_(select(ModelRow.id).where(ModelRow.sha256 == model_sha256)))
    with Session(engine) as s:
        return [(float(score), str(verdict)) for score, verdict in s.execute(stmt).all() if score is not None]


def verdict_counts(engine: Engine, where: RecordFilter) -> dict[str, int]:
    """How many of the filtered records have each verdict (all three named, zeros too)."""
    stmt = where.apply(select(InspectionRow.verdict, func.count()).group_by(InspectionRow.verdict))
    with Session(engine) as s:
        found = {str(v): int(n) for v, n in s.execute(stmt).all()}
    return {v.value: found.get(v.value, 0) for v in Verdict}


def get_inspection(engine: Engine, inspection_id: int | None = None, key: str | None = None) -> StoredInspection | None:
    """One inspection by id or by idempotency key."""
    cond = InspectionRow.id == inspection_id if key is None else InspectionRow.key == key
    with Session(engine) as s:
        row = s.scalar(_with_relations(select(InspectionRow)).where(cond))
        return None if row is None else stored_inspection(row)


def query_events(
    engine: Engine,
    station: str | None = None,
    severity: str | None = None,
    limit: int | None = None,
    newest_first: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    stmt = select(EventRow).order_by(
        *((EventRow.at.desc(), EventRow.id.desc()) if newest_first else (EventRow.at, EventRow.id))
    )
    if station:
        stmt = stmt.where(EventRow.station_id == station)
    if severity:
        stmt = stmt.where(EventRow.severity == severity)
    if since:
        stmt = stmt.where(EventRow.at >= since)
    if until:
        stmt = stmt.where(EventRow.at < until)
    if limit:
        stmt = stmt.limit(limit)
    with Session(engine) as s:
        return [_event_dict(e) for e in s.scalars(stmt)]


def get_event(engine: Engine, event_id: int) -> dict[str, Any] | None:
    with Session(engine) as s:
        row = s.get(EventRow, event_id)
        return None if row is None else _event_dict(row)


def _event_dict(e: EventRow) -> dict[str, Any]:
    return {
        "id": e.id,
        "station_id": e.station_id,
        "at": as_utc(e.at).isoformat(),
        "kind": e.kind,
        "severity": e.severity,
        "message": e.message,
        "active": e.active,
        "acknowledged_by": e.acknowledged_by,
        "acknowledged_at": as_utc(e.acknowledged_at).isoformat() if e.acknowledged_at else None,
        "ack_comment": e.ack_comment,
    }


class AckRefused(ValueError):
    """An event that cannot be acknowledged (none, not an alarm, or already acknowledged)."""


def acknowledge(engine: Engine, event_id: int, by: str, comment: str) -> None:
    """Mark a raised alarm as seen by ``by``, now, with ``comment``; once."""
    with Session(engine) as s, s.begin():
        row = s.get(EventRow, event_id)
        if row is None:
            raise LookupError(f"event {event_id}")
        if row.severity != "alarm" or not row.active:
            raise AckRefused(
                Message("event {event_id} is not a raised alarm; only alarms are acknowledged", event_id=event_id)
            )
        if row.acknowledged_by is not None:
            raise AckRefused(
                Message("alarm {event_id} was acknowledged by {by} already", event_id=event_id, by=row.acknowledged_by)
            )
        row.acknowledged_by, row.acknowledged_at, row.ack_comment = by, utcnow(), comment


def acknowledge_all(engine: Engine, station: str, by: str, comment: str) -> int:
    """Acknowledge every raised, unacknowledged alarm of ``station`` at once; how many there were."""
    with Session(engine) as s, s.begin():
        rows = s.scalars(
            select(EventRow).where(
                EventRow.station_id == station,
                EventRow.severity == "alarm",
                EventRow.active.is_(True),
                EventRow.acknowledged_by.is_(None),
            )
        ).all()
        now = utcnow()
        for row in rows:
            row.acknowledged_by, row.acknowledged_at, row.ack_comment = by, now, comment
        return len(rows)


def data_paths(data_dir: Path) -> tuple[Path, Path]:
    """Blob and spool folders inside a station's data folder."""
    return data_dir / "blobs", data_dir / "spool"
