"""Who is asking, and may they: sessions, API keys, CSRF and roles as FastAPI dependencies.

Browsers log in and carry an HttpOnly, SameSite=Strict session cookie (Secure when the
server is told it runs behind HTTPS). Every state-changing request on a session must
also send the session's CSRF token in ``X-CSRF-Token``, which a page from another
site cannot read. Machines send an API key (``X-API-Key`` or ``Authorization: Bearer``)
and need no CSRF token. Every refusal for lack of role is answered 403 and written to
the audit trail.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from huoyan.server.platform import Platform, platform
from huoyan.store.accounts import Role, User

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
        return None if found_key is None else Principal(found_key[0], "api-key", api_key_id=found_key[1])
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
                raise HTTPException(403, "missing or wrong CSRF token (send the X-CSRF-Token header)")
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
    if principal is None:
        raise HTTPException(401, "log in or send an API key", headers={"WWW-Authenticate": "Bearer"})
    return principal


def page_principal(
    request: Request,
    p: Annotated[Platform, Depends(platform)],
    cookie: Annotated[str | None, Security(session_cookie)] = None,
) -> Principal:
    principal = _identify(request, p, None, None, cookie)
    if principal is None:
        raise LoginRequired(str(request.url.path))
    return principal


def deny(p: Platform, principal: Principal, needed: Role, what: str) -> HTTPException:
    log.warning(
        "denied: %s (%s) asked for %s, which needs %s", principal.user.username, principal.user.role, what, needed.value
    )
    p.audit.add(principal.user.username, "access", what, "denied", role=principal.user.role.value, needed=needed.value)
    return HTTPException(403, f"this needs the {needed.value} role; you are {principal.user.role.value}")


def _role_check(needed: Role, for_pages: bool) -> Callable[..., Principal]:
    source = page_principal if for_pages else current_principal

    # A default, not an annotation: annotations are strings here and cannot see ``source``.
    def check(
        request: Request,
        p: Annotated[Platform, Depends(platform)],
        principal: Principal = Depends(source),  # noqa: B008
    ) -> Principal:
        if not principal.user.role.allows(needed):
            raise deny(p, principal, needed, f"{request.method} {request.url.path}")
        return principal

    return check


def require(needed: Role) -> object:
    """Dependency for API routes: the caller, if their role is at least ``needed``."""
    return Depends(_role_check(needed, for_pages=False))


def require_page(needed: Role) -> object:
    """Dependency for pages: as ``require``, but no session means a redirect to log in."""
    return Depends(_role_check(needed, for_pages=True))


Operator = Annotated[Principal, require(Role.OPERATOR)]
Engineer = Annotated[Principal, require(Role.ENGINEER)]
Admin = Annotated[Principal, require(Role.ADMIN)]
OperatorPage = Annotated[Principal, require_page(Role.OPERATOR)]
EngineerPage = Annotated[Principal, require_page(Role.ENGINEER)]
AdminPage = Annotated[Principal, require_page(Role.ADMIN)]
