"""Human review of verdicts: the queue, the reviews, and the labelled set they make.

NG parts, and the OK parts whose image was kept (the recipe keeps 1 in N), wait in the
queue until someone reviews them. An NG is confirmed as a defect or marked a false
alarm; an OK is confirmed good or flagged as a missed defect. Confirming a defect, the
reviewer may correct what a named region is (a template model's "spur" that is a
"short"). Every review is kept with
who and when; the latest one per part counts. Reviewed parts become the labelled set
on which a retrained model is compared with the active one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from huoyan.core.records import EvidenceKind, utcnow
from huoyan.core.text import Message
from huoyan.store import catalogue, chain
from huoyan.store.records import as_utc
from huoyan.store.schema import EvidenceRow, InspectionRow, RegionRow, ReviewRow


class Outcome(StrEnum):
    DEFECT = "defect"
    FALSE_ALARM = "false_alarm"
    GOOD = "good"
    MISSED_DEFECT = "missed_defect"

    @property
    def is_defect(self) -> bool:
        return self in (Outcome.DEFECT, Outcome.MISSED_DEFECT)


ALLOWED = {"NG": {Outcome.DEFECT, Outcome.FALSE_ALARM}, "OK": {Outcome.GOOD, Outcome.MISSED_DEFECT}}


class ReviewError(ValueError):
    """A review that does not fit the inspection (unknown part, wrong outcome for its verdict)."""


@dataclass(frozen=True, slots=True)
class Labelled:
    """A reviewed part whose image is stored: the ground truth for comparing models."""

    inspection_id: int
    image_sha256: str
    is_defect: bool


def _latest_ids() -> Any:
    return select(func.max(ReviewRow.id)).group_by(ReviewRow.inspection_id)


def _kept_image() -> Any:
    """The sha256 of an inspection's first kept image (None if none was kept), per row."""
    return (
        select(EvidenceRow.sha256)
        .where(EvidenceRow.inspection_id == InspectionRow.id, EvidenceRow.kind == EvidenceKind.IMAGE.value)
        .order_by(EvidenceRow.id)
        .limit(1)
        .correlate(InspectionRow)
        .scalar_subquery()
    )


def review_dict(r: ReviewRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "inspection_id": r.inspection_id,
        "outcome": r.outcome,
        "label": r.label,
        "regions": r.regions or [],
        "note": r.note,
        "reviewer": r.reviewer,
        "at": as_utc(r.at),
        "station_id": r.station_id,
        "chain_pos": r.chain_pos,
        "chain_sha256": r.chain_sha256,
    }


class Reviews:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self,
        inspection_id: int,
        outcome: Outcome,
        reviewer: str,
        label: str | None = None,
        note: str | None = None,
        region_labels: Sequence[tuple[int, str]] = (),
    ) -> dict[str, Any]:
        """Record a review; ``region_labels`` correct the labels of the inspection's
        regions, by their position in its record (a confirmed defect's boxes only)."""
        args = (inspection_id, Outcome(outcome), reviewer, label, note, region_labels)
        for _ in range(4):
            try:
                return self._add(*args)
            except IntegrityError:  # another reviewer took this chain position first: read the head again
                continue
        return self._add(*args)  # a fifth clash goes to the caller

    def _add(
        self,
        inspection_id: int,
        outcome: Outcome,
        reviewer: str,
        label: str | None,
        note: str | None,
        region_labels: Sequence[tuple[int, str]],
    ) -> dict[str, Any]:
        with Session(self.engine) as s, s.begin():
            found = s.execute(
                select(InspectionRow.verdict, InspectionRow.key, InspectionRow.station_id).where(
                    InspectionRow.id == inspection_id
                )
            ).one_or_none()
            if found is None:
                raise LookupError(f"no inspection {inspection_id}")
            verdict, key, station = found
            if Outcome(outcome) not in ALLOWED.get(verdict, set()):
                allowed = ", ".join(sorted(ALLOWED.get(verdict, set()))) or "nothing (it has no image verdict)"
                raise ReviewError(
                    Message(
                        "a {verdict} part can be reviewed as {allowed}, not {outcome}",
                        verdict=verdict,
                        allowed=allowed,
                        outcome=outcome,
                    )
                )
            if region_labels:
                if Outcome(outcome) != Outcome.DEFECT:
                    raise ReviewError(Message("region labels are corrected on a part confirmed as a defect"))
                n = s.scalar(select(func.count()).where(RegionRow.inspection_id == inspection_id)) or 0
                wrong = sorted({i for i, _ in region_labels if not 0 <= i < n})
                if wrong:
                    raise ReviewError(
                        Message(
                            "inspection {id} has {n} regions; there is no region {wrong}",
                            id=inspection_id,
                            n=n,
                            wrong=wrong[0],
                        )
                    )
            # A product with a catalogue of defect types takes only those (huoyan.store.catalogue).
            for name in [label, *(text for _, text in region_labels)]:
                refused = catalogue.check_label(s, station, name) if name else None
                if refused:
                    raise ReviewError(refused)
            row = ReviewRow(
                inspection_id=inspection_id,
                outcome=Outcome(outcome).value,
                label=label or None,
                regions=[{"index": i, "label": text} for i, text in region_labels] or None,
                note=note or None,
                reviewer=reviewer,
                at=utcnow(),
                station_id=station,
            )
            pos, previous = chain.head(s, station, ReviewRow)
            content = {c.name: getattr(row, c.name) for c in ReviewRow.__table__.columns}
            row.chain_pos = pos + 1
            row.chain_sha256 = chain.link(previous, chain.review_content(content, key))
            s.add(row)
            s.flush()
            return review_dict(row)

    def history(self, inspection_id: int) -> list[dict[str, Any]]:
        with Session(self.engine) as s:
            rows = s.scalars(select(ReviewRow).where(ReviewRow.inspection_id == inspection_id).order_by(ReviewRow.id))
            return [review_dict(r) for r in rows]

    def of_inspections(self, inspection_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """Every review of each inspection, oldest first, in one query."""
        out: dict[int, list[dict[str, Any]]] = {i: [] for i in inspection_ids}
        stmt = select(ReviewRow).where(ReviewRow.inspection_id.in_(inspection_ids)).order_by(ReviewRow.id)
        with Session(self.engine) as s:
            for r in s.scalars(stmt):
                out[r.inspection_id].append(review_dict(r))
        return out

    def latest(self, inspection_ids: list[int]) -> dict[int, dict[str, Any]]:
        if not inspection_ids:
            return {}
        with Session(self.engine) as s:
            latest = _latest_ids().where(ReviewRow.inspection_id.in_(inspection_ids))
            rows = s.scalars(select(ReviewRow).where(ReviewRow.id.in_(latest)))
            return {r.inspection_id: review_dict(r) for r in rows}

    def queue_filter(self) -> Any:
        """Inspections waiting for review: NG, or OK with a kept image, and not yet reviewed."""
        reviewed = select(ReviewRow.inspection_id)
        return and_(
            InspectionRow.id.not_in(reviewed),
            or_(
                InspectionRow.verdict == "NG",
                and_(InspectionRow.verdict == "OK", _kept_image().is_not(None)),
            ),
        )

    def counts(self, station: str | None = None) -> dict[str, int]:
        stmt = select(ReviewRow.outcome, func.count()).where(ReviewRow.id.in_(_latest_ids()))
        if station:
            stmt = stmt.join(InspectionRow, InspectionRow.id == ReviewRow.inspection_id).where(
                InspectionRow.station_id == station
            )
        with Session(self.engine) as s:
            out = {o.value: 0 for o in Outcome}
            out.update({k: int(v) for k, v in s.execute(stmt.group_by(ReviewRow.outcome)).all()})
            pending = select(func.count()).select_from(InspectionRow).where(self.queue_filter())
            if station:
                pending = pending.where(InspectionRow.station_id == station)
            out["pending"] = int(s.scalar(pending) or 0)
            return out

    def labelled(self, station: str) -> list[Labelled]:
        image = _kept_image()
        stmt = (
            select(InspectionRow.id, image, ReviewRow.outcome)
            .join(ReviewRow, ReviewRow.inspection_id == InspectionRow.id)
            .where(ReviewRow.id.in_(_latest_ids()), InspectionRow.station_id == station, image.is_not(None))
            .order_by(InspectionRow.id)
        )
        with Session(self.engine) as s:
            return [Labelled(i, sha, Outcome(o).is_defect) for i, sha, o in s.execute(stmt).all() if sha]

    def good_images(
        self, station: str, limit: int, ok: bool = True, false_alarms: bool = True
    ) -> list[tuple[int, str]]:
        """(inspection id, image sha256) of parts to train on: kept OK images not flagged as
        missed defects (``ok``), and NG parts reviewed as false alarms (``false_alarms``).
        Newest first."""
        latest = select(ReviewRow.inspection_id, ReviewRow.outcome).where(ReviewRow.id.in_(_latest_ids())).subquery()
        image = _kept_image()
        kinds = []
        if ok:
            kinds.append(
                and_(
                    InspectionRow.verdict == "OK",
                    or_(latest.c.outcome.is_(None), latest.c.outcome != Outcome.MISSED_DEFECT.value),
                )
            )
        if false_alarms:
            kinds.append(and_(InspectionRow.verdict == "NG", latest.c.outcome == Outcome.FALSE_ALARM.value))
        if not kinds:
            return []
        stmt = (
            select(InspectionRow.id, image)
            .outerjoin(latest, latest.c.inspection_id == InspectionRow.id)
            .where(InspectionRow.station_id == station, image.is_not(None), or_(*kinds))
            .order_by(InspectionRow.id.desc())
            .limit(limit)
        )
        with Session(self.engine) as s:
            return [(i, sha) for i, sha in s.execute(stmt).all() if sha]
