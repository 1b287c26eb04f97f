"""Every route, without credentials and with a role too low for it.

The table below says which role each route needs. A route the table does not know
fails the test, so a new route cannot ship without deciding who may use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from huoyan.server.app import ROUTERS
from huoyan.server.platform import Platform
from huoyan.store.accounts import Role
from serverkit import PASSWORD, Keys, make_platform_app, write_recipe

# The icon and plotly are static assets the login page itself needs.
PUBLIC = {"/api/health", "/api/health/ready", "/login", "/vendor/plotly.min.js", "/favicon.ico", "/api/session:POST"}
ADMIN_ONLY = re.compile(r"^/(api/(users|api-keys|audit)|admin)")
ENGINEER_UP = re.compile(
    r"^/(api/(models|training-jobs|recipes|packages|remote)|api/stations/\{station_id\}/(rollback|threshold|pause|resume|recipe)"
    r"|models)"
)


def needed(path: str) -> Role:
    if ADMIN_ONLY.match(path):
        return Role.ADMIN
    if ENGINEER_UP.match(path):
        return Role.ENGINEER
    return Role.OPERATOR


def concrete(path: str) -> str:
    return (
        path.replace("{station_id}", "cell-1")
        .replace("{inspection_id}", "1")
        .replace("{version_id}", "1")
        .replace("{job_id}", "1")
        .replace("{key_id}", "999")
        .replace("{username}", "nobody")
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, model_file: Path) -> Iterator[tuple[TestClient, Platform, Keys]]:
    folder = tmp_path_factory.mktemp("authz")
    recipe = write_recipe(folder, "cell-1", model_file, "http")
    app, p, keys = make_platform_app(f"sqlite:///{folder / 'db.sqlite'}", folder, [recipe])
    with TestClient(app, follow_redirects=False) as client:
        yield client, p, keys


def routes(client: TestClient) -> list[tuple[str, str]]:
    out = []
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute):
                out += [(m, route.path) for m in sorted(route.methods) if m != "HEAD"]
    return out


def call(client: TestClient, method: str, path: str, headers: dict[str, str] | None = None) -> int:
    # Send valid-looking bodies so that a refused request is refused for who asks, not what.
    body = {"station_id": "cell-1", "username": "nobody", "name": "k", "outcome": "good"}
    if path.endswith("/inspect"):
        return client.post(concrete(path), files={"image": ("a.png", b"x")}, headers=headers).status_code
    kwargs = {"json": body} if method in ("POST", "PATCH") else {}
    return client.request(method, concrete(path), headers=headers, **kwargs).status_code


def test_every_route_is_classified_and_refuses_anonymous_callers(served: tuple[TestClient, Platform, Keys]) -> None:
    client, _, _ = served
    checked = 0
    for method, path in routes(client):
        if path in PUBLIC or f"{path}:{method}" in PUBLIC:
            continue
        status = call(client, method, path)
        if path.startswith(("/api/", "/metrics")):
            assert status == 401, f"{method} {path} answered {status} without credentials"
        else:
            assert status == 303, f"page {path} answered {status} without a session"
            assert client.get(concrete(path)).headers["location"].startswith("/login?next=")
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.ENGINEER])
def test_too_low_roles_get_403_and_are_logged(served: tuple[TestClient, Platform, Keys], role: Role) -> None:
    client, p, keys = served
    refused = []
    for method, path in routes(client):
        if path in PUBLIC or f"{path}:{method}" in PUBLIC or role.allows(needed(path)):
            continue
        if path.startswith(("/api/", "/metrics")):
            status = call(client, method, path, keys.headers(role))
        else:
            client.post("/api/session", json={"username": role.value, "password": PASSWORD})
            status = client.get(concrete(path)).status_code
            client.cookies.clear()
        assert status == 403, f"{role.value} got {status} from {method} {path}"
        refused.append(f"{method} {concrete(path)}")
    assert refused, "no route needs more than this role?"
    denied = {e["target"] for e in p.audit.entries(limit=1000, actor=role.value) if e["outcome"] == "denied"}
    assert set(refused) <= denied


def test_allowed_roles_are_not_refused(served: tuple[TestClient, Platform, Keys]) -> None:
    client, _, keys = served
    for method, path in routes(client):
        if method != "GET" or path in PUBLIC or not path.startswith("/api/") or path.endswith("/live"):
            continue
        status = call(client, method, path, keys.headers(needed(path)))
        assert status not in (401, 403), f"{needed(path).value} refused {method} {path} ({status})"


def test_operator_cannot_open_the_models_page(served: tuple[TestClient, Platform, Keys]) -> None:
    client, _, _ = served
    client.post("/api/session", json={"username": "operator", "password": PASSWORD})
    page = client.get("/models")
    assert page.status_code == 403 and "engineer role" in page.text
    assert client.get("/review").status_code == 200
    client.cookies.clear()
