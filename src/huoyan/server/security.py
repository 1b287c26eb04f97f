"""Who is asking, and may they: sessions, API keys, CSRF and roles as FastAPI dependencies.

Browsers log in and carry an HttpOnly, SameSite=Strict session cookie (Secure when the
server is told it runs behind HTTPS). Every state-changing request on a session must
also send the session's CSRF token in ``X-CSRF-Token``, which a page from another
site cannot read. Machines send an API key (``X-API-Key`` or ``Authorization: Bearer``)
and need no CSRF token. A key acts for its user, but only within the scopes chosen when
it was made (``upload``, ``read``, ``review``, ``admin``): a camera's upload key cannot
read records or post reviews. Every refusal for lack of role or scope is answered 403
and written to the audit trail.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from huoyan.core.text import Message
from huoyan.server.platform import Platform, platform
from huoyan.store.accounts import Role, Scope, User

log = logging.getLogger(__name__)
COOKIE = "huoyan_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Declared so the OpenAPI document lists the schemes (auto_error off: we answer ourselves).
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key for machines")
bearer = HTTPBearer(auto_error=False, description="an API key as a bearer token")
session_cookie = APIKeyCookie(name=COOKIE, auto_error=False, description="a browser session from POST /api/session")


@dataclass(frozen=True)
class Principal:
    user: User
    via: str  # "session" or "api-key"
    csrf_token: str | None = None
    session_token: str | None = None
    api_key_id: int | None = None
    scopes: frozenset[Scope] | None = None  # an API key's; None for a session (the whole role)
    stations: frozenset[str] | None = None  # the stations an API key may act for; None: any

    def may(self, scope: Scope) -> bool:
        return self.scopes is None or scope in self.scopes or Scope.ADMIN in self.scopes


class LoginRequired(Exception):
    """A page asked for without a session: the browser is sent to the login page."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def _identify(
    request: Request,
    p: Platform,
    key: str | None,
    bearer_auth: HTTPAuthorizationCredentials | None,
    cookie: str | None,
) -> Principal | None:
    api_key = key or (bearer_auth.credentials if bearer_auth else None)
    if api_key:
        found_key = p.accounts.api_key_user(api_key)
        if found_key is None:
            return None
        return Principal(
            found_key.user, "api-key", api_key_id=found_key.id, scopes=found_key.scopes, stations=found_key.stations
        )
    if cookie:
        found = p.accounts.session_user(cookie)
        if found is None:
            return None
        user, csrf = found
        principal = Principal(user, "session", csrf, cookie)
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent, csrf):
                p.audit.add(user.username, "csrf-check", request.url.path, "denied")
                raise HTTPException(403, Message("missing or wrong CSRF token (send the X-CSRF-Token header)"))
        return principal
    return None


def current_principal(
    request: Request,
    p: Annotated[Platform, Depends(platform)],
    key: Annotated[str | None, Security(api_key_header)] = None,
    bearer_auth: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
    cookie: Annotated[str | None, Security(session_cookie)] = None,
) -> Principal:
    principal = _identify(request, p, key, bearer_auth, cookie)
    if principal is not None:
        request.state.language = principal.user.language  # errors are said in it (huoyan.server.app)
    if principal is None:
        raise HTTPException(401, Message("log in or send an API key"), headers={"WWW-Authenticate": "Bearer"})
    return principal


def page_principal(
    request: Request,
    p: Annotated[Platform, Depends(platform)],
    cookie: Annotated[str | None, Security(session_cookie)] = None,
) -> Principal:
    principal = _identify(request, p, None, None, cookie)
    if principal is None:
        raise LoginRequired(str(request.url.path))
    request.state.language = principal.user.language
    return principal


def deny(p: Platform, principal: Principal, needed: Role, what: str, scope: Scope | None = None) -> HTTPException:
    user = principal.user
    if scope is not None:
        log.warning(
            "denied: API key %s of %s lacks the %s scope for %s", principal.api_key_id, user.username, scope, what
        )
        p.audit.add(user.username, "access", what, "denied", api_key=principal.api_key_id, needed_scope=scope.value)
        return HTTPException(403, Message("this API key lacks the {scope} scope", scope=scope.value))
    log.warning("denied: %s (%s) asked for %s, which needs %s", user.username, user.role, what, needed.value)
    p.audit.add(user.username, "access", what, "denied", role=user.role.value, needed=needed.value)
    return HTTPException(
        403,
        Message(
            "this needs the {needed} role; you are {role}", needed=Message(needed.value), role=Message(user.role.value)
        ),
    )


def check_station(p: Platform, principal: Principal, station_id: str) -> None:
    """Refuse (403, audited) a key limited to other stations than ``station_id``: a
    shop-floor PC's key, taken from it, cannot report as another station or send it parts."""
    allowed = principal.stations
    if allowed is None or station_id in allowed:
        return
    names = sorted(allowed)
    key, user = principal.api_key_id, principal.user.username
    log.warning("denied: API key %s of %s acts for %s only, not %s", key, user, names, station_id)
    p.audit.add(user, "access", station_id, "denied", api_key=key, stations=names)
    said = Message("this API key acts for {stations} only, not station {station}", stations=", ".join(names),
                   station=station_id)  # fmt: skip
    raise HTTPException(403, said)


def _role_check(needed: Role, scope: Scope, for_pages: bool) -> Callable[..., Principal]:
    source = page_principal if for_pages else current_principal

    # A default, not an annotation: annotations are strings here and cannot see ``source``.
    def check(
        request: Request,
        p: Annotated[Platform, Depends(platform)],
        principal: Principal = Depends(source),  # noqa: B008
    ) -> Principal:
        what = f"{request.method} {request.url.path}"
        if not principal.user.role.allows(needed):
            raise deny(p, principal, needed, what)
        if not principal.may(scope):
            raise deny(p, principal, needed, what, scope)
        return principal

    return check


def require(needed: Role, scope: Scope) -> object:
    """Dependency for API routes: the caller, if their role is at least ``needed`` and,
    for an API key, its scopes include ``scope``."""
    return Depends(_role_check(needed, scope, for_pages=False))


def require_page(needed: Role) -> object:
    """Dependency for pages: as ``require``, but no session means a redirect to log in."""
    return Depends(_role_check(needed, Scope.ADMIN, for_pages=True))


Operator = Annotated[Principal, require(Role.OPERATOR, Scope.READ)]
Uploader = Annotated[Principal, require(Role.OPERATOR, Scope.UPLOAD)]
Reviewer = Annotated[Principal, require(Role.OPERATOR, Scope.REVIEW)]
Engineer = Annotated[Principal, require(Role.ENGINEER, Scope.ADMIN)]
# A station on another PC: an engineer's key (it takes commands that change how parts are judged).
RemoteStationKey = Annotated[Principal, require(Role.ENGINEER, Scope.STATION)]
Admin = Annotated[Principal, require(Role.ADMIN, Scope.ADMIN)]
Authenticated = Annotated[Principal, Depends(current_principal)]
OperatorPage = Annotated[Principal, require_page(Role.OPERATOR)]
EngineerPage = Annotated[Principal, require_page(Role.ENGINEER)]
AdminPage = Annotated[Principal, require_page(Role.ADMIN)]
