"""Re-inspection runs: archived images scored again with a given model, stored beside the original verdicts.

``huoyan batch`` opens a run by name (the same name resumes it, with the same model
only), learns which items are already stored, and writes each batch of results in one
transaction. A result is unique by (run, item): a batch stored twice (a job killed after
its commit, then resumed) keeps one row per image. The dashboard reads a run's summary
(original verdict x new verdict) and the parts whose verdict would change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from huoyan.core.records import utcnow
from huoyan.core.text import Message
from huoyan.store.records import RecordFilter, as_utc
from huoyan.store.schema import EvidenceRow, InspectionRow, ReinspectionResultRow, ReinspectionRunRow


class RunConflict(ValueError):
    """A run name already used for another model: a resumed run keeps its model."""


class RunInfo(BaseModel):
    """What a run is: its name, model, threshold and judging recipe, what it re-inspects."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    id: int
    name: str
    model_sha256: str
    model_name: str
    threshold: float
    recipe_id: str
    recipe_version: str
    source: dict[str, Any]
    total: int
    created_by: str
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: ReinspectionRunRow) -> RunInfo:
        return cls.model_validate(
            {name: getattr(row, name) for name in cls.model_fields}
            | {
                "created_at": as_utc(row.created_at),
                "finished_at": as_utc(row.finished_at) if row.finished_at else None,
            }
        )


class ReinspectionResult(BaseModel):
    """One re-inspected image's result beside its original verdict (a row of ``reinspection_results``)."""

    item: str
    inspection_id: int | None
    source_name: str
    verdict: str
    score: float | None
    normalised_score: float | None
    regions: int
    error: str | None
    original_verdict: str | None
    original_score: float | None


RESULT_FIELDS = tuple(ReinspectionResult.model_fields)


@dataclass(frozen=True, slots=True)
class ArchivedImage:
    """A record whose image the store kept: what a run over records re-inspects."""

    inspection_id: int
    key: str
    source_name: str
    verdict: str
    score: float | None
    image_sha256: str


def open_run(
    engine: Engine,
    name: str,
    model: tuple[str, str],
    threshold: float,
    recipe: tuple[str, str],
    source: Mapping[str, Any],
    total: int,
    by: str,
) -> RunInfo:
    """The run called ``name``: created, or found again to resume (``model`` is (sha256,
    name), ``recipe`` (id, version)). ``RunConflict`` if it was started with another model."""
    sha, model_name = model
    with Session(engine) as s, s.begin():
        row = s.scalars(select(ReinspectionRunRow).where(ReinspectionRunRow.name == name)).one_or_none()
        if row is None:
            row = ReinspectionRunRow(
                name=name, model_sha256=sha, model_name=model_name, threshold=threshold, recipe_id=recipe[0],
                recipe_version=recipe[1], source=dict(source), total=total, created_by=by, created_at=utcnow(),
            )  # fmt: skip
            s.add(row)
        elif row.model_sha256 != sha:
            raise RunConflict(
                Message(
                    "run '{name}' re-inspects with model {run_model}, not {model}; name a new run",
                    name=name,
                    run_model=row.model_sha256[:12],
                    model=sha[:12],
                )
            )
        else:
            row.total, row.finished_at = total, None
        s.flush()
        return RunInfo.of(row)


def stored_items(engine: Engine, run_id: int) -> set[str]:
    """The items of the run already stored: what a resumed run leaves out."""
    with Session(engine) as s:
        return set(s.scalars(select(ReinspectionResultRow.item).where(ReinspectionResultRow.run_id == run_id)))


def store_results(engine: Engine, run_id: int, results: Sequence[Mapping[str, Any]]) -> int:
    """Store one batch of results in one transaction; an item stored already is kept as
    it was. Returns how many rows were new."""
    if not results:
        return 0
    now = utcnow()
    rows = [{"run_id": run_id, "decided_at": now, **{f: r.get(f) for f in RESULT_FIELDS}} for r in results]
    table = ReinspectionResultRow.__table__
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(rows).on_conflict_do_nothing(index_elements=["run_id", "item"])
    with engine.begin() as conn:
        return int(conn.execute(stmt).rowcount or 0)


def finish_run(engine: Engine, run_id: int) -> None:
    with Session(engine) as s, s.begin():
        row = s.get(ReinspectionRunRow, run_id)
        if row is not None:
            row.finished_at = utcnow()


def list_runs(engine: Engine) -> list[RunInfo]:
    """Every run, newest first."""
    with Session(engine) as s:
        rows = s.scalars(select(ReinspectionRunRow).order_by(ReinspectionRunRow.id.desc()))
        return [RunInfo.of(r) for r in rows]


def stored_counts(engine: Engine) -> dict[int, int]:
    """Run id -> how many of its images are stored."""
    r = ReinspectionResultRow
    with Session(engine) as s:
        return {run: int(n) for run, n in s.execute(select(r.run_id, func.count()).group_by(r.run_id))}


def get_run(engine: Engine, run_id: int) -> RunInfo | None:
    with Session(engine) as s:
        row = s.get(ReinspectionRunRow, run_id)
        return None if row is None else RunInfo.of(row)


def verdict_table(engine: Engine, run_id: int) -> dict[tuple[str | None, str], int]:
    """(original verdict, new verdict) -> how many parts; None for images without a record."""
    r = ReinspectionResultRow
    stmt = (
        select(r.original_verdict, r.verdict, func.count())
        .where(r.run_id == run_id)
        .group_by(r.original_verdict, r.verdict)
    )
    with Session(engine) as s:
        return {(o, v): int(n) for o, v, n in s.execute(stmt)}


def changed_results(engine: Engine, run_id: int, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """The parts whose verdict the run changed (a record's OK now NG, or NG now OK), the
    largest score change first."""
    r = ReinspectionResultRow
    change = func.abs(func.coalesce(r.score, 0.0) - func.coalesce(r.original_score, 0.0))
    stmt = (
        select(r)
        .where(r.run_id == run_id, r.original_verdict.is_not(None), r.original_verdict != r.verdict)
        .order_by(change.desc(), r.id)
        .limit(limit)
        .offset(offset)
    )
    with Session(engine) as s:
        return [_result(row) for row in s.scalars(stmt)]


def run_results(engine: Engine, run_id: int, items: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The run's results (of ``items`` only, if given), in storing order."""
    stmt = select(ReinspectionResultRow).where(ReinspectionResultRow.run_id == run_id)
    if items is not None:
        stmt = stmt.where(ReinspectionResultRow.item.in_(list(items)))
    with Session(engine) as s:
        return [_result(row) for row in s.scalars(stmt.order_by(ReinspectionResultRow.id))]


def _result(row: ReinspectionResultRow) -> dict[str, Any]:
    return {f: getattr(row, f) for f in RESULT_FIELDS} | {"decided_at": as_utc(row.decided_at)}


def archived_images(engine: Engine, where: RecordFilter) -> tuple[list[ArchivedImage], int]:
    """The selected records whose image the store kept, oldest first, and how many
    selected records kept none (OK parts a recipe does not keep)."""
    image = (
        select(EvidenceRow.inspection_id, func.min(EvidenceRow.sha256).label("sha"))
        .where(EvidenceRow.kind == "image")
        .group_by(EvidenceRow.inspection_id)
        .subquery()
    )
    i = InspectionRow
    stmt = where.apply(
        select(i.id, i.key, i.source_name, i.verdict, i.score, image.c.sha).outerjoin(
            image, image.c.inspection_id == i.id
        )
    ).order_by(i.arrived_at, i.id)
    found, without = [], 0
    with Session(engine) as s:
        for row in s.execute(stmt):
            if row.sha is None:
                without += 1
            else:
                found.append(ArchivedImage(row.id, row.key, row.source_name, row.verdict, row.score, row.sha))
    return found, without
