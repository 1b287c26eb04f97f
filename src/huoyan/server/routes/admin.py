"""Users, API keys and the audit trail: admins only."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response

from huoyan.core.text import Message
from huoyan.server.platform import Platform, platform
from huoyan.server.routes.common import RowId, errors, not_found, said
from huoyan.server.schemas import (
    ApiKeyCreated,
    ApiKeyOut,
    AuditCheck,
    AuditOut,
    ChainsCheck,
    NewApiKey,
    NewUser,
    UserChange,
    UserOut,
)
from huoyan.server.security import Admin
from huoyan.store.accounts import AccountError, Role
from huoyan.store.verification import verify_all

router = APIRouter(prefix="/api", tags=["admin"])


@router.get("/users", response_model=list[UserOut], responses=errors())
def users(p: Annotated[Platform, Depends(platform)], _: Admin) -> list[UserOut]:
    return [UserOut.model_validate(u, from_attributes=True) for u in p.accounts.users()]


@router.post("/users", response_model=UserOut, status_code=201, responses=errors(409))
def add_user(body: NewUser, p: Annotated[Platform, Depends(platform)], principal: Admin) -> UserOut:
    try:
        user = p.accounts.add_user(body.username, body.password, body.role, principal.user.username)
    except AccountError as exc:
        raise HTTPException(409, said(exc)) from exc
    p.audit.add(principal.user.username, "user-add", body.username, role=body.role.value)
    return UserOut.model_validate(user, from_attributes=True)


@router.patch("/users/{username}", response_model=UserOut, responses=errors(404, 409))
def change_user(
    username: str, body: UserChange, p: Annotated[Platform, Depends(platform)], principal: Admin
) -> UserOut:
    """Change a user's role or display name, disable or enable them, or set a new password."""
    if p.accounts.get(username) is None:
        raise not_found(Message("user '{name}'", name=username))
    if username == principal.user.username and (body.active is False or (body.role and body.role != Role.ADMIN)):
        raise HTTPException(409, Message("an admin cannot disable or demote themselves; ask another admin"))
    try:
        user = p.accounts.update(username, body.role, body.active, body.password, body.display_name)
    except AccountError as exc:
        raise HTTPException(409, said(exc)) from exc
    changed = body.model_dump(exclude_none=True, exclude={"password"})
    p.audit.add(principal.user.username, "user-change", username, **changed, password_changed=body.password is not None)
    return UserOut.model_validate(user, from_attributes=True)


@router.get("/api-keys", response_model=list[ApiKeyOut], responses=errors())
def api_keys(p: Annotated[Platform, Depends(platform)], _: Admin) -> list[ApiKeyOut]:
    return [ApiKeyOut.model_validate(k) for k in p.accounts.api_keys()]


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201, responses=errors(404))
def add_api_key(body: NewApiKey, p: Annotated[Platform, Depends(platform)], principal: Admin) -> ApiKeyCreated:
    """A key for a machine, acting as ``username`` within that user's role and the key's scopes."""
    try:
        key_id, key = p.accounts.add_api_key(body.username, body.name, body.scopes, body.stations)
    except AccountError as exc:
        raise not_found(Message("user '{name}'", name=body.username)) from exc
    scopes = sorted(s.value for s in set(body.scopes))
    stations = None if body.stations is None else sorted(set(body.stations))
    p.audit.add(principal.user.username, "api-key-add", body.username, key_id=key_id, name=body.name, scopes=scopes,
                stations=stations)  # fmt: skip
    return ApiKeyCreated(id=key_id, key=key)


@router.delete("/api-keys/{key_id}", status_code=204, response_class=Response, responses=errors(404, 409))
def revoke_api_key(key_id: RowId, p: Annotated[Platform, Depends(platform)], principal: Admin) -> Response:
    if key_id == principal.api_key_id:
        raise HTTPException(409, Message("this request is made with that key: revoke it with another credential"))
    try:
        p.accounts.revoke_api_key(key_id)
    except AccountError as exc:
        raise not_found(Message("API key {id}", id=key_id)) from exc
    p.audit.add(principal.user.username, "api-key-revoke", str(key_id))
    return Response(status_code=204)


@router.get("/audit", response_model=list[AuditOut], responses=errors())
def audit(
    p: Annotated[Platform, Depends(platform)],
    _: Admin,
    actor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[AuditOut]:
    """The audit trail, newest first."""
    return [AuditOut.model_validate(e) for e in p.audit.entries(limit, offset, actor)]


@router.get("/audit/verify", response_model=AuditCheck, responses=errors())
def verify_audit(p: Annotated[Platform, Depends(platform)], _: Admin) -> AuditCheck:
    """Check the audit trail from the first entry to the last: hash links, MACs and the head."""
    return AuditCheck.model_validate(asdict(p.audit.verify()))


@router.get("/audit/chains", response_model=ChainsCheck, responses=errors())
def verify_chains(p: Annotated[Platform, Depends(platform)], _: Admin, station: str | None = None) -> ChainsCheck:
    """Check the audit trail and each station's record and review chains against the
    checkpoints in the trail (as ``huoyan audit verify`` does): the first edited, deleted or
    reordered record or review, and a tail cut off. It reads every record: seconds per
    hundred thousand."""
    return ChainsCheck.model_validate(verify_all(p.engine, p.audit, station).as_dict())
