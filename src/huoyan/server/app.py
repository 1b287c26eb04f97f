"""The FastAPI application: REST API, live stream, metrics and dashboard over one ``Platform``.

``create_app`` wires the routers; the platform (database, hosted stations, training
worker) starts and stops with the app's lifespan. ``huoyan serve`` runs it with uvicorn.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from huoyan import __version__
from huoyan.core.text import Message
from huoyan.server import i18n
from huoyan.server.platform import Platform, Settings
from huoyan.server.routes import (
    admin,
    alarms,
    auth,
    defect_types,
    measurements,
    models,
    packages,
    pages,
    quality,
    records,
    reinspections,
    remote,
    stations,
)
from huoyan.server.routes.stations import MAX_UPLOAD
from huoyan.server.security import COOKIE, LoginRequired
from huoyan.server.uploads import FORM_OVERHEAD, BodyLimit

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
ROUTERS = (
    auth.router,
    stations.router,
    records.router,
    reinspections.router,
    remote.router,
    defect_types.router,
    alarms.router,
    measurements.router,
    quality.router,
    models.router,
    packages.router,
    admin.router,
    pages.router,
)


MAX_BODY = 1024 * 1024  # JSON bodies (logins, reviews, settings); uploads have their own limit


def _language_of(request: Request, plat: Platform) -> str | None:
    """The language the asking user chose: known once they were identified, else looked
    up by their session (a path no route has runs no authentication)."""
    if hasattr(request.state, "language"):
        return request.state.language  # type: ignore[no-any-return]
    cookie = request.cookies.get(COOKIE)
    try:
        found = plat.accounts.session_user(cookie) if cookie else None
    except (OperationalError, InterfaceError):  # the database is what failed: the browser's language will do
        return None
    return found[0].language if found else None


def _body_limit(path: str) -> int:
    if path == "/api/inspect" or (path.startswith("/api/stations/") and path.endswith("/inspect")):
        return MAX_UPLOAD + FORM_OVERHEAD
    if path.startswith("/api/remote/blobs/"):  # a remote station's NG image, as large as an upload
        return MAX_UPLOAD
    return packages.MAX_PACKAGE if path == "/api/packages" else MAX_BODY


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(("/api/", "/metrics"))


def create_app(settings: Settings, start_platform: bool = True) -> FastAPI:
    plat = Platform(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if start_platform:
            plat.start()
        try:
            yield
        finally:
            if start_platform:
                plat.stop()

    app = FastAPI(
        title="Huoyan",
        version=__version__,
        description="Inspection records, live stations, review and model versions. Every route but "
        "/api/health and /api/health/ready needs a session (POST /api/session) or an API key.",
        lifespan=lifespan,
        # The document is served at /api/openapi.json behind login; no public docs pages.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.platform = plat

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.next_url)}", status_code=303)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def database_down(request: Request, exc: Exception) -> Response:
        # The stations keep inspecting and spool their records; the API says why it cannot answer.
        log.error("database unavailable: %s", str(exc).splitlines()[0])
        return await errors(request, HTTPException(503, Message("the database is unavailable; try again shortly")))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # A fault of ours: logged with its trace; the browser gets the dashboard's page, a client JSON.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return await errors(
            request, HTTPException(500, Message("something went wrong on the server; see the server's log"))
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's own answer, its messages said in the reader's language.
        gettext = i18n.reader_gettext(request, _language_of(request, plat))
        found = [{**error, "msg": i18n.validation_message(error, gettext)} for error in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": jsonable_encoder(found)})

    # Starlette's class: the router's own 404 for a path no route has is one too.
    @app.exception_handler(StarletteHTTPException)
    async def errors(request: Request, exc: StarletteHTTPException) -> Response:
        saved = _language_of(request, plat)
        detail = Message("Not Found") if exc.detail == "Not Found" else exc.detail  # the router's own 404
        if isinstance(detail, Message):  # said in the reader's language (huoyan.server.i18n)
            text = detail.translated(i18n.reader_gettext(request, saved))
            exc = StarletteHTTPException(exc.status_code, text, exc.headers)
        if _is_api(request):
            return await http_exception_handler(request, exc)
        return pages.render(
            request, "error.html", None, exc.status_code, language=saved, status=exc.status_code, detail=exc.detail
        )

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        if settings.secure_cookies:  # served over HTTPS (TLS here, or a proxy in front)
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not _is_api(request):
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
                "script-src 'self' 'unsafe-eval'",  # plotly.js compiles some functions at run time
            )
        return response

    # Outermost: bodies are capped before anything reads them (uploads read theirs after login).
    app.add_middleware(BodyLimit, limit_for=_body_limit)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
