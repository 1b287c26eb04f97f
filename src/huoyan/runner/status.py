"""A running station's status and each part as the server's live view shows them: one
function each for a station the server hosts and for one that reports to it from
another PC (``runner.link``), and the preview picture both draw while the view is watched."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from huoyan.core.models import Verdict
from huoyan.core.recipe import Recipe
from huoyan.core.records import InspectionRecord
from huoyan.core.station import StationStatus
from huoyan.vision.overlay import encode, render_overlay

PREVIEW_SIDE = 480  # px of the live view's picture of a part (its longer side)


def draw_preview(image: np.ndarray, heat: np.ndarray | None, regions: Sequence[Any]) -> bytes:
    """The part with its heat map and regions, as a JPEG for the live view."""
    return encode(render_overlay(image, heat, regions, max_side=PREVIEW_SIDE), ".jpg", 80)


def preview_url(jpeg: bytes) -> str:
    """A preview as the live view's messages carry it."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def threshold_of(opened: object | None) -> float | None:
    """The raw score above which the running station calls a part NG."""
    station = getattr(opened, "station", None)
    value = getattr(getattr(station, "inspector", None), "threshold", None)
    return None if value is None else float(value)


def ng_rate(last: Iterable[str]) -> float:
    """The share of NG among the last judged parts' verdicts."""
    seen = list(last)
    return sum(v == Verdict.NG for v in seen) / len(seen) if seen else 0.0


def station_status(
    opened: object | None,
    recipe: Recipe,
    *,
    running: bool,
    error: str | None,
    model_version: int | None,
    last_verdicts: Iterable[str] = (),
) -> StationStatus:
    """The status of the station ``opened`` (a ``runner.OpenStation``; None before it opened)."""
    station = getattr(opened, "station", None)
    stats = station.stats if station is not None else None
    line = getattr(opened, "line", None)
    store = getattr(opened, "store", None)
    active = line.active_recipe() if line else None
    return StationStatus(
        station_id=recipe.station,
        product=recipe.product,
        running=running,
        paused=bool(station is not None and station.paused),
        error=error,
        source=recipe.source.type,
        recipe_id=active.recipe_id if active else recipe.recipe,
        recipe_version=active.version if active else recipe.version,
        model_version=model_version,
        model_sha256=active.model_sha256 if active else None,
        threshold=threshold_of(opened),
        threshold_set=bool(line and line.recipe is not line.base_recipe),
        counts=dict(stats.verdicts) if stats else {},
        parts_per_second=round(stats.rate(), 3) if stats else 0.0,
        ng_rate=round(ng_rate(last_verdicts), 4),
        queue_depth=stats.queue_depth if stats else 0,
        latency_ms_p50=stats.latency(0.5) if stats else None,
        latency_ms_p99=stats.latency(0.99) if stats else None,
        alarms=dict(stats.alarms) if stats else {},
        spooled=len(store.spool) if store is not None else 0,
    )


# What the live view shows of each part (the record page shows the rest).
LIVE_FIELDS = frozenset(
    {
        "key",
        "seq",
        "part_id",
        "source_name",
        "verdict",
        "score",
        "normalised_score",
        "threshold",
        "regions",
        "rules",
        "error",
        "decided_at",
        "latency_ms",
        "recipe_id",
        "recipe_version",
        "model_sha256",
    }
)


def part_message(r: InspectionRecord) -> dict[str, Any]:
    """One part for the live view: a subset of the record's own fields, as the record
    serialises them."""
    message = r.model_dump(mode="json", include=set(LIVE_FIELDS))
    message["latency_ms"] = round(r.latency_ms, 1)
    message["recipe"] = f"{r.recipe_id} v{r.recipe_version}"
    return message
