"""Recipes, model versions (with lineage and review metrics), activation and training jobs."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from huoyan.core.text import Message
from huoyan.server.platform import Platform, platform
from huoyan.server.routes.common import RowId, errors, not_found, said
from huoyan.server.schemas import ActionIn, ModelVersionOut, RecipeOut, TrainingJobOut, TrainingRequest
from huoyan.server.security import Engineer, Principal
from huoyan.store.records import as_utc
from huoyan.store.schema import RecipeRow
from huoyan.store.versions import artifact_of, version_ref

router = APIRouter(prefix="/api", tags=["models"])


async def switch_to(
    p: Platform, version: dict[str, Any], principal: Principal, action: str, reason: str | None = None
) -> dict[str, Any]:
    """Make ``version`` its station's running model; answered as 409 when that cannot be.
    The audit trail keeps who, what and the ``reason`` given."""
    host = p.hosts.get(version["station_id"])
    if host is None:
        raise HTTPException(
            409, Message("station {station} is not hosted by this server", station=version["station_id"])
        )
    try:
        await asyncio.to_thread(artifact_of, version, p.blobs)  # versions from before the store kept models
        await host.activate(version_ref(version))
    except (RuntimeError, FileNotFoundError, ValueError) as exc:
        p.audit.add(principal.user.username, action, version["station_id"], "failed", error=str(exc), reason=reason)
        raise HTTPException(409, said(exc)) from exc
    p.versions.mark_active(version["id"])
    p.versions.clear_threshold_override(version["station_id"])  # a raw score of the model before
    p.audit.add(principal.user.username, action, version["station_id"], version=version["version"], reason=reason)
    current = p.versions.get(version["id"])
    assert current is not None
    return current


@router.get("/recipes", response_model=list[RecipeOut], responses=errors())
def recipes(p: Annotated[Platform, Depends(platform)], _: Engineer) -> list[RecipeOut]:
    """Every recipe version any station has run, newest first, and where each is active now."""
    active: dict[tuple[str, str], list[str]] = {}
    for sid, host in p.hosts.items():
        status = host.status()
        active.setdefault((status.recipe_id, status.recipe_version), []).append(sid)
    with Session(p.engine) as db:
        rows = db.scalars(select(RecipeRow).order_by(RecipeRow.created_at.desc(), RecipeRow.id.desc()))
        return [
            RecipeOut(
                recipe_id=r.recipe_id,
                version=r.version,
                content_sha256=r.content_sha256,
                created_at=as_utc(r.created_at),
                active_on=active.get((r.recipe_id, r.version), []),
                body=r.body,
            )
            for r in rows
        ]


@router.get("/models", response_model=list[ModelVersionOut], responses=errors())
def models(p: Annotated[Platform, Depends(platform)], _: Engineer, station: str | None = None) -> list[ModelVersionOut]:
    return [ModelVersionOut.model_validate(v) for v in p.versions.for_station(station)]


@router.get("/models/{version_id}", response_model=ModelVersionOut, responses=errors(404))
def model(version_id: RowId, p: Annotated[Platform, Depends(platform)], _: Engineer) -> ModelVersionOut:
    v = p.versions.get(version_id)
    if v is None:
        raise not_found(Message("model version {id}", id=version_id))
    return ModelVersionOut.model_validate(v)


@router.post("/models/{version_id}/activate", response_model=ModelVersionOut, responses=errors(404, 409))
async def activate(
    version_id: RowId,
    p: Annotated[Platform, Depends(platform)],
    principal: Engineer,
    body: ActionIn | None = None,
) -> ModelVersionOut:
    """Switch the station to this version: intake pauses, parts in flight finish, the new
    model judges the next part. The version before it is kept and can be activated again."""
    v = p.versions.get(version_id)
    if v is None:
        raise not_found(Message("model version {id}", id=version_id))
    reason = body.reason if body else None
    return ModelVersionOut.model_validate(await switch_to(p, v, principal, "model-activate", reason))


@router.get("/training-jobs", response_model=list[TrainingJobOut], responses=errors())
def training_jobs(
    p: Annotated[Platform, Depends(platform)], _: Engineer, station: str | None = None
) -> list[TrainingJobOut]:
    return [TrainingJobOut.model_validate(j) for j in p.versions.jobs(station)]


@router.get("/training-jobs/{job_id}", response_model=TrainingJobOut, responses=errors(404))
def training_job(job_id: RowId, p: Annotated[Platform, Depends(platform)], _: Engineer) -> TrainingJobOut:
    job = p.versions.job(job_id)
    if job is None:
        raise not_found(Message("training job {id}", id=job_id))
    return TrainingJobOut.model_validate(job)


@router.post("/training-jobs", response_model=TrainingJobOut, status_code=202, responses=errors(404))
def train(body: TrainingRequest, p: Annotated[Platform, Depends(platform)], principal: Engineer) -> TrainingJobOut:
    """Queue training of a new version from the station's collected good images, or (mode
    ``update``) a guarded update of the active model's bank with the reviewed false alarms;
    it runs on the server and ends as a candidate version with metrics next to the active
    one's, or as a failed job saying why the update was refused."""
    if body.station_id not in p.hosts:
        raise not_found(Message("station '{station}' on this server", station=body.station_id))
    params = {"max_images": body.max_images, "mode": body.mode}
    job = p.versions.enqueue(body.station_id, params, principal.user.username)
    p.audit.add(principal.user.username, "training-requested", body.station_id, job=job["id"], mode=body.mode)
    return TrainingJobOut.model_validate(job)
