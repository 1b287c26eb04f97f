"""#21: stations on other PCs (two ``huoyan run --server`` processes) join a central
server on the plant's PostgreSQL: they appear with live counts, obey a pause and a
threshold change, and keep inspecting through a server outage, reporting again when it
returns."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import uvicorn
from sqlalchemy import create_engine, text

from huoyan.core.artifact import read_metadata
from huoyan.server.app import create_app
from huoyan.server.platform import Settings
from huoyan.store.accounts import Role, Scope
from huoyan.store.database import make_engine, upgrade
from huoyan.vision.imageio import list_images, read_image
from huoyan.vision.patchcore import PatchCore
from linepeers import free_port, wait_for_port
from serverkit import PASSWORD

SRC = Path(__file__).resolve().parents[1] / "src"
pytestmark = pytest.mark.slow


@contextmanager
def server_on(db: str, data: Path, port: int) -> Iterator[str]:
    """``huoyan serve`` (the app on uvicorn) on a fixed port, stopped on leaving."""
    app = create_app(Settings(database_url=db, data_dir=data, train_worker=False))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def station_recipe(folder: Path, station: str, model: Path, images: Path, name: str = "", table: str = "") -> Path:
    """A station's recipe (``name`` after the station's: another recipe of its table)."""
    path = folder / f"{station}{name}.yaml"
    path.write_text(
        f"station: {station}\nproduct: washer\nrecipe: washer-{station}{name}\nversion: '1'\nmodel: {model}\n"
        f"source: {{type: replay, path: {images}, rate: 5, loop: true}}\n"
        f"storage: {{data_dir: {folder / station}}}\n{table}"
    )
    return path


def wait_until(what: Callable[[], Any], timeout_s: float = 60.0, every_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    got = None
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting; last: {got!r}")


def test_remote_stations_join_report_obey_and_ride_out_a_server_outage(
    postgres_server: Any, line_dir: Path, model_file: Path, tmp_path: Path
) -> None:
    db = postgres_server.new_database()
    upgrade(make_engine(db))
    setup = create_app(Settings(database_url=db, data_dir=tmp_path / "server", train_worker=False)).state.platform
    setup.accounts.add_user("engineer", PASSWORD, Role.ENGINEER)
    station_key = setup.accounts.add_api_key("engineer", "line 3 stations", [Scope.STATION], ["line3-a", "line3-b"])[1]
    engineer_key = setup.accounts.add_api_key("engineer", "tests", [Scope.ADMIN])[1]
    images = line_dir / "test"  # good parts and defects
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC), "HUOYAN_SERVER_KEY": station_key}
    stations = {}
    h = {"X-API-Key": engineer_key}
    records = create_engine(db)

    def stored(station: str) -> int:
        with records.connect() as c:
            return int(c.execute(text("select count(*) from inspections where station_id = :s"), {"s": station})
                       .scalar_one())  # fmt: skip

    try:
        with server_on(db, tmp_path / "server", port) as base:
            other = station_recipe(tmp_path, "line3-a", model_file, images, "-fine")
            table = f"feedback: {{recipes: [{{index: 7, file: {other}}}]}}\n"
            for name in ("line3-a", "line3-b"):
                recipe = station_recipe(tmp_path, name, model_file, images, table=table if name == "line3-a" else "")
                stations[name] = subprocess.Popen(
                    [sys.executable, "-m", "huoyan.cli", "run", str(recipe), "--db", db, "--server", base, "--quiet"],
                    env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / f"{name}.log").open("w"),
                )  # fmt: skip
            client = httpx.Client(base_url=base, headers=h, timeout=30)

            # Both join and show live counts, which grow as their records do.
            def joined() -> list[dict[str, Any]]:
                exited = {name: (tmp_path / f"{name}.log").read_text()[-3000:]
                          for name, proc in stations.items() if proc.poll() is not None}  # fmt: skip
                assert not exited, exited
                found = client.get("/api/stations").json()
                ready = len(found) == 2 and all(s["running"] and sum(s["counts"].values()) >= 5 for s in found)
                assert ready or time.monotonic() < give_up, found
                return found if ready else []

            give_up = time.monotonic() + 59
            wait_until(joined)
            listed = {s["station_id"]: s for s in client.get("/api/stations").json()}
            assert set(listed) == {"line3-a", "line3-b"} and all(s["source"] == "replay" for s in listed.values())
            counted = sum(client.get("/api/stations/line3-a").json()["counts"].values())
            assert counted <= stored("line3-a") + 8  # the counts are of parts recorded (a batch may be in flight)

            # The live view shows each part as the station reports it, as for a station the server hosts;
            # once the station hears it is watched, its reports bring a picture of their newest part.
            with client.stream("GET", "/api/stations/line3-b/live") as events:
                kinds, parts = [], []
                for line in events.iter_lines():
                    if line.startswith("event:"):
                        kinds.append(line.split(":", 1)[1].strip())
                    if line.startswith("data:") and kinds[-1] == "part":
                        parts.append(json.loads(line[5:]))
                        if "preview" in parts[-1] or len(parts) > 400:
                            break
            part = parts[0]
            assert kinds[0] == "status" and part["recipe"] == "washer-line3-b v1" and part["verdict"] in ("OK", "NG")
            assert "preview" not in part  # nobody watched until this view opened
            pictured = parts[-1]
            assert pictured.get("preview", "").startswith("data:image/jpeg;base64,"), f"{len(parts)} parts, no picture"
            jpeg = base64.b64decode(pictured["preview"].split(",", 1)[1])
            assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None

            # NG parts' images reach the server's blob store once their records are stored.
            def ng_image() -> int | None:
                with records.connect() as c:
                    ng = c.execute(text("select id from inspections where station_id = 'line3-a' and verdict = 'NG' "
                                        "order by id limit 1")).scalar()  # fmt: skip
                return ng if ng and client.get(f"/api/inspections/{ng}/image").status_code == 200 else None

            assert client.get(f"/api/inspections/{wait_until(ng_image)}/heatmap").status_code == 200

            # A pause is carried out between parts and confirmed; no part is taken after it.
            paused = client.post("/api/stations/line3-a/pause", json={"reason": "cleaning the lens"})
            assert paused.status_code == 200, paused.text
            assert paused.json()["paused"] is True
            time.sleep(1.5)  # parts in flight are finished and recorded
            still = stored("line3-a")
            time.sleep(2.0)
            assert stored("line3-a") == still
            assert stored("line3-b") > 0  # the other station is not paused
            assert client.post("/api/stations/line3-a/resume").json()["paused"] is False
            wait_until(lambda: stored("line3-a") > still)

            # A threshold from the server judges the station's next parts.
            changed = client.put("/api/stations/line3-b/threshold", json={"threshold": 123.5, "reason": "trial"})
            assert changed.status_code == 200, changed.text
            assert changed.json()["threshold"] == 123.5 and changed.json()["threshold_set"] is True
            with records.connect() as c:
                judged = text("select count(*) from inspections where station_id = 'line3-b' and threshold = 123.5")
                wait_until(lambda: c.execute(judged).scalar_one())
            actions = [(e["action"], e["target"], e["outcome"]) for e in setup.audit.entries(actor="engineer")]
            assert ("station-pause", "line3-a", "ok") in actions and ("threshold-set", "line3-b", "ok") in actions
            assert ("station-joined", "line3-a", "ok") in actions
            # A model version travels to the station by its digest and judges its next parts.
            train = [read_image(f) for f in list_images(line_dir / "train" / "good")]
            newer = PatchCore(image_size=128, coreset_ratio=0.1, seed=1).fit(train).save(tmp_path / "v2.safetensors")
            sha = setup.blobs.put_file(newer)
            card = json.loads(read_metadata(newer)["card"])
            version = setup.versions.add("line3-a", sha, newer.name, card, str(newer), "engineer")
            activated = client.post(f"/api/models/{version['id']}/activate", json={"reason": "new bank"})
            assert activated.status_code == 200, activated.text
            assert client.get("/api/stations/line3-a").json()["model_sha256"] == sha
            with records.connect() as c:
                on_new = text("select count(*) from inspections where station_id = 'line3-a' and model_pk = "
                              "(select id from models where sha256 = :sha)")  # fmt: skip
                wait_until(lambda: c.execute(on_new, {"sha": sha}).scalar_one())
            assert (tmp_path / "line3-a" / "models" / f"{sha}.safetensors").is_file()  # fetched, checked, kept
            # ... and so does a recipe of its table, named by the server as a PLC would select it.
            switched = client.put("/api/stations/line3-a/recipe", json={"recipe": "7", "reason": "fine pitch lot"})
            assert switched.status_code == 200, switched.text
            assert switched.json()["recipe_id"] == "washer-line3-a-fine"
            unknown = client.put("/api/stations/line3-a/recipe", json={"recipe": "washer-nowhere"})
            assert unknown.status_code == 409 and "no recipe 'washer-nowhere'" in unknown.json()["detail"]
            before_outage = stored("line3-b")
        # The server is down: the stations keep inspecting and recording.
        wait_until(lambda: stored("line3-b") >= before_outage + 10)
        assert all(s.poll() is None for s in stations.values())
        with server_on(db, tmp_path / "server", port) as base:  # back, on the same address
            client = httpx.Client(base_url=base, headers=h, timeout=30)
            back = wait_until(lambda: [s for s in client.get("/api/stations").json() if s["running"]])
            assert {s["station_id"] for s in back} <= {"line3-a", "line3-b"}
            wait_until(lambda: {s["station_id"] for s in client.get("/api/stations").json() if s["running"]}
                       == {"line3-a", "line3-b"})  # fmt: skip
            b = client.get("/api/stations/line3-b").json()
            assert sum(b["counts"].values()) >= before_outage  # the counts went on through the outage
            assert b["threshold"] == 123.5
            assert client.get("/api/stations/line3-a").json()["recipe_id"] == "washer-line3-a-fine"
    finally:
        for proc in stations.values():
            proc.terminate()
        for proc in stations.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
