"""The record tables. Alembic migrations in ``migrations/`` create and evolve them.

Stations, recipes and models are registered once and referenced by every inspection,
so a record years later still says which recipe version, model file (by sha256) and
threshold decided it. ``inspections.key`` is the idempotency key: one row per part.
An inspection's columns are ``core.records.InspectionRecord``'s fields of the same
names; its regions and evidence have tables of their own.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class StationRow(Base):
    __tablename__ = "stations"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    product: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RecipeRow(Base):
    __tablename__ = "recipes"
    __table_args__ = (UniqueConstraint("recipe_id", "version", name="uq_recipe_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recipe_id: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    content_sha256: Mapped[str] = mapped_column(String(64))
    body: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(500))
    card: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class InspectionRow(Base):
    __tablename__ = "inspections"
    __table_args__ = (
        Index("ix_inspections_station_arrived", "station_id", "arrived_at"),
        Index("ix_inspections_verdict", "verdict"),
        Index("ix_inspections_part", "part_id"),
        Index("ix_inspections_station_lot", "station_id", "lot"),
        Index("ix_inspections_station_chain", "station_id", "chain_pos", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(400), unique=True)
    seq: Mapped[int | None] = mapped_column(Integer)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"))
    recipe_pk: Mapped[int] = mapped_column(ForeignKey("recipes.id"))
    model_pk: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    threshold: Mapped[float | None] = mapped_column(Float)
    part_id: Mapped[str | None] = mapped_column(String(200))
    source_name: Mapped[str] = mapped_column(String(1000))
    verdict: Mapped[str] = mapped_column(String(8))
    score: Mapped[float | None] = mapped_column(Float)
    normalised_score: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    arrived_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    latency_ms: Mapped[float] = mapped_column(Float)
    rules: Mapped[list[dict[str, object]] | None] = mapped_column(JSON)
    trigger: Mapped[dict[str, object] | None] = mapped_column(JSON)
    diagnosis: Mapped[str | None] = mapped_column(String(64))
    lot: Mapped[str | None] = mapped_column(String(200))
    # The station's record chain (huoyan.store.chain); null for records stored before it.
    chain_pos: Mapped[int | None] = mapped_column(Integer)
    chain_sha256: Mapped[str | None] = mapped_column(String(64))

    recipe: Mapped[RecipeRow] = relationship()
    model: Mapped[ModelRow | None] = relationship()
    regions: Mapped[list[RegionRow]] = relationship(order_by="RegionRow.id", cascade="all, delete-orphan")
    evidence: Mapped[list[EvidenceRow]] = relationship(order_by="EvidenceRow.id", cascade="all, delete-orphan")
    measurements: Mapped[list[MeasurementRow]] = relationship(
        order_by="MeasurementRow.id", cascade="all, delete-orphan"
    )
    channels: Mapped[list[ChannelRow]] = relationship(order_by="ChannelRow.id", cascade="all, delete-orphan")


class RegionRow(Base):
    __tablename__ = "regions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id", ondelete="CASCADE"), index=True)
    x: Mapped[int] = mapped_column(Integer)
    y: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    area_px: Mapped[int] = mapped_column(Integer)
    area_mm2: Mapped[float | None] = mapped_column(Float)
    max_score: Mapped[float] = mapped_column(Float)
    mean_score: Mapped[float] = mapped_column(Float)
    label: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[float | None] = mapped_column(Float)
    channel: Mapped[str] = mapped_column(String(100), server_default="main")


class EvidenceRow(Base):
    """One piece of an inspection's evidence (an image, an anomaly map, a signal window):
    a blob in the content-addressed store, with what it is and which channel it came from."""

    __tablename__ = "evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    media_type: Mapped[str] = mapped_column(String(100))


class MeasurementRow(Base):
    """A number measured on an inspection (a sensor window's features): trends and
    control charts aggregate these in SQL, by name and channel."""

    __tablename__ = "measurements"
    __table_args__ = (Index("ix_measurements_name_inspection", "name", "inspection_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)


class ChannelRow(Base):
    """One channel's own verdict in an inspection of several channels."""

    __tablename__ = "channel_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(100))
    verdict: Mapped[str] = mapped_column(String(8))
    score: Mapped[float | None] = mapped_column(Float)
    normalised_score: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    diagnosis: Mapped[str | None] = mapped_column(String(64))
    model_sha256: Mapped[str | None] = mapped_column(String(64))


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_station_at", "station_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station_id: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(100))
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column()
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ack_comment: Mapped[str | None] = mapped_column(Text)


class RollupRow(Base):
    """Per station, 15-minute bucket of arrival (seconds since 1970 // 900) and lot ('' for
    none): verdict counts and sums of OK parts' scores. Kept by a database trigger on every
    insert into ``inspections`` (migration 0007), so that charts read buckets, not parts."""

    __tablename__ = "inspection_rollup"

    station_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    lot: Mapped[str] = mapped_column(String(200), primary_key=True)
    judged: Mapped[int] = mapped_column(Integer)
    ng: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    score_n: Mapped[int] = mapped_column(Integer)
    norm_n: Mapped[int] = mapped_column(Integer)
    score_sum: Mapped[float] = mapped_column(Float)
    score_squares: Mapped[float] = mapped_column(Float)
    score_min: Mapped[float | None] = mapped_column(Float)
    score_max: Mapped[float | None] = mapped_column(Float)
    norm_sum: Mapped[float] = mapped_column(Float)
    norm_squares: Mapped[float] = mapped_column(Float)
    norm_min: Mapped[float | None] = mapped_column(Float)
    norm_max: Mapped[float | None] = mapped_column(Float)


class ControlLimitsRow(Base):
    """Control limits frozen for Phase II: the parameters a chart's limits come from, with
    a version per station, metric and chart, and who froze them."""

    __tablename__ = "control_limits"
    __table_args__ = (UniqueConstraint("station_id", "metric", "chart", "version", name="uq_control_limits_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station_id: Mapped[str] = mapped_column(String(128))
    metric: Mapped[str] = mapped_column(String(100))
    chart: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, float]] = mapped_column(JSON)
    points: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    frozen_by: Mapped[str] = mapped_column(String(100))
    frozen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)


class PlantSettingRow(Base):
    """A plant-wide setting (the shift calendar), shared by the CLI and every server."""

    __tablename__ = "plant_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, object]] = mapped_column(JSON)
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# -- platform: users, reviews, model versions, training jobs, audit ---------------------------


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str | None] = mapped_column(String(100))
    # The dashboard's language the user chose (a BCP 47 tag); null: the browser's.
    language: Mapped[str | None] = mapped_column(String(16))
    # How the dashboard names the user (王 师傅, "Shift leader B"); null: the user name.
    display_name: Mapped[str | None] = mapped_column(String(100))


class SessionRow(Base):
    """A browser login. Only the token's hash is stored, so a leaked table opens no session."""

    __tablename__ = "sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKeyRow(Base):
    """A machine's credential (a PLC gateway, Prometheus, an MES). Stored as a hash too."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(default=False)
    scopes: Mapped[str] = mapped_column(String(100), default="upload", server_default="upload")
    # The stations the key may act for (upload to, report as); None: any.
    stations: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)


class ReviewRow(Base):
    """A person's judgement of one inspection; the latest one per inspection counts."""

    __tablename__ = "reviews"
    __table_args__ = (Index("ix_reviews_station_chain", "station_id", "chain_pos", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id", ondelete="CASCADE"), index=True)
    outcome: Mapped[str] = mapped_column(String(20))
    label: Mapped[str | None] = mapped_column(String(100))
    # Corrected region labels: [{"index": position in the record's regions, "label": ...}]
    regions: Mapped[list[dict[str, object]] | None] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The station's review chain (huoyan.store.chain); null for reviews stored before it.
    station_id: Mapped[str | None] = mapped_column(String(128))
    chain_pos: Mapped[int | None] = mapped_column(Integer)
    chain_sha256: Mapped[str | None] = mapped_column(String(64))


class ModelVersionRow(Base):
    """A model as a station's version: its lineage (parent, training images) and review metrics."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("station_id", "version", name="uq_station_model_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station_id: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    model_pk: Mapped[int] = mapped_column(ForeignKey("models.id"))
    path: Mapped[str] = mapped_column(String(1000))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    status: Mapped[str] = mapped_column(String(16))
    trained_on: Mapped[dict[str, object]] = mapped_column(JSON)
    metrics: Mapped[dict[str, object]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    model: Mapped[ModelRow] = relationship()


class TrainingJobRow(Base):
    __tablename__ = "training_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station_id: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, object]] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    message: Mapped[str | None] = mapped_column(Text)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))


class AuditRow(Base):
    """Who did what, denied attempts included. Each row hashes the one before it, so an
    edited or deleted row breaks the chain, and carries an HMAC of its hash under the
    audit key (``huoyan.store.audit``); rows from before the key have none."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(500))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, object]] = mapped_column(JSON)
    prev_sha256: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    mac: Mapped[str | None] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The audit chain's one head row: how many entries, the newest one's hash, and an
    HMAC of both. Appends lock it, so writers take turns; removing the newest entries
    leaves it pointing past the end."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entries: Mapped[int] = mapped_column(Integer)
    last_id: Mapped[int | None] = mapped_column(Integer)
    last_sha256: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ThresholdOverrideRow(Base):
    """A decision threshold an engineer set on a hosted station, kept across restarts.

    It is a raw score of one model under one recipe version, so it applies only while
    both are the ones named here."""

    __tablename__ = "threshold_overrides"

    station_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    recipe_id: Mapped[str] = mapped_column(String(200))
    base_version: Mapped[str] = mapped_column(String(100))
    model_sha256: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[float] = mapped_column(Float)
    set_by: Mapped[str] = mapped_column(String(100))
    set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReinspectionRunRow(Base):
    """A re-inspection of archived images with a given model (``huoyan batch``): what
    was re-inspected, with which model and threshold, by whom, and when it finished."""

    __tablename__ = "reinspection_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model_sha256: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(500))
    threshold: Mapped[float] = mapped_column(Float)
    recipe_id: Mapped[str] = mapped_column(String(200))
    recipe_version: Mapped[str] = mapped_column(String(100))
    source: Mapped[dict[str, object]] = mapped_column(JSON)  # the folder, or the records' selection
    total: Mapped[int] = mapped_column(Integer)  # items selected (the last start's count)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ReinspectionResultRow(Base):
    """One re-inspected image: the new verdict and score beside the original ones (a
    record's, snapshotted when selected; none for a folder's image). ``item`` is unique
    in its run, so a resumed run stores each image once."""

    __tablename__ = "reinspection_results"
    __table_args__ = (
        UniqueConstraint("run_id", "item", name="uq_reinspection_item"),
        Index("ix_reinspection_results_run_verdicts", "run_id", "original_verdict", "verdict"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("reinspection_runs.id", ondelete="CASCADE"))
    item: Mapped[str] = mapped_column(String(400))  # the record's key, or the image's path in the folder
    inspection_id: Mapped[int | None] = mapped_column(ForeignKey("inspections.id", ondelete="SET NULL"))
    source_name: Mapped[str] = mapped_column(String(1000))
    verdict: Mapped[str] = mapped_column(String(8))
    score: Mapped[float | None] = mapped_column(Float)
    normalised_score: Mapped[float | None] = mapped_column(Float)
    regions: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    original_verdict: Mapped[str | None] = mapped_column(String(8))
    original_score: Mapped[float | None] = mapped_column(Float)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# A record's rows of its own, by the record's field name: stored, read and chained together.
RECORD_CHILDREN: dict[str, type[Base]] = {
    "regions": RegionRow,
    "evidence": EvidenceRow,
    "measurements": MeasurementRow,
    "channels": ChannelRow,
}
