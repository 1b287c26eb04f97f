"""Health (the only routes open to all), login and logout, and who am I."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from huoyan.core.text import Message
from huoyan.server.platform import Platform, platform
from huoyan.server.routes.common import errors
from huoyan.server.schemas import Health, LanguageIn, Login, Me
from huoyan.server.security import COOKIE, Authenticated, Operator, Principal, current_principal

router = APIRouter(prefix="/api", tags=["session"])


@router.get("/health", response_model=Health, tags=["health"])
def health() -> Health:
    """Liveness: the server answers."""
    return Health(status="ok")


@router.get("/health/ready", response_model=Health, tags=["health"], responses={503: {"model": Health}})
def ready(p: Annotated[Platform, Depends(platform)], response: Response) -> Health:
    """Readiness: the database answers and every hosted station runs."""
    stations = {sid: host.status().running for sid, host in p.hosts.items()}
    db = p.database_ok()
    ok = db and all(stations.values())
    if not ok:
        response.status_code = 503
    return Health(status="ready" if ok else "not ready", database=db, stations=stations)


@router.post("/session", response_model=Me, responses=errors(429))
def login(body: Login, request: Request, response: Response, p: Annotated[Platform, Depends(platform)]) -> Me:
    """Log in: sets the session cookie and answers the CSRF token for later requests."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        # A login posted from another site's page (login CSRF) is refused.
        raise HTTPException(403, Message("cross-site login refused"))
    client = request.client.host if request.client else ""
    wait = p.throttle.wait_s(body.username, client)
    if wait > 0:
        p.audit.add(body.username, "login", client, "throttled")
        raise HTTPException(
            429, Message("too many failed logins; try again later"), headers={"Retry-After": str(int(wait) + 1)}
        )
    user = p.accounts.authenticate(body.username, body.password)
    if user is None:
        p.throttle.failed(body.username, client)
        p.audit.add(body.username, "login", client, "denied")
        raise HTTPException(401, Message("wrong username or password, or the account is disabled"))
    p.throttle.succeeded(body.username, client)
    token, csrf = p.accounts.open_session(user)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(p.settings.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=p.settings.secure_cookies,
        path="/",
    )
    p.audit.add(user.username, "login", client)
    return Me(username=user.username, role=user.role, via="session", csrf_token=csrf)


@router.delete("/session", status_code=204, responses=errors())
def logout(
    p: Annotated[Platform, Depends(platform)], principal: Annotated[Principal, Depends(current_principal)]
) -> Response:
    if principal.session_token:
        p.accounts.close_session(principal.session_token)
        p.audit.add(principal.user.username, "logout")
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/openapi.json", include_in_schema=False)
def openapi_document(request: Request, _: Operator) -> JSONResponse:
    """The OpenAPI document, for logged-in users and API keys only (no public /docs: its
    viewer would load JavaScript from a CDN, and a plant network has none)."""
    return JSONResponse(request.app.openapi())


@router.get("/me", response_model=Me, responses=errors())
def me(principal: Authenticated) -> Me:
    u = principal.user
    return Me(username=u.username, role=u.role, via=principal.via, csrf_token=principal.csrf_token, language=u.language)


@router.put("/me/language", response_model=Me, responses=errors())
def set_language(body: LanguageIn, p: Annotated[Platform, Depends(platform)], principal: Authenticated) -> Me:
    """The dashboard's language for this user, on every screen they log in to."""
    u = p.accounts.set_language(principal.user.username, body.language)
    return Me(username=u.username, role=u.role, via=principal.via, csrf_token=principal.csrf_token, language=u.language)
