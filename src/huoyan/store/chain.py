"""The tamper-evident chain of each station's inspection records.

Every record the store inserts gets the next position of its station's chain and
``chain_sha256 = SHA-256(previous chain_sha256 + content digest)``, where the content
digest covers the record's columns (verdict, scores, times, part, recipe and model
references ...) and its child rows (regions, evidence, measurements, channels), in a
canonical JSON form that reads back the same from SQLite and PostgreSQL. The store
computes it in the insert's transaction, from the very rows it inserts.

``verify_station`` walks a station's chain in position order, recomputing each digest
from what the database holds now, and names the first record that was edited, the first
gap (deleted records), a position out of order, and a tail cut off behind the newest
checkpoint (checkpoints are the chain's head, written every ``CHECKPOINT_EVERY`` records
to the keyed audit trail, which an edit of its own would break).

Reviews have a chain per station of their own (``verify_reviews``): they are written by
the server, one at a time, long after the records, and each one's audit entry is its
checkpoint.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.orm import Session

from huoyan.store.database import make_engine
from huoyan.store.schema import RECORD_CHILDREN, InspectionRow, ReviewRow

GENESIS = "0" * 64
CHECKPOINT_EVERY = 1000
CHECKPOINT_ACTION = "record-chain-checkpoint"
# Every review's audit entry carries its station's review-chain head: a checkpoint per review.
REVIEW_CHECKPOINT_ACTION = "review"
# Not content: the row's database id and the chain's own columns.
NOT_CONTENT = frozenset({"id", "chain_pos", "chain_sha256"})
BATCH = 5000
PARALLEL_FROM = 100_000  # records; below this one process walks the whole chain


def _canon(value: Any) -> Any:
    if isinstance(value, datetime):
        offset = value.utcoffset()
        if offset is None:  # SQLite hands back naive datetimes; every time stored is UTC
            return value.isoformat() + "+00:00"
        return (value if offset == _ZERO else value.astimezone(UTC)).isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not part of a record's content")


_ZERO = timedelta(0)
# One encoder for every digest (json.dumps would build one per call): compact, ASCII.
_ENCODE = json.JSONEncoder(default=_canon, separators=(",", ":"), allow_nan=True).encode


@functools.lru_cache(maxsize=64)
def _names(keys: tuple[str, ...], left_out: frozenset[str]) -> tuple[list[str], str]:
    """A row's content columns in sorted order, and that list as JSON: the same few sets
    of keys, row after row."""
    names = sorted(k for k in keys if k not in left_out)
    return names, _ENCODE(names)


_CHILD_IDS = frozenset({"id", "inspection_id"})


def content_digest(row: Mapping[str, Any], children: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """The digest of one record's columns and child rows (each child without its ids):
    values in the order of their sorted names, as compact JSON."""
    names, names_json = _names(tuple(row), NOT_CONTENT)
    kids = [
        [[c[k] for k in _names(tuple(c), _CHILD_IDS)[0]] for c in children.get(name, ())] for name in RECORD_CHILDREN
    ]
    # As _ENCODE([names, values, kids]) writes it, with the names' JSON made once.
    text = f"[{names_json},{_ENCODE([row[k] for k in names])},{_ENCODE(kids)}]"
    return hashlib.sha256(text.encode()).hexdigest()


def link(previous: str, digest: str) -> str:
    return hashlib.sha256((previous + digest).encode()).hexdigest()


def head(
    session: Session, station_id: str, rows: type[InspectionRow] | type[ReviewRow] = InspectionRow
) -> tuple[int, str]:
    """The position and hash of a station's newest chained record (or review, with
    ``rows=ReviewRow``): 0 and GENESIS if none."""
    found = session.execute(
        select(rows.chain_pos, rows.chain_sha256)
        .where(rows.station_id == station_id, rows.chain_pos.is_not(None))
        .order_by(rows.chain_pos.desc())
        .limit(1)
    ).one_or_none()
    if found is None or found[0] is None:
        return 0, GENESIS
    return int(found[0]), str(found[1])


@dataclass
class ChainReport:
    """What ``verify_station`` found for one station."""

    station_id: str
    intact: bool = True
    records: int = 0
    unchained: int = 0
    head_pos: int = 0
    head_sha256: str = GENESIS
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.intact = False
        if len(self.problems) < 20:
            self.problems.append(text)


def _fetch(conn: Connection, stmt: Any) -> list[dict[str, Any]]:
    """The statement's rows as dicts. On PostgreSQL straight from psycopg's cursor: the
    values are the ones SQLAlchemy would hand back (it leaves timestamps and JSON to
    psycopg there), at half the cost per row, which is most of a walk's time."""
    if conn.dialect.name != "postgresql":
        return [dict(m) for m in conn.execute(stmt).mappings()]
    from psycopg.rows import dict_row

    compiled = stmt.compile(dialect=conn.dialect)
    raw: Any = conn.connection.driver_connection
    with raw.cursor(row_factory=dict_row) as cur:
        cur.execute(str(compiled), compiled.params)
        return list(cur.fetchall())


def _rows(
    engine: Engine, station_id: str, first: int, last: int
) -> Iterator[tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]]:
    """The station's chained records from position ``first`` to ``last`` in order, each with
    its child rows, read in batches."""
    table = InspectionRow.__table__
    after = first - 1
    with engine.connect() as conn:
        while True:
            batch = _fetch(
                conn,
                select(table)
                .where(table.c.station_id == station_id, table.c.chain_pos > after, table.c.chain_pos <= last)
                .order_by(table.c.chain_pos)
                .limit(BATCH),
            )
            if not batch:
                return
            kids: dict[int, dict[str, list[dict[str, Any]]]] = {r["id"]: {} for r in batch}
            # The batch's child rows by a join on the same positions (no list of ids to bind).
            for name, row_type in RECORD_CHILDREN.items():
                child = row_type.__table__
                stmt = (
                    select(child)
                    .join(table, child.c.inspection_id == table.c.id)
                    .where(
                        table.c.station_id == station_id,
                        table.c.chain_pos > after,
                        table.c.chain_pos <= batch[-1]["chain_pos"],
                    )
                    .order_by(child.c.id)
                )
                for c in _fetch(conn, stmt):
                    kids[c["inspection_id"]].setdefault(name, []).append(c)
            for r in batch:
                yield r, kids[r["id"]]
            after = batch[-1]["chain_pos"]


@dataclass
class Segment:
    """One stretch of positions, verified on its own (possibly in another process)."""

    records: int = 0
    problems: list[str] = field(default_factory=list)
    head_pos: int = 0
    head_sha256: str = GENESIS
    at: dict[int, str] = field(default_factory=dict)


def _segment(url: str, station_id: str, first: int, last: int, previous: str | None, wanted: frozenset[int]) -> Segment:
    """Positions ``first``..``last`` (``last`` is -1 for the open end). ``previous`` is the
    stored hash before ``first``; None when that record is missing (the segment before
    reports the gap, and this one cannot check its first link)."""
    engine = make_engine(url)
    try:
        return _walk(engine, station_id, first, last, previous, wanted)
    finally:
        engine.dispose()


def _walk(
    engine: Engine, station_id: str, first: int, last: int, previous: str | None, wanted: frozenset[int]
) -> Segment:
    seg = Segment(head_pos=first - 1, head_sha256=previous or GENESIS)
    expected = first
    for row, children in _rows(engine, station_id, first, last if last >= 0 else 2**31 - 1):
        seg.records += 1
        pos = row["chain_pos"]
        if pos != expected:  # after a gap the link cannot match either: the gap is the finding
            seg.problems.append(f"records {expected}..{pos - 1} of the chain are missing (deleted) before {row['key']}")
        elif previous is not None and link(previous, content_digest(row, children)) != row["chain_sha256"]:
            seg.problems.append(f"record {row['key']} at position {pos} was edited (its content no longer matches)")
        previous, expected = row["chain_sha256"], pos + 1
        if pos in wanted:
            seg.at[pos] = row["chain_sha256"]
        seg.head_pos, seg.head_sha256 = pos, previous
    if last >= 0 and expected <= last:
        seg.problems.append(f"records {expected}..{last} of the chain are missing (deleted)")
    return seg


def verify_station(
    engine: Engine,
    station_id: str,
    checkpoints: Sequence[tuple[int, str]] = (),
    workers: int | None = None,
    min_parallel: int = PARALLEL_FROM,
) -> ChainReport:
    """Walk the station's chain. Long chains are cut into one stretch per CPU, each checked
    in a process of its own from the stored hash before it: the walk is CPU-bound (digests)."""
    report = ChainReport(station_id)
    with Session(engine) as s:
        report.unchained = (
            s.query(InspectionRow)
            .filter(InspectionRow.station_id == station_id, InspectionRow.chain_pos.is_(None))
            .count()
        )
        top = s.scalar(select(func.max(InspectionRow.chain_pos)).where(InspectionRow.station_id == station_id)) or 0
        n = workers or os.cpu_count() or 1
        bounds = [1 + top * i // n for i in range(n)] + [top + 1]
        starts = sorted(set(bounds[:-1])) if top >= min_parallel and n > 1 else [1]
        stored = dict(
            s.execute(
                select(InspectionRow.chain_pos, InspectionRow.chain_sha256).where(
                    InspectionRow.station_id == station_id, InspectionRow.chain_pos.in_([b - 1 for b in starts[1:]])
                )
            ).all()
        )
    wanted = frozenset(pos for pos, _ in checkpoints)
    jobs = [
        (
            station_id,
            a,
            (starts[i + 1] - 1) if i + 1 < len(starts) else -1,
            GENESIS if a == 1 else stored.get(a - 1),
            wanted,
        )
        for i, a in enumerate(starts)
    ]
    if len(jobs) == 1:
        segments = [_walk(engine, *jobs[0])]
    else:
        url = engine.url.render_as_string(hide_password=False)
        with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
            segments = list(pool.map(_segment, *zip(*[(url, *j) for j in jobs], strict=True)))
    at: dict[int, str] = {}
    for seg in segments:
        report.records += seg.records
        for problem in seg.problems:
            report.problem(problem)
        at.update(seg.at)
        if seg.records:
            report.head_pos, report.head_sha256 = seg.head_pos, seg.head_sha256
    _check_marks(report, at, checkpoints)
    return report


def _check_marks(report: ChainReport, at: Mapping[int, str], checkpoints: Sequence[tuple[int, str]]) -> None:
    for pos, sha in checkpoints:
        if pos > report.head_pos:
            report.problem(f"the chain ends at position {report.head_pos}, but a checkpoint says {pos}: tail cut off")
        elif at.get(pos, sha) != sha:
            report.problem(f"position {pos} differs from its checkpoint: the chain was rewritten")


# -- reviews: a chain per station of its own, written by the server, not the station ---------


def review_content(review: Mapping[str, Any], inspection_key: str) -> str:
    """The digest of one review: its columns, with the inspection named by its key (a
    review moved to another part no longer matches)."""
    row = {k: v for k, v in review.items() if k != "inspection_id"}
    return content_digest({**row, "inspection_key": inspection_key}, {})


def verify_reviews(engine: Engine, station_id: str, checkpoints: Sequence[tuple[int, str]] = ()) -> ChainReport:
    """Walk the station's review chain: an edited, deleted, reordered or re-pointed review,
    and reviews cut off behind a checkpoint (every review's head goes to the audit trail)."""
    report = ChainReport(station_id)
    table = ReviewRow.__table__
    with Session(engine) as s:
        report.unchained = (
            s.scalar(
                select(func.count())
                .select_from(ReviewRow)
                .join(InspectionRow, InspectionRow.id == ReviewRow.inspection_id)
                .where(InspectionRow.station_id == station_id, ReviewRow.chain_pos.is_(None))
            )
            or 0
        )
        rows = s.execute(
            select(table, InspectionRow.key.label("inspection_key"))
            .outerjoin(InspectionRow, InspectionRow.id == table.c.inspection_id)
            .where(table.c.station_id == station_id, table.c.chain_pos.is_not(None))
            .order_by(table.c.chain_pos)
        ).mappings()
        previous, expected, at = GENESIS, 1, {}
        for r in rows:
            row = dict(r)
            key = row.pop("inspection_key")
            report.records += 1
            pos = row["chain_pos"]
            if pos != expected:
                report.problem(
                    f"reviews {expected}..{pos - 1} of the chain are missing (deleted) before review {row['id']}"
                )
            elif link(previous, review_content(row, key or "")) != row["chain_sha256"]:
                report.problem(
                    f"review {row['id']} of {key} at position {pos} was edited (its content no longer matches)"
                )
            previous, expected = row["chain_sha256"], pos + 1
            at[pos] = previous
            report.head_pos, report.head_sha256 = pos, previous
    _check_marks(report, at, checkpoints)
    return report


def stations(engine: Engine) -> list[str]:
    with Session(engine) as s:
        return list(s.scalars(select(InspectionRow.station_id).distinct().order_by(InspectionRow.station_id)))
