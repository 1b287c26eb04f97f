"""Inspection records (filtered, paged), their images and overlays, reviews and events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response

from huoyan.core.models import Region, Verdict
from huoyan.server.platform import Platform, platform
from huoyan.server.routes.common import RowId, errors, not_found, with_reviews
from huoyan.server.schemas import (
    EventOut,
    InspectionDetail,
    InspectionOut,
    Page,
    ReviewIn,
    ReviewOut,
    ReviewSummary,
)
from huoyan.server.security import Operator, Reviewer
from huoyan.store.records import RecordFilter, count_records, get_record, query_events, query_records
from huoyan.store.reviews import ReviewError
from huoyan.vision.imageio import ImageError, decode_image
from huoyan.vision.overlay import encode, render_overlay

router = APIRouter(prefix="/api", tags=["records"])
PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}, "description": "a PNG image"}}


def _page(p: Platform, where: RecordFilter, limit: int, offset: int) -> Page[InspectionOut]:
    rows = query_records(p.engine, where=where, limit=limit, offset=offset, newest_first=True)
    return Page[InspectionOut](
        items=with_reviews(p, rows), total=count_records(p.engine, where), limit=limit, offset=offset
    )


@router.get("/inspections", response_model=Page[InspectionOut], responses=errors())
def inspections(
    p: Annotated[Platform, Depends(platform)],
    _: Operator,
    station: str | None = None,
    recipe: str | None = None,
    verdict: Verdict | None = None,
    part_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Page[InspectionOut]:
    """Inspections, newest first."""
    where = RecordFilter(
        station=station,
        recipe=recipe,
        verdict=verdict.value if verdict else None,
        part_id=part_id,
        since=since,
        until=until,
    )
    return _page(p, where, limit, offset)


def _record(p: Platform, inspection_id: RowId) -> dict[str, object]:
    row = get_record(p.engine, inspection_id)
    if row is None:
        raise not_found(f"inspection {inspection_id}")
    return row


@router.get("/inspections/{inspection_id}", response_model=InspectionDetail, responses=errors(404))
def inspection(inspection_id: RowId, p: Annotated[Platform, Depends(platform)], _: Operator) -> InspectionDetail:
    """One inspection with its review history and the model version that judged it."""
    row = _record(p, inspection_id)
    history = p.reviews.history(inspection_id)
    sha = row["model_sha256"]
    version = p.versions.number_of(str(row["station_id"]), sha) if isinstance(sha, str) else None
    return InspectionDetail.model_validate(
        {**row, "review": history[-1] if history else None, "reviews": history, "model_version": version}
    )


def _blob(p: Platform, row: dict[str, object], field: str) -> bytes:
    sha = row.get(field)
    if not isinstance(sha, str):
        raise not_found(f"{field.removesuffix('_sha256')} kept for this inspection (see storage.keep_ok_every)")
    try:
        return p.blob(str(row["station_id"]), sha)
    except FileNotFoundError as exc:
        raise not_found(f"file for {field} {sha}") from exc


@router.get("/inspections/{inspection_id}/image", response_class=Response, responses={**errors(404), **PNG})
def image(inspection_id: RowId, p: Annotated[Platform, Depends(platform)], _: Operator) -> Response:
    """The part's image as stored (the original file, or the preprocessed image)."""
    data = _blob(p, _record(p, inspection_id), "image_sha256")
    return Response(data, media_type="application/octet-stream" if data[:4] != b"\x89PNG" else "image/png")


@router.get("/inspections/{inspection_id}/heatmap", response_class=Response, responses={**errors(404), **PNG})
def heatmap(inspection_id: RowId, p: Annotated[Platform, Depends(platform)], _: Operator) -> Response:
    """The heat map: 8-bit, 128 is the NG threshold."""
    return Response(_blob(p, _record(p, inspection_id), "heatmap_sha256"), media_type="image/png")


@router.get("/inspections/{inspection_id}/overlay", response_class=Response, responses={**errors(404), **PNG})
def overlay(
    inspection_id: RowId,
    p: Annotated[Platform, Depends(platform)],
    _: Operator,
    max_side: Annotated[int | None, Query(ge=32, le=8192)] = None,
) -> Response:
    """The image with its heat map and regions drawn on."""
    row = _record(p, inspection_id)
    try:
        picture = decode_image(_blob(p, row, "image_sha256"), "image")
        heat = decode_image(_blob(p, row, "heatmap_sha256"), "heatmap")[..., 0] if row["heatmap_sha256"] else None
    except ImageError as exc:
        raise HTTPException(409, f"stored image cannot be read: {exc}") from exc
    regions = [Region.model_validate(g) for g in row["regions"]]  # type: ignore[attr-defined]
    return Response(
        encode(render_overlay(np.asarray(picture), heat, regions, max_side=max_side), ".png"), media_type="image/png"
    )


@router.post(
    "/inspections/{inspection_id}/reviews", response_model=ReviewOut, status_code=201, responses=errors(404, 409)
)
def review(
    inspection_id: RowId, body: ReviewIn, p: Annotated[Platform, Depends(platform)], principal: Reviewer
) -> ReviewOut:
    """Confirm an NG as a defect or mark it a false alarm; confirm an OK as good or flag a missed defect."""
    try:
        out = p.reviews.add(inspection_id, body.outcome, principal.user.username, body.label, body.note)
    except LookupError as exc:
        raise not_found(f"inspection {inspection_id}") from exc
    except ReviewError as exc:
        raise HTTPException(409, str(exc)) from exc
    p.audit.add(principal.user.username, "review", f"inspection {inspection_id}", outcome_=body.outcome.value)
    return ReviewOut.model_validate(out)


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


@router.get("/events", response_model=list[EventOut], responses=errors())
def events(
    p: Annotated[Platform, Depends(platform)],
    _: Operator,
    station: str | None = None,
    severity: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EventOut]:
    """Station events and alarms, newest first."""
    rows = query_events(p.engine, station, severity, limit, newest_first=True)
    return [EventOut.model_validate(e) for e in rows]
