"""Evidence retention: old parts' files leave the blob store by rule, the records and their chain stay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

import test_store
from huoyan.core.models import Verdict
from huoyan.core.recipe import Retention
from huoyan.core.records import Evidence, EvidenceKind, InspectionRecord, StationEvent, StoredRecord
from huoyan.runner.retention_watch import RetentionWatch
from huoyan.store.audit import AuditLog
from huoyan.store.blobs import BlobStore, sha256_hex
from huoyan.store.chain import verify_station
from huoyan.store.records import RecordStore
from huoyan.store.retention import ACTION, apply_retention, removed_before
from huoyan.store.reviews import Outcome, Reviews
from huoyan.store.schema import AuditRow, InspectionRow
from huoyan.store.versions import ModelVersions
from test_store import record

DAY_MINUTES = 24 * 60


def make_store(url: str, tmp_path: Path) -> RecordStore:
    """Station st-1's store, under a recipe of its own (a served platform has washer-top v1)."""
    return test_store.make_store(url, tmp_path, recipe_id="kept-washer")


def _part(store: RecordStore, key: str, verdict: Verdict, days_ago: float, image: bytes) -> InspectionRecord:
    """A record of ``days_ago`` with ``image`` as its evidence, stored with its blob."""
    sha = sha256_hex(image)
    r = record(key, verdict, minutes_ago=days_ago * DAY_MINUTES).model_copy(
        update={
            "recipe_id": "kept-washer",
            "evidence": [Evidence(kind=EvidenceKind.IMAGE, sha256=sha, media_type="image/png")],
        }
    )
    store.write([StoredRecord(r, {sha: image})])
    return r


def _id(store: RecordStore, key: str) -> int:
    with Session(store.engine) as s:
        found = s.scalar(select(InspectionRow.id).where(InspectionRow.key == key))
    assert found is not None
    return found


def _old(blobs: BlobStore, *images: bytes) -> None:
    """Date the blobs back, as if stored when their parts were (``put`` renews a blob's time)."""
    past = time.time() - 400 * 86400
    for image in images:
        os.utime(blobs.path(sha256_hex(image)), (past, past))


def test_old_ok_evidence_goes_and_everything_else_stays(db_url: str, tmp_path: Path) -> None:
    store = make_store(db_url, tmp_path)
    blobs = store.blobs
    old_ok, new_ok, old_ng, reviewed_ok, shared = (f"image-{i}".encode() for i in range(5))
    _part(store, "old-ok", Verdict.OK, 40, old_ok)
    _part(store, "new-ok", Verdict.OK, 5, new_ok)
    _part(store, "old-ng", Verdict.NG, 40, old_ng)
    _part(store, "reviewed-ok", Verdict.OK, 40, reviewed_ok)
    _part(store, "shared-old", Verdict.OK, 40, shared)  # the same bytes as a recent part's
    _part(store, "shared-new", Verdict.OK, 2, shared)
    _old(blobs, old_ok, new_ok, old_ng, reviewed_ok, shared)
    Reviews(store.engine).add(_id(store, "reviewed-ok"), Outcome.MISSED_DEFECT, "qe")
    audit = AuditLog(store.engine, b"k" * 32)
    rule = Retention(ok_days=30, ng_days=365)

    dry = apply_retention(store.engine, blobs, "st-1", rule, dry_run=True)
    assert (dry.records, dry.blobs_removed, dry.blobs_kept) == (2, 1, 1)
    assert blobs.has(sha256_hex(old_ok)) and removed_before(store.engine, "st-1") == {}

    report = apply_retention(store.engine, blobs, "st-1", rule, audit=audit)
    assert (report.records, report.blobs_removed, report.bytes_removed) == (2, 1, len(old_ok))
    assert not blobs.has(sha256_hex(old_ok))
    for kept in (new_ok, old_ng, reviewed_ok, shared):
        assert blobs.has(sha256_hex(kept))
    # The records stay, and their chain still verifies: it covers the digests, not the bytes.
    with Session(store.engine) as s:
        assert len(s.scalars(select(InspectionRow.id)).all()) == 6
    assert verify_station(store.engine, "st-1").intact
    with Session(store.engine) as s:
        entry = s.scalars(select(AuditRow).where(AuditRow.action == ACTION)).one()
    assert entry.target == "st-1" and entry.detail["blobs_removed"] == 1
    done = removed_before(store.engine, "st-1")
    assert done[Verdict.OK] < datetime.now(UTC) - timedelta(days=29) and done[Verdict.NG] < done[Verdict.OK]

    # The next run reads only what expired since: nothing here.
    again = apply_retention(store.engine, blobs, "st-1", rule, audit=audit)
    assert (again.records, again.blobs_removed) == (0, 0)
    with Session(store.engine) as s:
        assert len(s.scalars(select(AuditRow).where(AuditRow.action == ACTION)).all()) == 1

    # Once the recent part that shares the bytes expires too, they go.
    later = apply_retention(store.engine, blobs, "st-1", rule, now=datetime.now(UTC) + timedelta(days=31))
    assert later.records == 2 and not blobs.has(sha256_hex(shared)) and not blobs.has(sha256_hex(new_ok))
    assert blobs.has(sha256_hex(reviewed_ok)) and blobs.has(sha256_hex(old_ng))


def test_training_images_and_bytes_stored_again_are_kept(db_url: str, tmp_path: Path) -> None:
    store = make_store(db_url, tmp_path)
    blobs = store.blobs
    trained, again = b"trained-on", b"stored-again"
    _part(store, "trained", Verdict.OK, 40, trained)
    _part(store, "again", Verdict.OK, 40, again)
    _old(blobs, trained, again)
    ModelVersions(store.engine).add(
        "st-1", "c" * 64, "m2.safetensors", {}, "/m2", "qe", trained_on={"image_sha256": [sha256_hex(trained)]}
    )
    blobs.put(again)  # a part being stored now brings the same bytes: its time is renewed
    dry = apply_retention(store.engine, blobs, "st-1", Retention(ok_days=30), dry_run=True)
    assert (dry.records, dry.blobs_removed, dry.blobs_kept) == (2, 0, 2)  # what the run will do
    report = apply_retention(store.engine, blobs, "st-1", Retention(ok_days=30))
    assert (report.records, report.blobs_removed, report.blobs_kept) == (2, 0, 2)
    assert blobs.has(sha256_hex(trained)) and blobs.has(sha256_hex(again))


def test_the_dashboard_says_a_file_went_by_the_retention_rule(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from huoyan.store.accounts import Role

    client, p, keys = served
    store = make_store(p.settings.database_url, tmp_path)
    store.blobs = p.blobs  # a remote station's evidence, in the server's store
    _part(store, "gone", Verdict.OK, 40, b"gone-image")
    _part(store, "lost", Verdict.OK, 5, b"lost-image")
    _old(store.blobs, b"gone-image")
    apply_retention(store.engine, store.blobs, "st-1", Retention(ok_days=30))
    store.blobs.path(sha256_hex(b"lost-image")).unlink()  # missing for another reason
    h = keys.headers(Role.OPERATOR)
    gone = client.get(f"/api/inspections/{_id(store, 'gone')}/image", headers=h)
    assert gone.status_code == 404 and "storage.retention" in gone.json()["detail"]
    lost = client.get(f"/api/inspections/{_id(store, 'lost')}/image", headers=h)
    assert lost.status_code == 404 and "retention" not in lost.json()["detail"]


def test_the_station_applies_its_rule_each_hour(db_url: str, tmp_path: Path) -> None:
    store = make_store(db_url, tmp_path)
    old = b"an old part"
    _part(store, "old", Verdict.OK, 40, old)
    _old(store.blobs, old)
    events: list[StationEvent] = []
    audit = AuditLog(store.engine, b"k" * 32)
    watch = RetentionWatch(store.engine, store.blobs, "st-1", Retention(ok_days=30), audit, events.append)
    now = datetime.now(UTC)
    watch(record("a", minutes_ago=0).model_copy(update={"arrived_at": now - timedelta(hours=1)}))
    assert store.blobs.has(sha256_hex(old))  # the first part only sets the hour
    watch(record("b", minutes_ago=0).model_copy(update={"arrived_at": now}))
    watch._pool.shutdown(wait=True)
    assert not store.blobs.has(sha256_hex(old))
    with Session(store.engine) as s:
        entry = s.scalars(select(AuditRow).where(AuditRow.action == ACTION)).one()
    assert entry.actor == "station:st-1" and entry.detail["blobs_removed"] == 1
    assert events == []  # a routine clean-up raises nothing for operators to acknowledge


def test_huoyan_retention_cli_reports_and_refuses_without_a_period(model_file: Path, tmp_path: Path) -> None:
    from serverkit import write_recipe

    write_recipe(tmp_path, "st-1", model_file, "http")  # its data folder: tmp_path / "data"
    db = f"sqlite:///{tmp_path / 'records.db'}"
    store = make_store(db, tmp_path)
    store.blobs = BlobStore(tmp_path / "data" / "blobs")
    _part(store, "old", Verdict.NG, 400, b"old NG part")
    _old(store.blobs, b"old NG part")
    path = str(tmp_path / "st-1.yaml")

    def huoyan(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "huoyan.cli", *args], capture_output=True, text=True, timeout=120)

    refused = huoyan("retention", path, "--db", db)
    assert refused.returncode != 0 and "no retention period" in refused.stderr
    assert huoyan("retention", path, "--db", db, "--ng-days", "0").returncode != 0
    dry = huoyan("retention", path, "--db", db, "--ng-days", "365", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["blobs_removed"] == 1 and store.blobs.has(sha256_hex(b"old NG part"))
    done = huoyan("retention", path, "--db", db, "--ng-days", "365")
    assert done.returncode == 0, done.stderr
    assert "removed 1 evidence files" in done.stdout and not store.blobs.has(sha256_hex(b"old NG part"))
