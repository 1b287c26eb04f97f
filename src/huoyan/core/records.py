"""What flows out of the station: arrivals, inspection records, events, and the sink contract.

A source turns whatever it watches into ``Arrival`` objects; the pipeline turns each
into exactly one ``InspectionRecord``; sinks (the record store, line feedback, the live
view) take records and ``StationEvent`` alarms. None of these stages imports another:
they meet here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, field_validator

from huoyan.core.models import Judgement
from huoyan.core.text import safe_text

# What the record store's columns hold; longer values are shortened with a digest (``safe_text``).
KEY_CHARS = 400
SOURCE_NAME_CHARS = 1000
PART_ID_CHARS = 200
MESSAGE_CHARS = 4000


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Arrival:
    """One part as a source hands it over, before decoding.

    ``key`` is the idempotency key: the same part arriving again (a restart re-claiming
    unfinished work, a replay resumed) carries the same key, and the store keeps one
    record per key. Exactly one of ``data`` (encoded file bytes) and ``image`` (a decoded
    HxWx3 uint8 RGB frame) is set.
    """

    key: str
    source_name: str
    part_id: str | None
    arrived_at: datetime
    data: bytes | None = None
    image: np.ndarray | None = None
    seq: int | None = None
    recovered: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ALARM = "alarm"


class StationEvent(BaseModel):
    """Something an operator should know: a dropped frame, a database outage, a full disk."""

    station_id: str
    kind: str = Field(description="machine-readable, e.g. 'frame-dropped', 'database-unavailable'")
    severity: Severity
    message: str
    at: datetime = Field(default_factory=utcnow)
    active: bool = Field(default=True, description="False when the event clears an earlier alarm")

    @field_validator("message")
    @classmethod
    def _storable(cls, v: str) -> str:
        return safe_text(v, MESSAGE_CHARS)


class InspectionRecord(Judgement):
    """The stored, traceable outcome of one part: exactly one per arrival."""

    key: str
    seq: int | None = None
    station_id: str
    recipe_id: str
    recipe_version: str
    model_sha256: str | None = None
    threshold: float | None = None
    part_id: str | None = None
    arrived_at: datetime
    decided_at: datetime
    stored_at: datetime | None = None
    latency_ms: float = Field(description="arrival to decision, milliseconds")
    image_sha256: str | None = None
    heatmap_sha256: str | None = None
    trigger: dict[str, Any] | None = Field(
        default=None, description="the trigger's payload: part id and the PLC's job and measurement ids"
    )

    # Names come from file systems, uploads and PLCs: any bytes, any length. Made storable
    # here, once, so no writer (database, spool, message) can fail on one part's name.
    @field_validator("key")
    @classmethod
    def _storable_key(cls, v: str) -> str:
        return safe_text(v, KEY_CHARS)

    @field_validator("source_name")
    @classmethod
    def _storable_name(cls, v: str) -> str:
        return safe_text(v, SOURCE_NAME_CHARS)

    @field_validator("part_id")
    @classmethod
    def _storable_part_id(cls, v: str | None) -> str | None:
        return None if v is None else safe_text(v, PART_ID_CHARS)

    @field_validator("error")
    @classmethod
    def _storable_error(cls, v: str | None) -> str | None:
        return None if v is None else safe_text(v, MESSAGE_CHARS)


@dataclass(slots=True)
class StoredRecord:
    """A record with the blobs (image, heat map) it references, as handed to a sink, and
    a small JPEG overlay for the live view when one is being drawn."""

    record: InspectionRecord
    blobs: dict[str, bytes] = field(default_factory=dict)
    preview: bytes | None = None
