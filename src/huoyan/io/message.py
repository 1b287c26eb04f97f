"""The JSON messages a station sends to the line (MQTT, webhook): versioned, with a JSON Schema.

``ResultMessage`` is the contract with MES and SCADA systems. Its ``schema`` field
names the version; a change that could break a consumer gets a new version and a new
schema file. ``schemas/result-v1.schema.json`` is generated from this model
(``python -m huoyan.io.message``) and a test keeps the two equal.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from huoyan.core.models import ChannelVerdict, Measurement, Region, Verdict
from huoyan.core.records import InspectionRecord, StationEvent

SCHEMA_FILE = Path(__file__).parent / "schemas" / "result-v1.schema.json"


class RecipeRef(BaseModel):
    id: str
    version: str


class ResultMessage(BaseModel):
    """One part's verdict as the line receives it."""

    model_config = ConfigDict(extra="forbid", title="Huoyan inspection result v1")

    schema_: Literal["huoyan.result/1"] = Field(default="huoyan.result/1", alias="schema")
    plant: str
    line: str
    station: str
    seq: int | None = Field(description="station sequence number: increasing, gaps allowed; use it to drop repeats")
    key: str = Field(description="idempotency key of the stored record")
    part_id: str | None
    verdict: Verdict
    score: float | None = Field(description="raw anomaly score")
    normalised_score: float | None = Field(description="score / threshold; above 1.0 is NG")
    threshold: float | None
    regions: list[Region]
    error: str | None
    recipe: RecipeRef
    model_sha256: str | None = Field(description="sha256 of the model artifact that judged the part")
    source_name: str
    arrived_at: datetime
    decided_at: datetime
    latency_ms: float = Field(description="arrival to decision")
    trigger: dict[str, Any] | None = Field(description="payload of the trigger that took the part, if any")
    # Added for sensor channels and stations of several channels; left out of the
    # message when unset, so a camera station's messages are what they always were.
    diagnosis: str | None = Field(default=None, description="the fault family a sensor window shows, if any")
    measurements: list[Measurement] = Field(default_factory=list, description="a sensor window's features")
    channels: list[ChannelVerdict] = Field(default_factory=list, description="each channel's verdict, if several")
    lot: str | None = Field(default=None, description="the lot (batch) the part belongs to, if known")

    @classmethod
    def from_record(cls, record: InspectionRecord, plant: str, line: str) -> ResultMessage:
        return cls(
            plant=plant,
            line=line,
            station=record.station_id,
            seq=record.seq,
            key=record.key,
            part_id=record.part_id,
            verdict=record.verdict,
            score=record.score,
            normalised_score=record.normalised_score,
            threshold=record.threshold,
            regions=record.regions,
            error=record.error,
            recipe=RecipeRef(id=record.recipe_id, version=record.recipe_version),
            model_sha256=record.model_sha256,
            source_name=record.source_name,
            arrived_at=record.arrived_at,
            decided_at=record.decided_at,
            latency_ms=record.latency_ms,
            trigger=record.trigger,
            diagnosis=record.diagnosis,
            measurements=record.measurements,
            channels=record.channels,
            lot=record.lot,
        )

    def to_json(self) -> dict[str, Any]:
        body = self.model_dump(mode="json", by_alias=True)
        for name in OPTIONAL_ADDITIONS:
            if not body[name]:
                del body[name]
        return body


OPTIONAL_ADDITIONS = ("diagnosis", "measurements", "channels", "lot")


def event_message(event: StationEvent, plant: str, line: str) -> dict[str, Any]:
    """Alarms and their clearing, as published on the retained alarm topics."""
    return {"schema": "huoyan.event/1", "plant": plant, "line": line, **event.model_dump(mode="json")}


def status_message(station: str, plant: str, line: str, online: bool, alarms: dict[str, str]) -> dict[str, Any]:
    return {
        "schema": "huoyan.status/1",
        "plant": plant,
        "line": line,
        "station": station,
        "online": online,
        "alarms": alarms,
    }


def result_json_schema() -> dict[str, Any]:
    schema = ResultMessage.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "urn:huoyan:schema:result:1"
    return schema


if __name__ == "__main__":
    SCHEMA_FILE.write_text(json.dumps(result_json_schema(), indent=2) + "\n")
    print(SCHEMA_FILE)
