"""Inspection records (filtered, paged), their images and overlays, and reviews."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from huoyan.core.models import Verdict
from huoyan.core.records import Evidence, EvidenceKind, StoredInspection, media_type_of
from huoyan.core.text import Message
from huoyan.server import i18n
from huoyan.server.platform import Platform, platform
from huoyan.server.routes.common import RowId, attachment, errors, not_found, said, with_reviews
from huoyan.server.schemas import (
    BulkRefusal,
    BulkReviewIn,
    BulkReviewOut,
    InspectionDetail,
    InspectionOut,
    InspectionPage,
    Page,
    ReviewIn,
    ReviewOut,
    ReviewSummary,
)
from huoyan.server.security import Operator, Reviewer
from huoyan.store import chain, retention
from huoyan.store.export import csv_chunks, write_xlsx
from huoyan.store.records import Order, RecordFilter, get_inspection, query_records, verdict_counts
from huoyan.store.reviews import ReviewError
from huoyan.vision.imageio import ImageError
from huoyan.vision.overlay import record_overlay

router = APIRouter(prefix="/api", tags=["records"])
OCTET_STREAM = "application/octet-stream"
PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}, "description": "a PNG image"}}


def _page(p: Platform, where: RecordFilter, limit: int, offset: int, order: Order = "-time") -> InspectionPage:
    rows = query_records(p.engine, where=where, limit=limit, offset=offset, order=order)
    counts = verdict_counts(p.engine, where)
    return InspectionPage(
        items=with_reviews(p, rows), total=sum(counts.values()), counts=counts, limit=limit, offset=offset
    )


def record_filter(
    station: str | None = None,
    recipe: str | None = None,
    verdict: Verdict | None = None,
    part_id: str | None = None,
    lot: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> RecordFilter:
    """The records page's filters, the same for listing and exporting."""
    verdict_text = verdict.value if verdict else None
    return RecordFilter(
        station=station, recipe=recipe, verdict=verdict_text, part_id=part_id, lot=lot, since=since, until=until
    )


Filters = Annotated[RecordFilter, Depends(record_filter)]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@router.get("/inspections", response_model=InspectionPage, responses=errors())
def inspections(
    p: Annotated[Platform, Depends(platform)],
    _: Operator,
    where: Filters,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    sort: Annotated[Order, Query(description="time or score, '-' first for descending")] = "-time",
) -> InspectionPage:
    """Inspections, newest first (or as ``sort`` says), with the totals per verdict of all
    the filters select."""
    return _page(p, where, limit, offset, sort)


@router.get(
    "/inspections/export",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, XLSX: {}}, "description": "the records, oldest first"}, **errors()},
)
def export(
    p: Annotated[Platform, Depends(platform)],
    _: Operator,
    where: Filters,
    format: Literal["csv", "xlsx"] = "csv",
) -> Response:
    """Every record the filters select, as CSV (UTF-8) or Excel, streamed from the database
    in constant memory; the columns are the record's own."""
    name = f"huoyan-records-{where.station or 'all'}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    if format == "csv":
        media = "text/csv; charset=utf-8"
        return StreamingResponse(csv_chunks(p.engine, where), media_type=media, headers=attachment(f"{name}.csv"))
    path = write_xlsx(p.engine, where)
    return FileResponse(
        path, media_type=XLSX, headers=attachment(f"{name}.xlsx"), background=BackgroundTask(path.unlink)
    )


def _record(p: Platform, inspection_id: RowId) -> StoredInspection:
    record = get_inspection(p.engine, inspection_id)
    if record is None:
        raise not_found(Message("inspection {id}", id=inspection_id))
    return record


@router.get("/inspections/{inspection_id}", response_model=InspectionDetail, responses=errors(404))
def inspection(inspection_id: RowId, p: Annotated[Platform, Depends(platform)], _: Operator) -> InspectionDetail:
    """One inspection with its review history and the model version that judged it."""
    record = _record(p, inspection_id)
    history = p.reviews.history(inspection_id)
    sha = record.model_sha256
    version = p.versions.number_of(record.station_id, sha) if sha else None
    return InspectionDetail.model_validate(
        {
            **record.model_dump(),
            "review": history[-1] if history else None,
            "reviews": history,
            "model_version": version,
        }
    )


def _evidence(record: StoredInspection, kind: EvidenceKind, channel: str | None) -> Evidence:
    found = record.evidence_of(kind, channel)
    if found is None:
        where = f" from channel {channel!r}" if channel else ""
        raise not_found(
            Message("{kind}{where} kept for this inspection (see storage.keep_ok_every)", kind=kind.value, where=where)
        )
    return found


def _blob(p: Platform, record: StoredInspection, evidence: Evidence) -> bytes:
    try:
        return p.blob(record.station_id, evidence.sha256)
    except FileNotFoundError as exc:
        before = retention.removed_before(p.engine, record.station_id).get(record.verdict)
        if before is not None and record.arrived_at < before:
            gone = Message(
                "the {kind} of this inspection was removed with the evidence of the parts that arrived"
                " before {before} (storage.retention)",
                kind=evidence.kind.value,
                before=before.strftime("%Y-%m-%d %H:%M UTC"),
            )
            raise HTTPException(404, gone) from exc
        raise not_found(Message("file of {kind} {sha256}", kind=evidence.kind.value, sha256=evidence.sha256)) from exc


def _served(data: bytes, evidence: Evidence) -> Response:
    # Images kept before evidence had media types were stored as they came: sniffed here.
    media = media_type_of(data) if evidence.media_type == OCTET_STREAM else evidence.media_type
    return Response(data, media_type=media)


Channel = Annotated[str | None, Query(max_length=100, description="camera or sensor channel (default: the first)")]


def _first_of(p: Platform, inspection_id: int, kind: EvidenceKind, channel: str | None) -> Response:
    record = _record(p, inspection_id)
    found = _evidence(record, kind, channel)
    return _served(_blob(p, record, found), found)


@router.get("/inspections/{inspection_id}/image", response_class=Response, responses={**errors(404), **PNG})
def image(
    inspection_id: RowId, p: Annotated[Platform, Depends(platform)], _: Operator, channel: Channel = None
) -> Response:
    """The part's image as stored (the original file, or the preprocessed image)."""
    return _first_of(p, inspection_id, EvidenceKind.IMAGE, channel)


@router.get("/inspections/{inspection_id}/heatmap", response_class=Response, responses={**errors(404), **PNG})
def heatmap(
    inspection_id: RowId, p: Annotated[Platform, Depends(platform)], _: Operator, channel: Channel = None
) -> Response:
    """The anomaly map: 8-bit PNG, 128 is the NG threshold."""
    return _first_of(p, inspection_id, EvidenceKind.ANOMALY_MAP, channel)


@router.get(
    "/inspections/{inspection_id}/evidence/{sha256}",
    response_class=Response,
    responses={**errors(404), 200: {"content": {"application/octet-stream": {}}, "description": "the blob"}},
)
def evidence(
    inspection_id: RowId,
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
    p: Annotated[Platform, Depends(platform)],
    _: Operator,
) -> Response:
    """One piece of the inspection's evidence (listed in its ``evidence``), with its media type."""
    record = _record(p, inspection_id)
    found = next((e for e in record.evidence if e.sha256 == sha256), None)
    if found is None:
        raise not_found(Message("evidence {sha256} of inspection {id}", sha256=sha256, id=inspection_id))
    return _served(_blob(p, record, found), found)


@router.get("/inspections/{inspection_id}/overlay", response_class=Response, responses={**errors(404), **PNG})
def overlay(
    inspection_id: RowId,
    p: Annotated[Platform, Depends(platform)],
    _: Operator,
    max_side: Annotated[int | None, Query(ge=32, le=8192)] = None,
    channel: Channel = None,
) -> Response:
    """The image with its heat map and regions drawn on."""
    record = _record(p, inspection_id)
    _evidence(record, EvidenceKind.IMAGE, channel)  # a 404 that says what is missing
    try:
        png = record_overlay(record, lambda sha: p.blob(record.station_id, sha), max_side, channel)
    except FileNotFoundError as exc:
        raise not_found(Message("file of the image or heat map of inspection {id}", id=inspection_id)) from exc
    except ImageError as exc:
        raise HTTPException(409, Message("stored image cannot be read: {reason}", reason=str(exc))) from exc
    return Response(png, media_type="image/png")


@router.post(
    "/inspections/{inspection_id}/reviews", response_model=ReviewOut, status_code=201, responses=errors(404, 409)
)
def review(
    inspection_id: RowId, body: ReviewIn, p: Annotated[Platform, Depends(platform)], principal: Reviewer
) -> ReviewOut:
    """Confirm an NG as a defect or mark it a false alarm; confirm an OK as good or flag a missed defect.
    Confirming a defect, correct the labels of its named regions (``regions``)."""
    try:
        out = p.reviews.add(
            inspection_id,
            body.outcome,
            principal.user.username,
            body.label,
            body.note,
            [(r.index, r.label) for r in body.regions],
        )
    except LookupError as exc:
        raise not_found(Message("inspection {id}", id=inspection_id)) from exc
    except ReviewError as exc:
        raise HTTPException(409, said(exc)) from exc
    _audit_review(p, principal.user.username, inspection_id, body.outcome.value, out)
    return ReviewOut.model_validate(out)


def _audit_review(p: Platform, who: str, inspection_id: int, outcome: str, out: dict[str, Any], **detail: Any) -> None:
    """The review's audit entry, which is also the checkpoint of its station's review chain."""
    p.audit.add(
        who,
        chain.REVIEW_CHECKPOINT_ACTION,
        f"inspection {inspection_id}",
        outcome_=outcome,
        station=out["station_id"],
        pos=out["chain_pos"],
        sha256=out["chain_sha256"],
        **detail,
    )


@router.post("/reviews/bulk", response_model=BulkReviewOut, responses=errors())
def bulk_review(
    body: BulkReviewIn, request: Request, p: Annotated[Platform, Depends(platform)], principal: Reviewer
) -> BulkReviewOut:
    """Give many parts one outcome (a batch of false alarms from one cause); each is a review
    of its own, and a part the outcome does not fit is refused with the reason (in the
    reader's language)."""
    gettext = i18n.reader_gettext(request)
    reviewed, refused = [], []
    for inspection_id in dict.fromkeys(body.inspection_ids):  # each once, in the order given
        try:
            out = p.reviews.add(inspection_id, body.outcome, principal.user.username, body.label, body.note)
        except LookupError:
            missing = Message("no {what}", what=Message("inspection {id}", id=inspection_id))
            refused.append(BulkRefusal(inspection_id=inspection_id, reason=missing.translated(gettext)))
            continue
        except ReviewError as exc:
            reason = said(exc)
            text = reason.translated(gettext) if isinstance(reason, Message) else reason
            refused.append(BulkRefusal(inspection_id=inspection_id, reason=text))
            continue
        _audit_review(p, principal.user.username, inspection_id, body.outcome.value, out, bulk=True)
        reviewed.append(inspection_id)
    return BulkReviewOut(reviewed=reviewed, refused=refused)


@router.get("/reviews/queue", response_model=Page[InspectionOut], responses=errors())
def review_queue(
    p: Annotated[Platform, Depends(platform)],
    _: Operator,
    station: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Page[InspectionOut]:
    """NG parts and sampled OK parts nobody has reviewed yet, newest first."""
    return _page(p, RecordFilter(station=station, extra=p.reviews.queue_filter()), limit, offset)


@router.get("/reviews/summary", response_model=ReviewSummary, responses=errors())
def review_summary(p: Annotated[Platform, Depends(platform)], _: Operator, station: str | None = None) -> ReviewSummary:
    return ReviewSummary.model_validate(p.reviews.counts(station))
