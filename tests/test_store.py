"""Record store against real SQLite and PostgreSQL: migrations, idempotency, queries, outages."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text

from huoyan.core.models import Region, Verdict
from huoyan.core.records import Evidence, EvidenceKind, InspectionRecord, StoredRecord
from huoyan.store.blobs import BlobStore, sha256_hex
from huoyan.store.database import current_revision, head_revision, make_engine, upgrade
from huoyan.store.records import RecipeConflict, RecordStore, query_events, query_records
from huoyan.store.settings import read_setting, update_setting
from huoyan.store.spool import Spool


def make_store(
    url: str, tmp_path: Path, recipe_sha: str = "a" * 64, busy_timeout_s: float = 5.0, recipe_id: str = "washer-top"
) -> RecordStore:
    engine = make_engine(url, busy_timeout_s=busy_timeout_s)
    upgrade(engine)
    store = RecordStore(engine, BlobStore(tmp_path / "blobs"), Spool(tmp_path / "spool"))
    store.configure("st-1", "washer", recipe_id, "1", recipe_sha, {"k": 1}, "b" * 64, "m.safetensors", {"c": 2})
    store.register()
    return store


def record(key: str, verdict: Verdict = Verdict.OK, seq: int = 1, minutes_ago: float = 0) -> InspectionRecord:
    t = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return InspectionRecord(
        key=key,
        seq=seq,
        station_id="st-1",
        recipe_id="washer-top",
        recipe_version="1",
        model_sha256="b" * 64,
        threshold=2.0,
        part_id=f"P{seq}",
        source_name=f"{key}.png",
        verdict=verdict,
        score=3.0 if verdict == Verdict.NG else 1.0,
        normalised_score=1.5 if verdict == Verdict.NG else 0.5,
        regions=[Region(x=1, y=2, width=3, height=4, area_px=9, max_score=1.8, mean_score=1.2)]
        if verdict == Verdict.NG
        else [],
        arrived_at=t,
        decided_at=t + timedelta(milliseconds=20),
        latency_ms=20.0,
    )


def test_upgrade_creates_the_schema_at_head(db_url: str) -> None:
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    assert upgrade(engine) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert {"stations", "recipes", "models", "inspections", "regions", "events"} <= tables
    assert upgrade(engine) == head_revision()  # idempotent


def test_write_is_idempotent_and_queries_filter(db_url: str, tmp_path: Path) -> None:
    store = make_store(db_url, tmp_path)
    image = b"\x89PNG fake image bytes"
    sha = sha256_hex(image)
    kept = Evidence(kind=EvidenceKind.IMAGE, sha256=sha, media_type="image/png")
    ng = record("k1", Verdict.NG, 1, minutes_ago=90).model_copy(update={"evidence": [kept]})
    store.write([StoredRecord(ng, {sha: image}), StoredRecord(record("k2", seq=2))])
    store.write([StoredRecord(ng, {sha: image})])  # a restart re-sending the same part
    rows = query_records(store.engine)
    assert [r["key"] for r in rows] == ["k1", "k2"]
    assert rows[0]["regions"][0]["area_px"] == 9 and rows[0]["model_sha256"] == "b" * 64
    assert rows[0]["recipe_version"] == "1" and rows[0]["part_id"] == "P1"
    assert rows[0]["evidence"] == [kept.model_dump(mode="json")] and rows[1]["evidence"] == []
    assert datetime.fromisoformat(rows[0]["arrived_at"]).tzinfo is not None
    assert [r["key"] for r in query_records(store.engine, verdict="ng")] == ["k1"]
    assert [r["key"] for r in query_records(store.engine, since=datetime.now(UTC) - timedelta(minutes=5))] == ["k2"]
    assert query_records(store.engine, station="other") == []
    assert store.blobs.verify(sha)
    assert store.stored_verdict("k1") == Verdict.NG and store.stored_verdict("zz") is None
    assert store.last_seq("st-1") == 2


def test_changed_recipe_under_the_same_version_is_refused(db_url: str, tmp_path: Path) -> None:
    make_store(db_url, tmp_path)
    with pytest.raises(RecipeConflict, match="new version"):
        make_store(db_url, tmp_path / "again", recipe_sha="c" * 64)
    make_store(db_url, tmp_path / "same")  # same content: fine


def test_sqlite_outage_spools_then_flushes(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    store = make_store(f"sqlite:///{db}", tmp_path, busy_timeout_s=0.2)
    events = []
    store.on_event = events.append
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the database
    store.write([StoredRecord(record("k1", Verdict.NG))])
    store.write([StoredRecord(record("k2", seq=2))])
    assert store.degraded and len(store.spool) >= 2
    assert store.stored_verdict("k1") == Verdict.NG  # answered from the spool
    assert store.flush() is False
    blocker.execute("ROLLBACK")
    blocker.close()
    assert store.flush() is True and not store.degraded and len(store.spool) == 0
    assert [r["key"] for r in query_records(store.engine)] == ["k1", "k2"]
    kinds = [(e["kind"], e["active"]) for e in query_events(store.engine)]
    assert kinds == [("database-unavailable", True), ("database-unavailable", False)]
    assert [e.active for e in events] == [True, False]


def test_postgres_restart_spools_then_flushes(postgres_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = make_store(postgres_server.new_database(), tmp_path)
    store.write([StoredRecord(record("before"))])
    postgres_server.stop()
    try:
        store.write([StoredRecord(record("during", Verdict.NG, seq=2))])
        assert store.degraded and len(store.spool) >= 1
    finally:
        postgres_server.start()
    store.write([StoredRecord(record("after", seq=3))])  # still degraded: spooled behind "during"
    assert store.flush() and not store.degraded and len(store.spool) == 0
    assert [r["key"] for r in query_records(store.engine)] == ["before", "during", "after"]
    # A repeated flush of something already committed stores nothing twice.
    store.spool.append("record", record("during", Verdict.NG, seq=2).model_dump(mode="json"))
    assert store.flush()
    assert len(query_records(store.engine)) == 3


def test_blob_store_rejects_bad_names_and_detects_tampering(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    sha = blobs.put(b"heat map")
    assert blobs.get(sha) == b"heat map" and blobs.verify(sha)
    blobs.path(sha).write_bytes(b"edited")
    assert not blobs.verify(sha)
    with pytest.raises(ValueError, match="sha256"):
        blobs.path("../../etc/passwd")


def test_spool_from_an_earlier_recipe_version_flushes_under_that_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    old = make_store(url, tmp_path)
    old.spool.append("record", record("from-v1").model_dump(mode="json"))  # left by a run that lost its database
    engine = make_engine(url)
    new = RecordStore(engine, BlobStore(tmp_path / "blobs"), Spool(tmp_path / "spool"))
    new.configure("st-1", "washer", "washer-top", "2", "c" * 64, {"k": 2}, "d" * 64, "m2.safetensors", {})
    new.register()
    assert new.flush() and len(new.spool) == 0
    new.write([StoredRecord(record("from-v2").model_copy(update={"recipe_version": "2", "model_sha256": "d" * 64}))])
    rows = {r["key"]: r for r in query_records(engine)}
    assert (rows["from-v1"]["recipe_version"], rows["from-v1"]["model_sha256"]) == ("1", "b" * 64)
    assert (rows["from-v2"]["recipe_version"], rows["from-v2"]["model_sha256"]) == ("2", "d" * 64)
    new.spool.append("record", record("orphan").model_copy(update={"recipe_version": "9"}).model_dump(mode="json"))
    new.spool.append("record", record("after-the-orphan", seq=3).model_dump(mode="json"))
    assert new.flush()  # the orphan cannot block the spool behind it
    assert len(new.spool) == 0 and "after-the-orphan" in {r["key"] for r in query_records(engine)}
    [(_, kind, aside)] = list(new.spool.rejected.entries())  # kept aside, not lost
    assert kind == "record" and aside["entry"]["key"] == "orphan" and "not registered" in aside["error"]
    assert any(e["kind"] == "record-rejected" for e in query_events(engine))


def race_an_uncommitted_insert(engine: Engine, insert: str, params: dict[str, Any], write: Callable[[], Any]) -> Any:
    """Run ``write`` while another writer's ``insert`` of the same new row is uncommitted;
    commit that insert once ``write`` waits on it, and return what ``write`` returned."""
    outcome: list[Any] = []

    def writer() -> None:
        try:
            outcome.append(write())
        except Exception as exc:  # handed to the test's thread
            outcome.append(exc)

    with engine.connect() as holder:
        holder.execute(text(insert), params)
        racer = threading.Thread(target=writer)
        racer.start()
        # (Asked on a connection of its own: a transaction sees one snapshot of the activity.)
        waiting = text("select count(*) from pg_stat_activity where wait_event_type = 'Lock'")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watch:
            deadline = time.monotonic() + 30
            while not watch.execute(waiting).scalar_one() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert watch.execute(waiting).scalar_one() == 1  # the writer waits on the other's row
        holder.commit()
        racer.join(30)
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


def test_stations_migrating_a_new_database_at_once_both_start(postgres_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Every station of a new line brings the new database's schema up when it starts; the
    ones that start together take turns, and the later find the schema at head."""
    url = postgres_server.new_database()
    go = tmp_path / "go"
    migrate = (
        "import pathlib, sys, time\n"
        "from huoyan.store.database import make_engine, upgrade\n"
        "engine = make_engine(sys.argv[1])\n"
        "pathlib.Path(sys.argv[3]).touch()\n"
        "while not pathlib.Path(sys.argv[2]).exists(): time.sleep(0.005)\n"
        "print(upgrade(engine))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    ready = [tmp_path / f"ready-{n}" for n in range(3)]
    run = [sys.executable, "-c", migrate, url, str(go)]
    stations = [
        subprocess.Popen([*run, str(r)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for r in ready
    ]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()  # all three at once
    outcomes = [(s.wait(60), *s.communicate()) for s in stations]
    assert [(rc, out.strip()) for rc, out, _ in outcomes] == [(0, head_revision())] * 3, [e for *_, e in outcomes]
    assert current_revision(make_engine(url)) == head_revision()


def test_stations_registering_the_same_model_at_once_both_start(postgres_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A line restarts: every station registers the model they share at the same moment.
    The second one's insert waits on the first's uncommitted row, then must use it rather
    than fail on the unique index (which kept the station from starting)."""
    url = postgres_server.new_database()
    first = make_store(url, tmp_path / "a")
    other = RecordStore(make_engine(url), BlobStore(tmp_path / "b" / "blobs"), Spool(tmp_path / "b" / "spool"))
    shared = "c" * 64
    other.configure("st-2", "washer", "washer-side", "1", "d" * 64, {"k": 2}, shared, "m2.safetensors", {"c": 3})
    model = "insert into models (sha256, name, card, created_at) values (:s, 'm2.safetensors', '{}', now())"
    race_an_uncommitted_insert(first.engine, model, {"s": shared}, other.register)
    other.write([StoredRecord(record("k-side").model_copy(update={"station_id": "st-2", "recipe_id": "washer-side",
                                                                  "model_sha256": shared}))])  # fmt: skip
    with first.engine.connect() as c:
        assert c.execute(text("select count(*) from models where sha256 = :s"), {"s": shared}).scalar_one() == 1
    assert [r["key"] for r in query_records(other.engine)] == ["k-side"]


def test_two_first_writers_of_a_setting_keep_both_parts(postgres_server) -> None:  # type: ignore[no-untyped-def]
    """The first write of a setting races another's: the later one waits, then changes the
    value the first stored instead of failing on the primary key."""
    engine = make_engine(postgres_server.new_database())
    upgrade(engine)
    first = "insert into plant_settings (key, value, updated_by, updated_at) values ('resets', :v, 'a', now())"
    value = race_an_uncommitted_insert(
        engine, first, {"v": '{"st-1": 1}'}, lambda: update_setting(engine, "resets", lambda v: {**v, "st-2": 2}, "b")
    )
    assert value == {"st-1": 1, "st-2": 2} == read_setting(engine, "resets")
