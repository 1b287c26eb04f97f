"""`huoyan user` and `huoyan serve` as an administrator types them."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from huoyan.cli import main
from linepeers import free_port, wait_for_port
from serverkit import write_recipe


def with_password(monkeypatch: pytest.MonkeyPatch, password: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))


def test_user_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # the audit key goes to ./huoyan-data when neither recipe nor --data-dir says
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with_password(monkeypatch, "first-admin-pw")
    assert main(["user", "add", "boss", "--role", "admin", "--db", url, "--password-stdin"]) == 0
    assert "boss added with role admin" in capsys.readouterr().out
    with_password(monkeypatch, "first-admin-pw")
    with pytest.raises(SystemExit, match="already exists"):
        main(["user", "add", "boss", "--role", "admin", "--db", url, "--password-stdin"])
    with_password(monkeypatch, "short")
    with pytest.raises(SystemExit, match="at least 8"):
        main(["user", "add", "zhang", "--role", "operator", "--db", url, "--password-stdin"])
    assert main(["user", "key", "boss", "--name", "prometheus", "--db", url]) == 0
    assert capsys.readouterr().out.strip().startswith("hy_")
    assert main(["user", "set", "boss", "--active", "no", "--db", url]) == 0
    assert main(["user", "list", "--db", url]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split() == ["boss", "admin", "disabled"]
    assert main(["user", "key", "boss", "--name", "reader", "--scope", "read", "--scope", "review", "--db", url]) == 0
    capsys.readouterr()
    pc = ["user", "key", "boss", "--name", "line 3 PC", "--scope", "station", "--db", url]
    assert main([*pc, "--station", "line3-a", "--station", "line3-b"]) == 0
    from huoyan.store.accounts import Accounts
    from huoyan.store.database import make_engine

    keys = {k["name"]: k for k in Accounts(make_engine(url)).api_keys()}
    assert keys["line 3 PC"]["stations"] == ["line3-a", "line3-b"] and keys["reader"]["stations"] is None
    with pytest.raises(SystemExit, match="not: read"):
        main([*pc, "--scope", "read", "--station", "line3-a"])


def test_audit_verify_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    keyed = ["--db", url, "--data-dir", str(tmp_path / "data")]
    with_password(monkeypatch, "first-admin-pw")
    assert main(["user", "add", "boss", "--role", "admin", "--password-stdin", *keyed]) == 0
    assert main(["user", "key", "boss", "--name", "prometheus", *keyed]) == 0
    capsys.readouterr()
    assert main(["audit", "verify", *keyed]) == 0
    report = json.loads(capsys.readouterr().out)["audit"]
    assert report["intact"] and report["entries"] == 2 and len(report["head_sha256"]) == 64
    # Without the key the same trail does not verify: the MACs are not this key's.
    assert main(["audit", "verify", "--db", url, "--data-dir", str(tmp_path / "elsewhere")]) == 1
    capsys.readouterr()
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        conn.execute("UPDATE audit_log SET target = 'mallory' WHERE id = 1")
    assert main(["audit", "verify", *keyed]) == 1
    assert json.loads(capsys.readouterr().out)["audit"]["first_bad_id"] == 1


def test_audit_verify_names_an_edited_inspection_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from huoyan.core.records import StoredRecord
    from test_store import make_store, record

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = make_store(url, tmp_path)
    store.write([StoredRecord(record(f"k{i}", seq=i)) for i in range(1, 4)])
    keyed = ["--db", url, "--data-dir", str(tmp_path / "data")]
    assert main(["audit", "verify", *keyed]) == 0
    records = json.loads(capsys.readouterr().out)["records"]
    assert [(r["station_id"], r["records"], r["intact"]) for r in records] == [("st-1", 3, True)]
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        conn.execute("UPDATE inspections SET verdict = 'NG' WHERE key = 'k2'")
    assert main(["audit", "verify", "--station", "st-1", *keyed]) == 1
    problems = json.loads(capsys.readouterr().out)["records"][0]["problems"]
    assert problems == ["record k2 at position 2 was edited (its content no longer matches)"]


def test_serve_hosts_the_station_and_stops_cleanly(
    tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = tmp_path / "inbox"
    recipe = write_recipe(tmp_path, "cell-9", model_file, str(inbox))
    recipe_file = tmp_path / "cell-9.yaml"
    url = f"sqlite:///{tmp_path / 'data' / 'huoyan.db'}"
    with_password(monkeypatch, "first-admin-pw")
    assert main(["user", "add", "boss", "--role", "admin", "--recipe", str(recipe_file), "--password-stdin"]) == 0
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "huoyan.cli", "serve", "--recipe", str(recipe_file), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        wait_for_port(port, timeout=60)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 30
            while client.get("/api/health/ready").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert client.post("/api/session", json={"username": "boss", "password": "first-admin-pw"}).is_success
            stations = client.get("/api/stations").json()
            assert [s["station_id"] for s in stations] == [recipe.station] and stations[0]["running"]
            assert client.get("/vendor/plotly.min.js").headers["content-type"].startswith("text/javascript")
            csrf = client.get("/api/me").json()["csrf_token"]
            wrong_source = client.post(
                f"/api/stations/{recipe.station}/inspect",
                files={"image": ("a.png", b"x")},
                headers={"X-CSRF-Token": csrf},
            )
            assert wrong_source.status_code == 409 and "hot_folder" in wrong_source.json()["detail"]
            # A local client naming other addresses in X-Forwarded-For is still one address
            # (no proxy is trusted unless --trusted-proxy says so): 30 failures, then 429.
            codes = [
                client.post(
                    "/api/session",
                    json={"username": f"nobody{i}", "password": "wrong-password"},
                    headers={"X-Forwarded-For": f"198.51.100.{i}"},
                ).status_code
                for i in range(31)
            ]
            assert codes[:30] == [401] * 30 and codes[30] == 429
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    # uvicorn shuts down (stations drained), then re-raises SIGTERM as systemd expects.
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Application shutdown complete." in out
    assert f"Huoyan dashboard on http://127.0.0.1:{port}/" in out and url.split("///")[1] in out


def test_the_server_says_where_it_is_only_once_it_answers_and_can_keep_request_logs_quiet(tmp_path: Path) -> None:
    """What the demo relies on (#18): its URL and password are printed last, when the
    dashboard answers, and no line per request scrolls them away."""
    port = free_port()
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from huoyan.cli.server import serve\n"
        "from huoyan.server.platform import Settings\n"
        f"root = Path({str(tmp_path)!r})\n"
        "settings = Settings(database_url=f'sqlite:///{root / \"h.db\"}', data_dir=root, recipes=[])\n"
        f"serve(settings, '127.0.0.1', {port}, on_ready=lambda: print('READY', flush=True), access_log=False)\n"
    )
    from huoyan.store.database import make_engine, upgrade

    upgrade(make_engine(f"sqlite:///{tmp_path / 'h.db'}"))
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "READY":
                break
        # Told it is ready: it answers at once, no waiting for the port.
        assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200
        for _ in range(5):
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    assert "READY" in "".join(lines)
    assert "GET /login" not in rest and "GET /api/health" not in rest, rest
