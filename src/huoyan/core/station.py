"""How the server sees a station: its status, and the handle it drives it through.

The status is the one shape the dashboard, the API, the live stream and the metrics
read. ``StationHandle`` is all the server asks of a station (a station hosted in the
server's process implements it, ``huoyan.server.hosting.StationHost``; one in another
process or on another machine would implement the same). Model versions cross it by
content (sha256 in the blob store), never by file path.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from huoyan.core.records import InspectionRecord, StationEvent


class StationBusy(RuntimeError):
    """The station cannot take a part now: its upload queue is full, or it is not running."""


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

    @property
    def takes_uploads(self) -> bool:
        """Parts come to this station by HTTP upload."""
        return self.source == "http"


class ModelVersionRef(BaseModel):
    """A model version as a station is told to run it: its number and its content."""

    version: int
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="the artifact's name in the blob store")


@runtime_checkable
class StationHandle(Protocol):
    """What the server asks of a station."""

    @property
    def station_id(self) -> str: ...

    @property
    def max_image_pixels(self) -> int:
        """The largest image the station decodes (uploads are refused before it, from the header)."""
        ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 30.0) -> None: ...

    def status(self) -> StationStatus: ...

    def submit(
        self, data: bytes, name: str, part_id: str | None, lot: str | None = None
    ) -> concurrent.futures.Future[InspectionRecord]:
        """Inspect an uploaded part (of ``lot``, if given); the future ends with its stored record. Raises
        ``TypeError`` if the station does not take uploads, ``StationBusy`` if not now."""
        ...

    async def activate(self, model: ModelVersionRef) -> None:
        """Judge with this model version from the next part on."""
        ...

    async def pause(self) -> None:
        """Take no new parts until resumed (the parts in flight are finished and recorded)."""
        ...

    async def resume(self) -> None: ...

    async def switch_recipe(self, recipe: str) -> None:
        """Judge by another recipe of the station's table (its id, or the PLC's index) from the next part on."""
        ...

    async def set_threshold(self, threshold: float | None, by: str) -> None:
        """Decide at this raw-score threshold from the next part on (None: the model's calibrated one)."""
        ...

    def watch(self, watchers: int) -> None:
        """How many live views watch the station (previews are drawn only while one does)."""
        ...

    def blob(self, sha256: str) -> bytes:
        """A piece of evidence the station kept. Raises ``FileNotFoundError``."""
        ...


# -- a station on another PC and the server it reports to (huoyan.runner.link) -------------


class StationCommand(BaseModel):
    """What the server asks of a remote station, carried out between parts."""

    id: int
    action: Literal["pause", "resume", "threshold", "activate", "recipe"]
    threshold: float | None = Field(default=None, gt=0, description="threshold: the raw score; none: calibrated")
    model: ModelVersionRef | None = Field(default=None, description="activate: the version, fetched by its digest")
    recipe: str | None = Field(
        default=None, description="recipe: the id or PLC index of a recipe in the station's table"
    )


class CommandDone(BaseModel):
    """A command's outcome, told with the station's next report."""

    id: int
    ok: bool
    error: str | None = None


class LinkReport(BaseModel):
    """A remote station's report to the server, once a second: its status, what became of
    the commands, and the parts decided and events raised since the last report (for the
    live view; the newest ``LINK_PARTS`` parts when more passed)."""

    status: StationStatus
    done: list[CommandDone] = Field(default_factory=list)
    parts: list[dict[str, Any]] = Field(default_factory=list, max_length=200)
    events: list[StationEvent] = Field(default_factory=list, max_length=200)


LINK_PARTS = 50  # parts a report carries at most: the live view shows the newest; counts stay exact


class LinkReply(BaseModel):
    """The server's answer to a report: the commands waiting for the station, and whether
    anyone watches it live (then its reports bring a picture of their newest part)."""

    commands: list[StationCommand] = Field(default_factory=list)
    watchers: int = Field(default=0, ge=0, description="live views of the station open on the server now")


def recipe_key(recipe: str) -> str | int:
    """A recipe named by the server: the PLC's index when it is a number, else the recipe id."""
    return int(recipe) if recipe.isdigit() else recipe
