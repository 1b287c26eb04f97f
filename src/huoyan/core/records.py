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
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from huoyan.core.models import Judgement, SignalWindow
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
    record per key. Exactly one of ``data`` (encoded file bytes), ``image`` (a decoded
    HxWx3 uint8 RGB frame) and ``window`` (a window of a sensor channel) is set.
    """

    key: str
    source_name: str
    part_id: str | None
    arrived_at: datetime
    data: bytes | None = None
    image: np.ndarray | None = None
    window: SignalWindow | None = None
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


class EvidenceKind(StrEnum):
    """What a piece of evidence is. Detectors of new kinds add theirs here."""

    IMAGE = "image"  # the part as seen: the original file, or the preprocessed image
    ANOMALY_MAP = "anomaly-map"  # 8-bit PNG of score / threshold, 128 at the threshold
    REFERENCE = "reference"  # what the part was compared with, aligned to it (a golden template)
    SIGNAL = "signal"  # a window of a sensor channel: float32 samples (.npy)
    CONDITION = "condition"  # a window's analysis: features, envelope spectrum, diagnosis (JSON)


class Evidence(BaseModel):
    """One piece of what a verdict rests on, kept in the content-addressed blob store."""

    model_config = ConfigDict(frozen=True)

    kind: EvidenceKind
    channel: str = Field(default="main", max_length=100, description="camera or sensor channel it came from")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="the blob's name in the blob store")
    media_type: str = Field(max_length=100, description="e.g. image/png, application/octet-stream")


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


def media_type_of(data: bytes) -> str:
    """The media type of an encoded image, from its first bytes; octet-stream if unknown."""
    for magic, media in _MAGIC:
        if data.startswith(magic):
            return media
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


class InspectionRecord(Judgement):
    """The stored, traceable outcome of one part: exactly one per arrival.

    Its fields are declared here once: the record store's rows, the API's inspection
    schemas, the live view and the line's result message are derived from them."""

    key: str
    seq: int | None = None
    station_id: str
    recipe_id: str
    recipe_version: str
    model_sha256: str | None = None
    threshold: float | None = None
    part_id: str | None = None
    lot: str | None = Field(default=None, description="the lot (batch) the part belongs to")
    arrived_at: datetime
    decided_at: datetime
    stored_at: datetime | None = None
    latency_ms: float = Field(description="arrival to decision, milliseconds")
    evidence: list[Evidence] = Field(default_factory=list, description="what was kept of the part (blobs)")
    trigger: dict[str, Any] | None = Field(
        default=None, description="the trigger's payload: part id and the PLC's job and measurement ids"
    )

    @model_validator(mode="before")
    @classmethod
    def _single_image_layout(cls, data: Any) -> Any:
        """Records spooled by releases before evidence carried one image and one heat map."""
        if isinstance(data, dict) and ("image_sha256" in data or "heatmap_sha256" in data):
            data = dict(data)
            evidence = list(data.get("evidence") or [])
            image, heat = data.pop("image_sha256", None), data.pop("heatmap_sha256", None)
            if image:
                evidence.append({"kind": "image", "sha256": image, "media_type": "application/octet-stream"})
            if heat:
                evidence.append({"kind": "anomaly-map", "sha256": heat, "media_type": "image/png"})
            data["evidence"] = evidence
        return data

    def evidence_of(self, kind: EvidenceKind, channel: str | None = None) -> Evidence | None:
        """The first evidence of this kind (from this channel, if given), or None."""
        return next((e for e in self.evidence if e.kind == kind and channel in (None, e.channel)), None)

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

    @field_validator("part_id", "lot")
    @classmethod
    def _storable_part_id(cls, v: str | None) -> str | None:
        return None if v is None else safe_text(v, PART_ID_CHARS)

    @field_validator("error")
    @classmethod
    def _storable_error(cls, v: str | None) -> str | None:
        return None if v is None else safe_text(v, MESSAGE_CHARS)


class StoredInspection(InspectionRecord):
    """A record as the store hands it back: with its row id and the model's file name."""

    id: int | None = Field(default=None, description="None while the record waits in the station's spool")
    model_name: str | None = None


@dataclass(slots=True)
class StoredRecord:
    """A record with the blobs its evidence references, as handed to a sink, and
    a small JPEG overlay for the live view when one is being drawn."""

    record: InspectionRecord
    blobs: dict[str, bytes] = field(default_factory=dict)
    preview: bytes | None = None
