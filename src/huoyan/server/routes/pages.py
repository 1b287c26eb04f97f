"""The dashboard's pages: server-rendered shells that ``static/app.js`` fills from the API.

Charts use plotly.js from the installed ``plotly`` wheel, served by this app, so the
dashboard works on a factory network with no internet.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from huoyan import __version__
from huoyan.core.text import Message
from huoyan.server import i18n
from huoyan.server.platform import Platform, platform
from huoyan.server.routes.common import RowId, not_found
from huoyan.server.security import AdminPage, EngineerPage, OperatorPage, Principal
from huoyan.store.accounts import Role

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent.parent / "templates"))


def plotly_js() -> Path:
    """plotly.min.js inside the installed plotly package."""
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


def render(
    request: Request, name: str, principal: Principal | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    user = principal.user if principal else None
    lang = i18n.choose(user.language if user else None, request.headers.get("accept-language"))
    _ = i18n.translations(lang).gettext
    nav = [
        (_("Stations"), "/stations", Role.OPERATOR),
        (_("Records"), "/records", Role.OPERATOR),
        (_("Sensors"), "/sensors", Role.OPERATOR),
        (_("Quality"), "/quality", Role.OPERATOR),
        (_("Review"), "/review", Role.OPERATOR),
        (_("Re-inspections"), "/reinspections", Role.OPERATOR),
        (_("Models"), "/models", Role.ENGINEER),
        (_("Admin"), "/admin", Role.ADMIN),
    ]
    return templates.TemplateResponse(
        request,
        name,
        {
            "user": user,
            "csrf": principal.csrf_token if principal else "",
            "nav": [(label, href) for label, href, role in nav if user and user.role.allows(role)],
            "version": __version__,
            "_": _,
            "lang": lang,
            "languages": i18n.LANGUAGES,
            "chosen_language": user.language if user else None,
            "script_messages": i18n.script_messages(lang),
            **context,
        },
        status_code=status_code,
    )


def same_site_path(target: str) -> str:
    """``target`` if it is a path on this server, else "/": an open redirect after login
    would help phishing. Browsers read a backslash as a slash and drop tabs and newlines,
    so ``/\\host``, ``/%09/host`` and the like lead to another host and are refused."""
    if not target.startswith("/") or any(c == "\\" or c.isspace() or not c.isprintable() for c in target):
        return "/"
    parts = urlsplit(target)
    if target.startswith("//") or parts.scheme or parts.netloc:
        return "/"
    return target


@router.get("/vendor/plotly.min.js")
def plotly_bundle() -> Response:
    return FileResponse(plotly_js(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})


@router.get("/favicon.ico")
def favicon() -> Response:
    """The dashboard's own icon (an eye, 火眼), so a browser's request for it is no 404."""
    return FileResponse(
        Path(__file__).parent.parent / "static" / "favicon.svg",
        media_type="image/svg+xml",
        headers={"Cache-Control": "max-age=86400"},
    )


@router.get("/login")
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", None, next=same_site_path(next))


@router.get("/")
def home(p: Annotated[Platform, Depends(platform)], _: OperatorPage) -> RedirectResponse:
    first = next(iter(p.hosts), None)
    return RedirectResponse(f"/stations/{first}" if first else "/records", status_code=303)


@router.get("/stations")
def stations_page(request: Request, p: Annotated[Platform, Depends(platform)], principal: OperatorPage) -> Response:
    return render(request, "stations.html", principal, stations=list(p.hosts))


@router.get("/stations/{station_id}")
def live_page(
    station_id: str, request: Request, p: Annotated[Platform, Depends(platform)], principal: OperatorPage
) -> Response:
    if station_id not in p.hosts:
        raise not_found(Message("station '{station}' on this server", station=station_id))
    return render(request, "live.html", principal, station=station_id, stations=list(p.hosts))


@router.get("/records")
def records_page(request: Request, p: Annotated[Platform, Depends(platform)], principal: OperatorPage) -> Response:
    return render(request, "records.html", principal, stations=list(p.hosts))


@router.get("/records/{inspection_id}")
def record_page(inspection_id: RowId, request: Request, principal: OperatorPage) -> Response:
    return render(request, "record.html", principal, inspection_id=inspection_id)


@router.get("/sensors")
def sensors_page(request: Request, p: Annotated[Platform, Depends(platform)], principal: OperatorPage) -> Response:
    return render(request, "sensors.html", principal, stations=list(p.hosts), station="")


@router.get("/sensors/{station_id}")
def sensor_page(
    station_id: str, request: Request, p: Annotated[Platform, Depends(platform)], principal: OperatorPage
) -> Response:
    """Any station whose records measure something: it may run on another PC."""
    return render(request, "sensors.html", principal, stations=list(p.hosts), station=station_id)


@router.get("/quality")
def quality_page(request: Request, p: Annotated[Platform, Depends(platform)], principal: OperatorPage) -> Response:
    return _quality(request, p, principal, "")


@router.get("/quality/{station_id}")
def station_quality_page(
    station_id: str, request: Request, p: Annotated[Platform, Depends(platform)], principal: OperatorPage
) -> Response:
    """Control charts, capability, score drift and alarms of a station (it may run on another PC)."""
    return _quality(request, p, principal, station_id)


def _quality(request: Request, p: Platform, principal: Principal, station: str) -> Response:
    engineer = principal.user.role.allows(Role.ENGINEER)
    return render(request, "quality.html", principal, stations=list(p.hosts), station=station, engineer=engineer)


@router.get("/review")
def review_page(request: Request, p: Annotated[Platform, Depends(platform)], principal: OperatorPage) -> Response:
    return render(request, "review.html", principal, stations=list(p.hosts))


@router.get("/reinspections")
def reinspections_page(request: Request, principal: OperatorPage) -> Response:
    return render(request, "reinspections.html", principal)


@router.get("/models")
def models_page(request: Request, p: Annotated[Platform, Depends(platform)], principal: EngineerPage) -> Response:
    return render(request, "models.html", principal, stations=list(p.hosts))


@router.get("/admin")
def admin_page(request: Request, principal: AdminPage) -> Response:
    return render(request, "admin.html", principal)
