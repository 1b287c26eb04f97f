"""The record tables. Alembic migrations in ``migrations/`` create and evolve them.

Stations, recipes and models are registered once and referenced by every inspection,
so a record years later still says which recipe version, model file (by sha256) and
threshold decided it. ``inspections.key`` is the idempotency key: one row per part.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
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
    image_sha256: Mapped[str | None] = mapped_column(String(64))
    heatmap_sha256: Mapped[str | None] = mapped_column(String(64))

    recipe: Mapped[RecipeRow] = relationship()
    model: Mapped[ModelRow | None] = relationship()
    regions: Mapped[list[RegionRow]] = relationship(order_by="RegionRow.id", cascade="all, delete-orphan")


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
