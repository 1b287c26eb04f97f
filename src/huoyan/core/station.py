"""What a running station reports of itself: the one status shape the dashboard, the API,
the live stream and the metrics read (a station in another process would report the same)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class StationStatus(BaseModel):
    """A station's state, recipe, model, threshold and live counters."""

    station_id: str
    product: str
    running: bool
    paused: bool
    error: str | None
    source: str
    recipe_id: str
    recipe_version: str
    model_version: int | None
    model_sha256: str | None
    threshold: float | None = Field(description="raw score above which a part is NG")
    threshold_set: bool = Field(description="True when an engineer set it; False: the model's calibrated one")
    counts: dict[str, int]
    parts_per_second: float
    ng_rate: float
    queue_depth: int
    latency_ms_p50: float | None
    latency_ms_p99: float | None
    alarms: dict[str, str]
    spooled: int
