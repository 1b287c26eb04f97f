"""Hosted stations: status and counters, image upload (the HTTP source), the live stream, metrics."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from huoyan.core.records import EvidenceKind
from huoyan.core.station import StationBusy, StationHandle, StationStatus
from huoyan.core.text import Message
from huoyan.decision import judge
from huoyan.server.live import sse
from huoyan.server.platform import Platform, platform
from huoyan.server.remote import CommandTimeout
from huoyan.server.routes.common import errors, not_found, said
from huoyan.server.routes.models import switch_to
from huoyan.server.schemas import (
    ActionIn,
    RecipeSwitchIn,
    ShiftCountsOut,
    ThresholdIn,
    ThresholdPreviewOut,
    UploadResult,
)
from huoyan.server.security import Engineer, Operator, Principal, Uploader, check_station
from huoyan.server.uploads import multipart_body, read_form
from huoyan.store.counters import reset_counters, shift_counts
from huoyan.store.records import UNAVAILABLE, get_inspection, recent_scores
from huoyan.vision.imageio import ImageError, ImageTooLarge, check_pixels

router = APIRouter(tags=["stations"])
MAX_UPLOAD = 64 * 1024 * 1024
UPLOAD_TIMEOUT_S = 60.0


def _host(p: Platform, station_id: str) -> StationHandle:
    host = p.hosts.get(station_id)
    if host is None:
        raise not_found(Message("station '{station}' on this server", station=station_id))
    return host


@router.get("/api/stations", response_model=list[StationStatus], responses=errors())
def stations(p: Annotated[Platform, Depends(platform)], _: Operator) -> list[StationStatus]:
    return [h.status() for h in p.hosts.values()]


@router.get("/api/stations/{station_id}", response_model=StationStatus, responses=errors(404))
def station(station_id: str, p: Annotated[Platform, Depends(platform)], _: Operator) -> StationStatus:
    return _host(p, station_id).status()


class Upload(BaseModel):
    """The multipart form of an upload (documented here, read by ``read_form`` after login)."""

    image: bytes = Field(description="the part's image (PNG, JPEG, BMP, TIFF …)")
    part_id: str | None = Field(default=None, max_length=200)
    lot: str | None = Field(default=None, max_length=200, description="the lot (batch) the part belongs to")


class RecipeUpload(Upload):
    recipe: str = Field(min_length=1, max_length=200, description="recipe id")


UPLOAD_ERRORS = errors(400, 404, 409, 413, 415, 422, 503)


@router.post(
    "/api/stations/{station_id}/inspect",
    response_model=UploadResult,
    responses=UPLOAD_ERRORS,
    openapi_extra=multipart_body(Upload),
)
async def inspect_upload(
    station_id: str, request: Request, p: Annotated[Platform, Depends(platform)], principal: Uploader
) -> UploadResult:
    """Inspect one uploaded image on a station whose recipe's source is ``http``; answers
    once the record is stored, with the verdict, score, regions and heat map."""
    check_station(p, principal, station_id)
    host = _host(p, station_id)
    form, name = await read_form(request, Upload, "image", MAX_UPLOAD)
    return await _inspect(p, host, form, name)


@router.post(
    "/api/inspect", response_model=UploadResult, responses=UPLOAD_ERRORS, openapi_extra=multipart_body(RecipeUpload)
)
async def inspect_with_recipe(
    request: Request, p: Annotated[Platform, Depends(platform)], principal: Uploader
) -> UploadResult:
    """Inspect one uploaded image with a recipe: on the HTTP-source station running it
    (of those the key may send parts to)."""
    form, name = await read_form(request, RecipeUpload, "image", MAX_UPLOAD)
    running = [h for h in p.hosts.values() if (s := h.status()).recipe_id == form.recipe and s.takes_uploads]
    if running:
        # One the key may send parts to, if any runs the recipe; else the refusal names the first.
        allowed = [h for h in running if principal.stations is None or h.station_id in principal.stations]
        host = (allowed or running)[0]
        check_station(p, principal, host.station_id)
        return await _inspect(p, host, form, name)
    raise not_found(Message("station running recipe '{recipe}' with an http source", recipe=form.recipe))


async def _inspect(p: Platform, host: StationHandle, form: Upload, name: str) -> UploadResult:
    limit = host.max_image_pixels
    try:
        # Refused from the header, before the station would decode it (a decompression bomb).
        await asyncio.to_thread(check_pixels, form.image, limit, "upload")
    except ImageTooLarge as exc:
        raise HTTPException(413, said(exc)) from exc
    except ImageError:
        pass  # not an image at all: the station records it as an ERROR part
    try:
        future = host.submit(form.image, name or "upload", form.part_id or None, form.lot or None)
    except TypeError as exc:
        raise HTTPException(409, said(exc)) from exc
    except StationBusy as exc:
        raise HTTPException(503, said(exc)) from exc
    try:
        record = await asyncio.wait_for(asyncio.wrap_future(future), UPLOAD_TIMEOUT_S)
    except StationBusy as exc:
        raise HTTPException(503, said(exc)) from exc
    except TimeoutError as exc:
        raise HTTPException(
            503, "the station did not answer in time; the part stays queued and is recorded once inspected"
        ) from exc
    try:
        stored = await asyncio.to_thread(get_inspection, p.engine, None, record.key)
    except UNAVAILABLE:
        stored = None  # the record waits in the station's spool; answer with it as decided
    body = (stored or record).model_dump()
    heat_map = record.evidence_of(EvidenceKind.ANOMALY_MAP)
    heat = None if heat_map is None else base64.b64encode(p.blob(host.station_id, heat_map.sha256)).decode()
    return UploadResult.model_validate({**body, "heatmap_png_base64": heat})


STATUS_EVERY_S = 1.0  # the live stream's status (counters, state, alarms), whatever the part rate


@router.get(
    "/api/stations/{station_id}/live",
    responses={**errors(404), 200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
    response_class=StreamingResponse,
)
async def live(station_id: str, request: Request, p: Annotated[Platform, Depends(platform)], _: Operator) -> Response:
    """Server-Sent Events: ``part`` for each part decided (with a preview overlay),
    ``alarm`` for station events and ``status`` every second."""
    host = _host(p, station_id)

    async def stream() -> AsyncIterator[str]:
        sub = p.hub.subscribe(station_id)
        pending: asyncio.Task[tuple[str, dict[str, Any]]] | None = None
        loop = asyncio.get_running_loop()
        try:
            yield sse("status", host.status().model_dump(mode="json"))
            due = loop.time() + STATUS_EVERY_S
            while not await request.is_disconnected():
                pending = pending or asyncio.ensure_future(sub.get())
                done, _ = await asyncio.wait({pending}, timeout=max(0.0, due - loop.time()))
                if done:
                    kind, payload = pending.result()
                    pending = None
                    yield sse(kind, payload)
                # Due whether or not parts keep coming: a busy line never pauses for a second.
                if loop.time() >= due:
                    yield sse("status", host.status().model_dump(mode="json"))
                    due = loop.time() + STATUS_EVERY_S
        finally:
            if pending is not None:
                pending.cancel()
            sub.close()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.post("/api/stations/{station_id}/rollback", response_model=StationStatus, responses=errors(404, 409))
async def rollback(
    station_id: str, p: Annotated[Platform, Depends(platform)], principal: Engineer, body: ActionIn | None = None
) -> StationStatus:
    """Go back to the active model version's parent."""
    host = _host(p, station_id)
    active = p.versions.active(station_id)
    parent = p.versions.get(active["parent_id"]) if active and active["parent_id"] else None
    if parent is None:
        raise HTTPException(409, Message("the active version has no parent to roll back to"))
    await switch_to(p, parent, principal, "model-rollback", body.reason if body else None)
    return host.status()


@router.get("/api/stations/{station_id}/threshold/preview", response_model=ThresholdPreviewOut, responses=errors(404))
def preview_threshold(
    station_id: str,
    p: Annotated[Platform, Depends(platform)],
    _: Engineer,
    threshold: Annotated[float, Query(gt=0, le=1e9, description="the raw score to try")],
    parts: Annotated[int, Query(ge=1, le=10_000, description="how many recent parts to judge again")] = 500,
) -> ThresholdPreviewOut:
    """Before a threshold is set: how many of the station's recent parts (by its current
    model) would change verdict."""
    status = _host(p, station_id).status()
    scored = recent_scores(p.engine, station_id, status.model_sha256, parts)
    return ThresholdPreviewOut.model_validate(asdict(judge.preview_threshold(scored, threshold)))


@router.post("/api/stations/{station_id}/pause", response_model=StationStatus, responses=errors(404, 409, 504))
async def pause(
    station_id: str, p: Annotated[Platform, Depends(platform)], principal: Engineer, body: ActionIn | None = None
) -> StationStatus:
    """Take no new parts until resumed; the parts in flight are finished and recorded."""
    return await _line_action(p, station_id, principal, "station-pause", body, pausing=True)


@router.post("/api/stations/{station_id}/resume", response_model=StationStatus, responses=errors(404, 409, 504))
async def resume(
    station_id: str, p: Annotated[Platform, Depends(platform)], principal: Engineer, body: ActionIn | None = None
) -> StationStatus:
    """Take parts again."""
    return await _line_action(p, station_id, principal, "station-resume", body, pausing=False)


async def _line_action(
    p: Platform, station_id: str, principal: Principal, action: str, body: ActionIn | None, pausing: bool
) -> StationStatus:
    host = _host(p, station_id)
    who, reason = principal.user.username, body.reason if body else None
    try:
        await (host.pause() if pausing else host.resume())
    except CommandTimeout as exc:
        p.audit.add(who, action, station_id, "queued", reason=reason)
        raise HTTPException(504, said(exc)) from exc
    except RuntimeError as exc:
        p.audit.add(who, action, station_id, "failed", error=str(exc), reason=reason)
        raise HTTPException(409, said(exc)) from exc
    p.audit.add(who, action, station_id, reason=reason)
    return host.status()


@router.put("/api/stations/{station_id}/recipe", response_model=StationStatus, responses=errors(404, 409, 504))
async def switch_recipe(
    station_id: str, body: RecipeSwitchIn, p: Annotated[Platform, Depends(platform)], principal: Engineer
) -> StationStatus:
    """Judge by another recipe of the station's table (``feedback.recipes``: by its id or
    the PLC's index) from the next part on, as a PLC's recipe selection does."""
    host = _host(p, station_id)
    before = host.status().recipe_id
    who = principal.user.username
    try:
        await host.switch_recipe(body.recipe)
    except CommandTimeout as exc:
        p.audit.add(who, "recipe-switch", station_id, "queued", to=body.recipe, reason=body.reason)
        raise HTTPException(504, said(exc)) from exc
    except RuntimeError as exc:
        p.audit.add(who, "recipe-switch", station_id, "failed", to=body.recipe, error=str(exc), reason=body.reason)
        raise HTTPException(409, said(exc)) from exc
    after = host.status()
    p.audit.add(who, "recipe-switch", station_id, before=before, after=after.recipe_id, reason=body.reason)
    return after


@router.put("/api/stations/{station_id}/threshold", response_model=StationStatus, responses=errors(404, 409))
async def set_threshold(
    station_id: str, body: ThresholdIn, p: Annotated[Platform, Depends(platform)], principal: Engineer
) -> StationStatus:
    """Set the station's NG threshold (a raw score) from the next part on, or return to the
    model's calibrated one. Records carry it as a derived recipe version; activating
    another model returns to that model's calibrated threshold."""
    host = _host(p, station_id)
    before = host.status().threshold
    try:
        await host.set_threshold(body.threshold, principal.user.username)
    except RuntimeError as exc:
        raise HTTPException(409, said(exc)) from exc
    after = host.status()
    p.audit.add(
        principal.user.username, "threshold-set", station_id, before=before, after=after.threshold, reason=body.reason
    )
    return after


@router.get("/api/stations/{station_id}/shift", response_model=ShiftCountsOut, responses=errors(404))
def shift(station_id: str, p: Annotated[Platform, Depends(platform)], _: Operator) -> ShiftCountsOut:
    """The station's parts by verdict and its yield in the current shift, or since the
    counters were reset in it: what the live view's shift panel shows."""
    _host(p, station_id)
    return ShiftCountsOut.model_validate(asdict(shift_counts(p.engine, station_id)))


@router.post("/api/stations/{station_id}/shift/reset", response_model=ShiftCountsOut, responses=errors(404))
def reset_shift(
    station_id: str, p: Annotated[Platform, Depends(platform)], principal: Operator, body: ActionIn | None = None
) -> ShiftCountsOut:
    """Count the station's parts from now on, for the rest of the shift (every screen);
    the audit trail keeps who and why."""
    _host(p, station_id)
    before = shift_counts(p.engine, station_id)
    reset_counters(p.engine, station_id, principal.user.username)
    p.audit.add(
        principal.user.username, "counters-reset", station_id, shift=before.shift, counts=before.counts,
        reason=body.reason if body else None,
    )  # fmt: skip
    return ShiftCountsOut.model_validate(asdict(shift_counts(p.engine, station_id)))


@router.get("/metrics", responses={**errors(), 200: {"content": {"text/plain": {}}}}, response_class=Response)
def metrics(p: Annotated[Platform, Depends(platform)], _: Operator) -> Response:
    """Prometheus metrics: parts by verdict, latency histogram, queue depth, parts/s, NG rate, alarms."""
    return Response(generate_latest(p.metrics.registry), media_type=CONTENT_TYPE_LATEST)
