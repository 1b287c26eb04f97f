"""The server under hostile clients: uploads, redirects, keys, guessing, sessions, proxies,
and the audit trail under concurrent writers and edits by someone with database access."""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from huoyan.server.app import create_app
from huoyan.server.platform import Platform, Settings
from huoyan.server.throttle import LoginThrottle
from huoyan.store.accounts import Role
from huoyan.store.audit import AuditLog, _digest
from huoyan.store.database import make_engine, upgrade
from huoyan.store.records import query_records
from huoyan.store.schema import AuditRow
from serverkit import PASSWORD, Keys, live_server, make_platform_app, write_recipe

OPERATOR, ENGINEER, ADMIN = Role.OPERATOR, Role.ENGINEER, Role.ADMIN


@pytest.fixture()
def served_sqlite(model_file: Path, tmp_path: Path) -> Iterator[tuple[TestClient, Platform, Keys]]:
    recipe = write_recipe(tmp_path, "cell-1", model_file, "http")
    app, p, keys = make_platform_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, [recipe])
    with TestClient(app) as client:
        yield client, p, keys


def good_png(line_dir: Path) -> bytes:
    return sorted((line_dir / "test" / "good").glob("*.png"))[0].read_bytes()


def post_image(client: TestClient, headers: dict[str, str], data: bytes, name: str = "part.png") -> Any:
    return client.post("/api/stations/cell-1/inspect", files={"image": (name, data, "image/png")}, headers=headers)


def test_upload_names_the_database_refused_are_recorded_and_the_station_goes_on(
    served: tuple[TestClient, Platform, Keys], line_dir: Path
) -> None:
    client, p, keys = served
    h = keys.headers(OPERATOR)
    long_stem = "x" * 250 + ".png"  # the part id (from the name) is longer than its column
    r = post_image(client, h, good_png(line_dir), long_stem)
    assert r.status_code == 200, r.text
    assert len(r.json()["part_id"]) <= 200 and r.json()["source_name"].startswith("x" * 100)
    r = post_image(client, h, good_png(line_dir), "ctrl\x01\x1f-\u706b\u773c.png")
    assert r.status_code == 200, r.text
    assert not any(ord(c) < 0x20 for c in r.json()["source_name"])
    assert post_image(client, h, good_png(line_dir), "after.png").status_code == 200
    assert p.hosts["cell-1"].running
    assert len(query_records(p.engine)) == 3


class BrokenInspector:
    """Fails the way an engine bug would: inside the station loop, not inside one part."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def prepare(self, arrival: Any) -> Any:
        return self.inner.prepare(arrival)

    def run(self, batch: Any) -> Any:
        raise RuntimeError("engine fault")


def test_a_failed_hosted_station_is_restarted_and_its_uploads_told_the_truth(
    served_sqlite: tuple[TestClient, Platform, Keys], line_dir: Path
) -> None:
    client, p, keys = served_sqlite
    host = p.hosts["cell-1"]
    assert host.opened is not None
    host.watch(1)  # someone has the live view open
    host.opened.station.inspector = BrokenInspector(host.opened.station.inspector)
    r = post_image(client, keys.headers(OPERATOR), good_png(line_dir))
    assert r.status_code == 503 and "before this part was recorded" in r.json()["detail"]
    deadline = time.monotonic() + 30
    while not host.running and time.monotonic() < deadline:
        time.sleep(0.1)
    r = post_image(client, keys.headers(OPERATOR), good_png(line_dir))
    assert r.status_code == 200, r.text
    assert host.opened is not None and host.opened.line is not None
    assert host.opened.line.preview is not None  # the live view still gets previews


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header announces width x height, with almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_an_image_with_too_many_pixels_is_refused_before_decoding(
    served_sqlite: tuple[TestClient, Platform, Keys],
) -> None:
    client, p, keys = served_sqlite
    r = post_image(client, keys.headers(OPERATOR), png_header_only(20000, 20000))
    assert r.status_code == 413 and "20000x20000" in r.json()["detail"]
    assert query_records(p.engine) == []


def raw_request(port: int, head: str, body_prefix: bytes, timeout: float = 5.0) -> str:
    """Send a request's head and the start of its body, then read what the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode() + body_prefix)
        try:
            return s.recv(4096).decode(errors="replace")
        except TimeoutError:
            return ""


def test_upload_bodies_are_not_read_before_the_caller_is_known(
    served_sqlite: tuple[TestClient, Platform, Keys],
) -> None:
    client, _, keys = served_sqlite
    big = 100 * 1024 * 1024
    with live_server(client.app) as base:  # type: ignore[arg-type]
        port = int(base.rsplit(":", 1)[1])
        head = (
            "POST /api/stations/cell-1/inspect HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        )
        # No credentials: answered at once, without waiting for (or storing) the 50 MB announced.
        anonymous = head + f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
        assert raw_request(port, anonymous, b"--b\r\n" + b"x" * 65536).startswith("HTTP/1.1 401")
        head += f"Content-Length: {big}\r\n"
        # With a key, a body over the limit is refused from its declared length.
        key = keys.by_role[OPERATOR]
        assert raw_request(port, head + f"X-API-Key: {key}\r\n\r\n", b"--b\r\n").startswith("HTTP/1.1 413")
        # Bodies of other routes are capped too (before anything parses them).
        login = (
            f"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {big}\r\n\r\n"
        )
        assert raw_request(port, login, b"{").startswith("HTTP/1.1 413")


@pytest.mark.parametrize("evil", ["/%5Chost/", "/%09/host/", "/\\/host/", "//host/", "https://host/", "/%0a/host"])
def test_login_never_sends_the_browser_to_another_host(
    served_sqlite: tuple[TestClient, Platform, Keys], evil: str
) -> None:
    client, _, _ = served_sqlite
    page = client.get(f"/login?next={evil}")
    assert page.status_code == 200 and 'data-next="/"' in page.text


def test_login_keeps_a_same_site_next_path(served_sqlite: tuple[TestClient, Platform, Keys]) -> None:
    client, _, _ = served_sqlite
    assert 'data-next="/records?verdict=NG"' in client.get("/login", params={"next": "/records?verdict=NG"}).text


def test_api_keys_act_only_within_their_scopes(
    served_sqlite: tuple[TestClient, Platform, Keys], line_dir: Path
) -> None:
    client, p, keys = served_sqlite
    admin = keys.headers(ADMIN)
    made = client.post("/api/api-keys", json={"username": "operator", "name": "line-3 camera"}, headers=admin)
    assert made.status_code == 201
    camera = {"X-API-Key": made.json()["key"]}
    assert [k["scopes"] for k in client.get("/api/api-keys", headers=admin).json() if k["name"] == "line-3 camera"] == [
        ["upload"]
    ]
    part = post_image(client, camera, good_png(line_dir))
    assert part.status_code == 200
    assert client.get("/api/inspections", headers=camera).status_code == 403
    assert client.get(f"/api/inspections/{part.json()['id']}/image", headers=camera).status_code == 403
    review = {"outcome": "good"}
    assert client.post(f"/api/inspections/{part.json()['id']}/reviews", json=review, headers=camera).status_code == 403
    refusals = [e for e in p.audit.entries(actor="operator") if e["outcome"] == "denied"]
    assert refusals and refusals[0]["detail"]["needed_scope"] in ("read", "review")

    body = {"username": "operator", "name": "MES reader", "scopes": ["read", "review"]}
    reader = {"X-API-Key": client.post("/api/api-keys", json=body, headers=admin).json()["key"]}
    assert client.get("/api/inspections", headers=reader).status_code == 200
    assert client.post(f"/api/inspections/{part.json()['id']}/reviews", json=review, headers=reader).status_code == 201
    assert post_image(client, reader, good_png(line_dir)).status_code == 403
    # A key's scopes never widen its user's role.
    body = {"username": "operator", "name": "too much", "scopes": ["admin"]}
    wide = {"X-API-Key": client.post("/api/api-keys", json=body, headers=admin).json()["key"]}
    assert client.get("/api/models", headers=wide).status_code == 403
    assert client.get("/api/inspections", headers=wide).status_code == 200


def test_a_key_limited_to_stations_acts_for_no_other(
    served_sqlite: tuple[TestClient, Platform, Keys], line_dir: Path
) -> None:
    """A shop-floor PC's key names the stations it serves: taken from that PC, it cannot
    report as another station (and take that station's commands) or send it parts."""
    client, p, keys = served_sqlite
    admin = keys.headers(ADMIN)
    body = {"username": "engineer", "name": "line 3 PC", "scopes": ["station"], "stations": ["line3-a"]}
    made = client.post("/api/api-keys", json=body, headers=admin)
    assert made.status_code == 201, made.text
    pc = {"X-API-Key": made.json()["key"]}
    listed = [k for k in client.get("/api/api-keys", headers=admin).json() if k["name"] == "line 3 PC"]
    assert listed[0]["stations"] == ["line3-a"]

    def report(station: str) -> Any:
        status = {"station_id": station, "product": "washer", "running": True, "paused": False, "error": None,
                  "source": "replay", "recipe_id": "washer", "recipe_version": "1", "model_version": None,
                  "model_sha256": None, "threshold": 1.0, "threshold_set": False, "counts": {}, "parts_per_second": 0,
                  "ng_rate": 0, "queue_depth": 0, "latency_ms_p50": None, "latency_ms_p99": None, "alarms": {},
                  "spooled": 0}  # fmt: skip
        return client.post(f"/api/remote/stations/{station}/link", json={"status": status}, headers=pc)

    assert report("line3-a").status_code == 200
    refused = report("line3-b")
    assert refused.status_code == 403 and "line3-b" in refused.text
    assert {s["station_id"] for s in client.get("/api/stations", headers=admin).json()} == {"cell-1", "line3-a"}
    denied = [e for e in p.audit.entries(actor="engineer") if e["outcome"] == "denied"]
    assert denied[-1]["target"] == "line3-b" and denied[-1]["detail"]["stations"] == ["line3-a"]

    # It fetches the model versions of its own stations, not another station's model.
    sha = client.get("/api/stations/cell-1", headers=admin).json()["model_sha256"]
    fetched = client.get(f"/api/remote/models/{sha}", headers=pc)
    assert fetched.status_code == 404 and sha[:12] in fetched.text
    assert client.get(f"/api/remote/models/{sha}", headers=admin).status_code == 200  # a key for every station
    p.versions.add("line3-a", sha, "washer.safetensors", {}, "washer.safetensors", "engineer")
    fetched = client.get(f"/api/remote/models/{sha}", headers=pc)
    assert fetched.status_code == 200 and fetched.content == p.blobs.get(sha)

    # A camera's upload key, for one station.
    def camera(stations: list[str]) -> dict[str, str]:
        body = {"username": "operator", "name": "camera", "scopes": ["upload"], "stations": stations}
        return {"X-API-Key": client.post("/api/api-keys", json=body, headers=admin).json()["key"]}

    assert post_image(client, camera(["cell-2"]), good_png(line_dir)).status_code == 403
    assert post_image(client, camera(["cell-1"]), good_png(line_dir)).status_code == 200
    # Reading and reviewing are not limited by station: such a key is refused, not half-limited.
    body = {"username": "operator", "name": "reader", "scopes": ["read"], "stations": ["cell-1"]}
    assert client.post("/api/api-keys", json=body, headers=admin).status_code == 422


def test_wrong_guesses_from_one_address_do_not_lock_the_user_out_elsewhere() -> None:
    throttle = LoginThrottle(free=3, base_delay_s=1.0, max_delay_s=60.0, address_limit=30)
    for _ in range(8):
        throttle.failed("admin", "10.0.0.66")
    assert throttle.wait_s("admin", "10.0.0.66") > 10  # the guesser waits longer and longer
    assert throttle.wait_s("admin", "10.0.0.5") == 0  # the real admin at their desk does not
    for i in range(30):
        throttle.failed(f"user{i}", "10.0.0.77")
    assert throttle.wait_s("someone-else", "10.0.0.77") > 0  # one address sweeping user names is stopped


def test_a_throttled_user_is_delayed_not_locked_out(served_sqlite: tuple[TestClient, Platform, Keys]) -> None:
    client, _, _ = served_sqlite

    def attempt(password: str) -> int:
        while True:
            r = client.post("/api/session", json={"username": "engineer", "password": password})
            if r.status_code != 429:
                return r.status_code
            wait = int(r.headers["retry-after"])
            assert 0 < wait <= 5, "a few wrong guesses must not lock the account for long"
            time.sleep(wait)

    for _ in range(5):
        assert attempt("guess-1234") == 401
    assert attempt(PASSWORD) == 200


def test_a_password_change_ends_the_users_sessions(served_sqlite: tuple[TestClient, Platform, Keys]) -> None:
    client, _, keys = served_sqlite
    assert client.post("/api/session", json={"username": "operator", "password": PASSWORD}).status_code == 200
    assert client.get("/api/me").status_code == 200  # the session cookie
    change = {"password": "another-secret-9"}
    r = client.patch("/api/users/operator", json=change, headers=keys.headers(ADMIN))
    assert r.status_code == 200, r.text
    assert client.get("/api/me").status_code == 401


def test_hsts_is_sent_only_over_https(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(make_engine(url))
    for secure in (True, False):
        app = create_app(Settings(database_url=url, data_dir=tmp_path, secure_cookies=secure), start_platform=False)
        with TestClient(app) as client:
            header = client.get("/api/health").headers.get("strict-transport-security")
        assert (header is not None) == secure


# -- the audit trail -------------------------------------------------------------------------


def test_concurrent_writers_keep_one_audit_chain(db_url: str, tmp_path: Path) -> None:
    upgrade(make_engine(db_url))
    writers = [AuditLog(make_engine(db_url), b"k" * 32) for _ in range(2)]
    start = threading.Barrier(2)

    def write(log: AuditLog, who: str) -> None:
        start.wait()
        for i in range(40):
            log.add(who, "login", str(i))

    threads = [threading.Thread(target=write, args=(w, f"writer{i}")) for i, w in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    check = writers[0].verify()
    assert check.intact, check.problem
    assert check.entries == 80
    with Session(writers[0].engine) as s:
        prevs = list(s.scalars(select(AuditRow.prev_sha256)))
    assert len(prevs) == len(set(prevs))  # no two entries hang off the same link: no fork


def test_audit_edits_without_the_key_and_removed_tail_entries_are_found(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url)
    upgrade(engine)
    log = AuditLog(engine, b"the-real-key")
    for i in range(5):
        log.add("admin", "user-change", f"user{i}")
    assert log.verify().intact
    # Someone with database access rewrites entry 3 and recomputes every later hash.
    with Session(engine) as s, s.begin():
        rows = list(s.scalars(select(AuditRow).order_by(AuditRow.id)))
        edited = rows[2].id
        rows[2].outcome = "denied"
        prev = rows[1].sha256
        for r in rows[2:]:
            r.prev_sha256 = prev
            r.sha256 = _digest(prev, r.at, r.actor, r.action, r.target, r.outcome, r.detail)
            prev = r.sha256
    check = log.verify()
    assert not check.intact and check.first_bad_id == edited and "MAC" in (check.problem or "")

    engine2 = make_engine(f"sqlite:///{tmp_path / 'db2.sqlite'}")
    upgrade(engine2)
    log2 = AuditLog(engine2, b"the-real-key")
    for i in range(5):
        log2.add("admin", "login", str(i))
    with Session(engine2) as s, s.begin():
        newest = s.scalar(select(AuditRow.id).order_by(AuditRow.id.desc()).limit(1))
        s.execute(delete(AuditRow).where(AuditRow.id == newest))
    check = log2.verify()
    assert not check.intact and "removed from the end" in (check.problem or "")
    # A log keyed with another key is not taken for this one.
    assert not AuditLog(engine2, b"another-key").verify().intact
    with Session(engine2) as s, s.begin():
        s.execute(update(AuditRow).values(mac=None))
    assert not log2.verify().intact


def test_upgrade_keeps_the_old_chain_and_limits_old_keys_to_uploads(db_url: str) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import text

    from huoyan.store.accounts import Accounts, Scope

    engine = make_engine(db_url)
    upgrade(engine, "0002")  # a database of the previous release, with its audit entries and a key
    prev = "0" * 64
    with engine.begin() as conn:
        for i in range(3):
            at = datetime(2026, 11, 30, 8, i, tzinfo=UTC)
            digest = _digest(prev, at, "admin", "login", str(i), "ok", {})
            conn.execute(
                text(
                    "INSERT INTO audit_log (at, actor, action, target, outcome, detail, prev_sha256, sha256) "
                    "VALUES (:at, 'admin', 'login', :t, 'ok', '{}', :p, :s)"
                ),
                {"at": at, "t": str(i), "p": prev, "s": digest},
            )
            prev = digest
    from huoyan.store.accounts import _hasher

    with engine.begin() as conn:  # a user as the previous release made it (no language column)
        conn.execute(
            text(
                "INSERT INTO users (username, password_hash, role, active, created_at) "
                "VALUES ('camera', :h, :r, true, :at)"
            ),
            {"h": _hasher.hash(PASSWORD), "r": Role.OPERATOR.value, "at": datetime(2026, 11, 30, 8, tzinfo=UTC)},
        )
    accounts = Accounts(engine)
    with engine.begin() as conn:  # a key as the previous release made it (no scopes column)
        uid = conn.execute(text("SELECT id FROM users WHERE username = 'camera'")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO api_keys (user_id, name, prefix, key_sha256, created_at, revoked) "
                "VALUES (:u, 'old key', 'hy_old', :h, :at, false)"
            ),
            {"u": uid, "h": "e" * 64, "at": datetime.now(UTC)},
        )
    upgrade(engine)
    log = AuditLog(engine, b"k")
    check = log.verify()
    assert check.intact and check.entries == 3 and check.keyed_from_id is None
    log.add("admin", "login", "after the upgrade")
    check = log.verify()
    assert check.intact and check.entries == 4 and check.keyed_from_id is not None
    assert [k["scopes"] for k in accounts.api_keys()] == [[Scope.UPLOAD]]


def test_an_unknown_page_answers_in_the_dashboards_style_and_an_unknown_api_path_in_json(
    served_sqlite: tuple[TestClient, Platform, Keys],
) -> None:
    client, _, _ = served_sqlite
    page = client.get("/no/such/page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert 'id="error-detail"' in page.text and "Not Found" in page.text
    api = client.get("/api/no/such/thing")
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}
    icon = client.get("/favicon.ico")  # asked for by every browser on every page
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")


def test_a_fault_of_ours_is_logged_and_answered_in_the_dashboards_style(tmp_path: Path) -> None:
    from serverkit import make_platform_app

    app, _, _ = make_platform_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, [], start_platform=False)

    @app.get("/boom")
    @app.get("/api/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    client = TestClient(app, raise_server_exceptions=False)
    page = client.get("/boom")
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    assert 'id="error-detail"' in page.text and "something went wrong" in page.text and "a bug" not in page.text
    api = client.get("/api/boom")
    assert api.status_code == 500 and "server's log" in api.json()["detail"]
