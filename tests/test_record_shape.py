"""One record shape: every field of ``InspectionRecord`` is stored and read back, evidence
included, and databases and spools written by the previous release keep their records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from huoyan.core.models import ChannelVerdict, Measurement, Region, RuleOutcome, Verdict
from huoyan.core.records import Evidence, EvidenceKind, InspectionRecord, StoredRecord
from huoyan.store.blobs import BlobStore, sha256_hex
from huoyan.store.database import downgrade, head_revision, make_engine, upgrade
from huoyan.store.records import (
    RECORD_CHILDREN,
    RECORD_COLUMNS,
    RECORD_REFERENCES,
    RecordStore,
    get_inspection,
    query_records,
)
from huoyan.store.reviews import Reviews
from huoyan.store.schema import Base, InspectionRow
from huoyan.store.spool import Spool

IMAGE, HEAT, SIDE = (sha256_hex(s.encode()) for s in ("image", "heat", "side view"))


def full_record(key: str = "k1") -> InspectionRecord:
    """A record with every field set to something other than its default."""
    t = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    return InspectionRecord(
        key=key,
        seq=7,
        station_id="st-1",
        recipe_id="washer-top",
        recipe_version="1",
        model_sha256="b" * 64,
        threshold=2.0,
        part_id="P7",
        source_name="p7.png",
        verdict=Verdict.NG,
        score=3.0,
        normalised_score=1.5,
        regions=[
            Region(
                x=1,
                y=2,
                width=3,
                height=4,
                area_px=9,
                area_mm2=0.5,
                max_score=1.8,
                mean_score=1.2,
                label="short",
                confidence=0.93,
                channel="top",
            )
        ],
        rules=[RuleOutcome(rule="score above threshold", met=True, value=3.0, limit=2.0)],
        error=None,
        width=640,
        height=480,
        arrived_at=t,
        decided_at=t + timedelta(milliseconds=20),
        stored_at=t + timedelta(milliseconds=30),
        latency_ms=20.0,
        evidence=[
            Evidence(kind=EvidenceKind.IMAGE, channel="top", sha256=IMAGE, media_type="image/jpeg"),
            Evidence(kind=EvidenceKind.ANOMALY_MAP, channel="top", sha256=HEAT, media_type="image/png"),
            Evidence(kind=EvidenceKind.IMAGE, channel="side", sha256=SIDE, media_type="image/png"),
        ],
        trigger={"part_id": "P7", "job_id": 41, "measurement_id": 9},
        diagnosis="outer_race",
        measurements=[
            Measurement(channel="spindle", name="rms", value=0.12),
            Measurement(channel="spindle", name="kurtosis", value=7.5),
        ],
        channels=[
            ChannelVerdict(channel="top", verdict=Verdict.NG, score=3.0, normalised_score=1.5, model_sha256="b" * 64),
            ChannelVerdict(channel="spindle", verdict=Verdict.OK, score=1.0, normalised_score=0.5, diagnosis="cage"),
            ChannelVerdict(channel="side", verdict=Verdict.ERROR, error="no frame"),
        ],
    )


def make_store(url: str, tmp_path: Path) -> RecordStore:
    engine = make_engine(url)
    upgrade(engine)
    store = RecordStore(engine, BlobStore(tmp_path / "blobs"), Spool(tmp_path / "spool"))
    store.configure("st-1", "washer", "washer-top", "1", "a" * 64, {"k": 1}, "b" * 64, "m.safetensors", {"c": 2})
    return store


def test_every_record_field_is_a_column_a_reference_or_a_table_of_its_own() -> None:
    fields = set(InspectionRecord.model_fields)
    assert fields == RECORD_COLUMNS | RECORD_REFERENCES | set(RECORD_CHILDREN)
    assert not RECORD_COLUMNS & (RECORD_REFERENCES | set(RECORD_CHILDREN))
    # and no column of the inspections table is left without a field, but the row's id, its
    # references and the record chain's own columns (storage's integrity, not content)
    columns = set(InspectionRow.__table__.columns.keys())
    assert columns - RECORD_COLUMNS == {"id", "recipe_pk", "model_pk", "chain_pos", "chain_sha256"}


def test_a_record_reads_back_exactly_as_it_was_written(db_url: str, tmp_path: Path) -> None:
    store = make_store(db_url, tmp_path)
    written = full_record()
    store.write([StoredRecord(written, {})])
    found = get_inspection(store.engine, key="k1")
    back = None if found is None else found.model_dump(mode="json")
    assert back is not None and isinstance(back["id"], int) and back["model_name"] == "m.safetensors"
    expected = written.model_dump(mode="json")
    stored = {k: v for k, v in back.items() if k in expected}
    assert stored.pop("stored_at") is not None
    expected.pop("stored_at")
    assert stored == expected


def test_a_record_spooled_by_the_previous_release_keeps_its_image_and_heat_map(db_url: str, tmp_path: Path) -> None:
    store = make_store(db_url, tmp_path)
    old = full_record("spooled-before").model_dump(mode="json", exclude={"evidence", "rules"})
    old.pop("trigger")
    old |= {"image_sha256": IMAGE, "heatmap_sha256": HEAT}  # the previous release's layout
    store.spool.append("record", old)
    store.degraded = True
    assert store.flush()
    (row,) = query_records(store.engine)
    assert [(e["kind"], e["sha256"]) for e in row["evidence"]] == [("image", IMAGE), ("anomaly-map", HEAT)]
    assert row["evidence"][1]["media_type"] == "image/png" and row["rules"] == []


def _fill_as_release_0003(engine: object) -> None:
    """Rows as the previous release (schema 0003) wrote them: an NG part with image, heat
    map, region and review; a sampled OK part with only its image; one with nothing kept."""
    now = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    with engine.begin() as c:  # type: ignore[attr-defined]
        c.execute(
            text("INSERT INTO stations (id, product, created_at, last_started_at) VALUES ('st-1', 'washer', :t, :t)"),
            {"t": now},
        )
        c.execute(
            text(
                "INSERT INTO recipes (id, recipe_id, version, content_sha256, body, created_at) "
                "VALUES (1, 'washer-top', '1', :sha, '{}', :t)"
            ),
            {"sha": "a" * 64, "t": now},
        )
        c.execute(
            text("INSERT INTO models (id, sha256, name, card, created_at) VALUES (1, :sha, 'm.safetensors', '{}', :t)"),
            {"sha": "b" * 64, "t": now},
        )
        parts = [(1, "ng", "NG", IMAGE, HEAT), (2, "ok-kept", "OK", SIDE, None), (3, "ok", "OK", None, None)]
        for pk, key, verdict, image, heat in parts:
            c.execute(
                text(
                    "INSERT INTO inspections (id, key, seq, station_id, recipe_pk, model_pk, threshold, part_id, "
                    "source_name, verdict, score, normalised_score, error, width, height, arrived_at, decided_at, "
                    "stored_at, latency_ms, image_sha256, heatmap_sha256) VALUES (:id, :key, :id, 'st-1', 1, 1, 2.0, "
                    "NULL, :name, :verdict, 1.0, 0.5, NULL, 64, 64, :t, :t, :t, 12.5, :image, :heat)"
                ),
                {
                    "id": pk,
                    "key": key,
                    "name": f"{key}.png",
                    "verdict": verdict,
                    "t": now,
                    "image": image,
                    "heat": heat,
                },
            )
        c.execute(
            text(
                "INSERT INTO regions (inspection_id, x, y, width, height, area_px, area_mm2, max_score, mean_score) "
                "VALUES (1, 1, 2, 3, 4, 9, NULL, 1.8, 1.2)"
            )
        )
        c.execute(
            text(
                "INSERT INTO reviews (inspection_id, outcome, label, note, reviewer, at) "
                "VALUES (1, 'defect', 'crack', NULL, 'qa', :t)"
            ),
            {"t": now},
        )


def test_upgrading_a_database_of_the_previous_release_moves_images_to_evidence(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine, "0003")
    _fill_as_release_0003(engine)
    assert upgrade(engine) == head_revision()

    rows = {r["key"]: r for r in query_records(engine)}
    assert set(rows) == {"ng", "ok-kept", "ok"}
    ng = rows["ng"]
    assert [(e["kind"], e["channel"], e["sha256"]) for e in ng["evidence"]] == [
        ("image", "main", IMAGE),
        ("anomaly-map", "main", HEAT),
    ]
    assert ng["regions"][0]["area_px"] == 9 and ng["rules"] == [] and ng["trigger"] is None
    assert [e["sha256"] for e in rows["ok-kept"]["evidence"]] == [SIDE] and rows["ok"]["evidence"] == []
    columns = {c["name"] for c in inspect(engine).get_columns("inspections")}
    assert not {"image_sha256", "heatmap_sha256"} & columns
    # Reviews survived, and the retraining queries find the kept images through evidence.
    reviews = Reviews(engine)
    assert reviews.history(1)[0]["label"] == "crack"
    assert [(x.inspection_id, x.image_sha256, x.is_defect) for x in reviews.labelled("st-1")] == [(1, IMAGE, True)]
    assert reviews.good_images("st-1", 10) == [(2, SIDE)]
    assert reviews.counts("st-1")["pending"] == 1  # the sampled OK part; the NG one is reviewed

    # And back: the old columns get the first image and heat map again.
    assert downgrade(engine, "0003") == "0003"
    with engine.connect() as c:
        back = c.execute(text("SELECT key, image_sha256, heatmap_sha256 FROM inspections ORDER BY id")).all()
    assert [tuple(r) for r in back] == [("ng", IMAGE, HEAT), ("ok-kept", SIDE, None), ("ok", None, None)]


def test_the_migrations_build_exactly_the_schema_the_code_declares(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_measurement_series_are_selected_alike_on_sqlite_and_postgresql(db_url: str, tmp_path: Path) -> None:
    from huoyan.store.measurements import latest_with_evidence, measurement_names, measurement_series
    from huoyan.store.records import RecordFilter

    store = make_store(db_url, tmp_path)
    t = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    records = []
    for i in range(12):
        r = full_record(f"w{i}").model_copy(
            update={
                "seq": i,
                "arrived_at": t + timedelta(seconds=i),
                "verdict": Verdict.NG if i >= 9 else Verdict.OK,
                "measurements": [
                    Measurement(channel="DE", name="kurtosis", value=3.0 + i),
                    Measurement(channel="FE", name="kurtosis", value=-1.0),
                    Measurement(channel="DE", name="rms", value=0.1 * i),
                ],
                "evidence": [] if i % 5 else full_record().evidence[:1],
            }
        )
        records.append(StoredRecord(r, {}))
    store.write(records)
    series = measurement_series(store.engine, RecordFilter(station="st-1"), "kurtosis", "DE", limit=5)
    assert [p.value for p in series] == [10.0, 11.0, 12.0, 13.0, 14.0]  # the newest five, oldest first
    assert [p.verdict for p in series] == ["OK", "OK", "NG", "NG", "NG"]
    since = measurement_series(store.engine, RecordFilter(station="st-1", since=t + timedelta(seconds=10)), "rms")
    assert [round(p.value, 6) for p in since] == [1.0, 1.1]
    assert measurement_names(store.engine, "st-1") == [("DE", "kurtosis"), ("FE", "kurtosis"), ("DE", "rms")]
    newest_kept = latest_with_evidence(store.engine, "st-1", "image")
    assert newest_kept == get_inspection(store.engine, key="w10").id  # type: ignore[union-attr]
