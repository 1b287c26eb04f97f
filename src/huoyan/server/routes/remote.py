"""Stations on other PCs reporting to this server (``huoyan run --server``): their reports,
the commands handed back, the model versions they fetch by digest, and the NG evidence
they upload."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from huoyan.core.recipe import STATION_ID
from huoyan.core.station import LinkReply, LinkReport
from huoyan.core.text import Message
from huoyan.server.platform import Platform, platform
from huoyan.server.remote import RemoteStation
from huoyan.server.routes.common import errors, not_found
from huoyan.server.security import RemoteStationKey, check_station
from huoyan.store.schema import EvidenceRow, InspectionRow, ModelRow, ModelVersionRow

router = APIRouter(prefix="/api/remote", tags=["remote stations"])
StationIdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=STATION_ID)]
Sha256Path = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]


@router.post("/stations/{station_id}/link", response_model=LinkReply, responses=errors(409, 422))
def link(
    station_id: StationIdPath, body: LinkReport, p: Annotated[Platform, Depends(platform)], principal: RemoteStationKey
) -> LinkReply:
    """A remote station's report (status, commands' outcomes), once a second; answered with
    the commands waiting for it. The first report makes it one of this server's stations."""
    check_station(p, principal, station_id)
    if body.status.station_id != station_id:
        raise HTTPException(422, Message("the report is of station {station}", station=body.status.station_id))
    host = p.hosts.get(station_id)
    if host is None:
        host = p.join_remote(station_id)
        p.audit.add(principal.user.username, "station-joined", station_id)
    # A station id the server hosts itself is not taken over by a report.
    if not isinstance(host, RemoteStation):
        raise HTTPException(409, Message("station {station} is hosted by this server itself", station=station_id))
    return LinkReply(commands=host.reported(body), watchers=host.watchers)


@router.get(
    "/models/{sha256}",
    response_class=Response,
    responses={**errors(404), 200: {"content": {"application/octet-stream": {}}}},
)
def model_file(sha256: Sha256Path, p: Annotated[Platform, Depends(platform)], principal: RemoteStationKey) -> Response:
    """A model version's file, by its SHA-256: only models the server registered, not other
    blobs, and for a key limited to stations only a version of one of them (a shop-floor PC
    has no business with another line's models)."""
    known = select(ModelRow.id).where(ModelRow.sha256 == sha256)
    if principal.stations is not None:
        known = known.join(ModelVersionRow, ModelVersionRow.model_pk == ModelRow.id).where(
            ModelVersionRow.station_id.in_(principal.stations)
        )
    with Session(p.engine) as s:
        found = s.scalar(known.limit(1)) is not None
    if not found or not p.blobs.has(sha256):
        raise not_found(Message("model {digest}", digest=sha256[:12]))
    return Response(p.blobs.get(sha256), media_type="application/octet-stream")


@router.put("/blobs/{sha256}", status_code=204, response_class=Response, responses=errors(404, 413, 422))
async def put_evidence(
    sha256: Sha256Path, request: Request, p: Annotated[Platform, Depends(platform)], principal: RemoteStationKey
) -> Response:
    """A remote station's piece of NG evidence (an image, a heat map), checked against its
    SHA-256 and taken only when a stored record (of a station the key acts for) names it."""
    data = await request.body()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise HTTPException(422, Message("the evidence does not match its SHA-256"))
    naming = select(InspectionRow.station_id).join(EvidenceRow).where(EvidenceRow.sha256 == sha256)
    if principal.stations is not None:
        naming = naming.where(InspectionRow.station_id.in_(principal.stations))
    with Session(p.engine) as s:
        named = s.scalar(naming.limit(1)) is not None
    if not named:
        raise not_found(Message("record naming evidence {digest}", digest=sha256[:12]))
    await asyncio.to_thread(p.blobs.put, data, sha256)
    return Response(status_code=204)
