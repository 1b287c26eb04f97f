"""The REST API's request and response models; FastAPI builds the OpenAPI document from them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field, computed_field, field_validator, model_validator

from huoyan.core.recipe import STATION_ID
from huoyan.core.records import StoredInspection
from huoyan.quality.capability import Capability
from huoyan.share.package import Manifest
from huoyan.store.accounts import (
    DEFAULT_KEY_SCOPES,
    AccountError,
    Role,
    Scope,
    check_key_stations,
    display_name_of,
    username_of,
)
from huoyan.store.reinspections import ReinspectionResult, RunInfo
from huoyan.store.reviews import Outcome

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class Health(BaseModel):
    status: str
    database: bool | None = None
    stations: dict[str, bool] = Field(default_factory=dict)


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class UserOut(BaseModel):
    username: str
    display_name: str | None = None
    role: Role
    active: bool
    created_at: datetime


class Me(BaseModel):
    username: str
    role: Role
    via: str
    csrf_token: str | None = Field(default=None, description="send as X-CSRF-Token on state-changing requests")
    language: str | None = Field(default=None, description="the dashboard's language chosen; null: the browser's")


class LanguageIn(BaseModel):
    language: Literal["en", "zh-CN"] | None = Field(description="the dashboard's language; null: the browser's")


class NewUser(BaseModel):
    username: str = Field(
        min_length=1, max_length=100, description="letters or digits of any script, . _ @ -, single inner spaces"
    )
    password: str = Field(min_length=8, max_length=1000)
    role: Role

    @field_validator("username")
    @classmethod
    def _a_user_name(cls, v: str) -> str:
        try:
            return username_of(v)
        except AccountError as exc:
            raise ValueError(*exc.args) from None  # its Message, translated in the 422 answer


class UserChange(BaseModel):
    role: Role | None = None
    active: bool | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1000)
    display_name: str | None = Field(
        default=None, max_length=100, description="how the dashboard names the user (any script); '' clears it"
    )

    @field_validator("display_name")
    @classmethod
    def _a_display_name(cls, v: str | None) -> str | None:
        try:
            display_name_of(v)  # checked here, stored (and blank cleared) by the account store
        except AccountError as exc:
            raise ValueError(*exc.args) from exc
        return v


class NewApiKey(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200, description="what the key is for, e.g. 'line-3 PLC gateway'")
    scopes: list[Scope] = Field(
        default_factory=lambda: list(DEFAULT_KEY_SCOPES),
        min_length=1,
        max_length=4,
        description="what the key may do within the user's role: upload (a camera's key, the default), "
        "read, review, station (a station on another PC), admin (all the role allows)",
    )
    stations: list[Annotated[str, Field(min_length=1, max_length=128, pattern=STATION_ID)]] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="the stations the key may act for (upload to, report as); none: any. "
        "Only for keys whose scopes are upload and station",
    )

    @model_validator(mode="after")
    def _stations_limit_only_station_scopes(self) -> NewApiKey:
        if self.stations is not None:
            try:
                check_key_stations(self.stations, self.scopes)
            except AccountError as exc:
                raise ValueError(*exc.args) from None  # its Message, translated in the 422 answer
        return self


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    username: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool
    scopes: list[Scope]
    stations: list[str] | None = Field(description="the stations the key may act for; null: any")


class ApiKeyCreated(BaseModel):
    id: int
    key: str = Field(description="shown once; only its hash is stored")


class RegionLabel(BaseModel):
    """A corrected label of one of the inspection's regions."""

    index: int = Field(ge=0, le=10_000, description="the region's position in the record's regions")
    label: str = Field(min_length=1, max_length=64, description="what the region really is, e.g. 'short'")


class ReviewIn(BaseModel):
    outcome: Outcome
    label: str | None = Field(default=None, max_length=100, description="defect type, e.g. 'crack'")
    regions: list[RegionLabel] = Field(
        default_factory=list, max_length=1000, description="corrected region labels (a confirmed defect only)"
    )
    note: str | None = Field(default=None, max_length=2000)


class DefectTypes(BaseModel):
    product: str
    types: list[str] = Field(description="what reviewers pick from; empty: any type is taken")


class DefectTypesIn(BaseModel):
    types: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(max_length=200)


class BulkReviewIn(BaseModel):
    """One outcome for many parts: each is reviewed (and chained, and audited) on its own."""

    inspection_ids: list[Annotated[int, Field(ge=1, le=2_147_483_647)]] = Field(min_length=1, max_length=500)
    outcome: Outcome
    label: str | None = Field(default=None, max_length=100, description="defect type, e.g. 'crack'")
    note: str | None = Field(default=None, max_length=2000)


class BulkRefusal(BaseModel):
    inspection_id: int
    reason: str


class BulkReviewOut(BaseModel):
    reviewed: list[int]
    refused: list[BulkRefusal]


class ReviewOut(BaseModel):
    id: int
    inspection_id: int
    outcome: Outcome
    label: str | None
    regions: list[RegionLabel] = Field(default_factory=list)
    note: str | None
    reviewer: str
    at: datetime


class InspectionOut(StoredInspection):
    """An inspection record (``core.records.InspectionRecord``'s fields) with its latest review."""

    review: ReviewOut | None = None


class InspectionPage(Page[InspectionOut]):
    counts: dict[str, int] = Field(description="records per verdict among all the filters select (not this page)")


class InspectionDetail(InspectionOut):
    reviews: list[ReviewOut] = Field(default_factory=list)
    model_version: int | None = None


class UploadResult(InspectionOut):
    heatmap_png_base64: str | None = Field(default=None, description="the heat map, when the recipe keeps it")


class ReviewSummary(BaseModel):
    defect: int
    false_alarm: int
    good: int
    missed_defect: int
    pending: int


REASON = Field(default=None, max_length=500, description="why the change is made; written to the audit trail")


class ActionIn(BaseModel):
    """An engineering action's reason (activation, roll-back)."""

    reason: str | None = REASON


class ShiftCountsOut(BaseModel):
    """A station's parts by verdict in the current shift (or since the counters' reset in it)."""

    shift: str = Field(description="the shift's label, e.g. '2026-12-02 A' (the plant's shift calendar)")
    shift_start: datetime
    since: datetime = Field(description="the shift's start, or the reset during it")
    reset_by: str | None
    counts: dict[str, int]

    @computed_field(description="OK parts among all judged (OK, NG and ERROR); null before the first")  # type: ignore[prop-decorator]
    @property
    def yield_rate(self) -> float | None:
        total = sum(self.counts.values())
        return self.counts.get("OK", 0) / total if total else None


class ThresholdPreviewOut(BaseModel):
    """How many of the station's recent parts a threshold would judge otherwise, by score
    alone: region rules may still keep some of them OK."""

    threshold: float
    parts: int = Field(description="recent OK and NG parts of the station's model, newest first")
    ng_now: int
    ng_then: int = Field(description="NG among them at this threshold")
    ok_to_ng: int
    ng_to_ok: int


class RecipeSwitchIn(BaseModel):
    """A recipe of the station's table, by its id or the PLC's index, and why."""

    recipe: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")
    reason: str | None = REASON


class ThresholdIn(BaseModel):
    threshold: float | None = Field(
        gt=0, le=1e9, description="raw image score above which a part is NG; null returns to the calibrated one"
    )
    reason: str | None = REASON


class RecipeOut(BaseModel):
    recipe_id: str
    version: str
    content_sha256: str
    created_at: datetime
    active_on: list[str]
    body: dict[str, Any]


class ModelVersionOut(BaseModel):
    id: int
    station_id: str
    version: int
    status: str
    parent_id: int | None
    model_sha256: str
    model_name: str
    path: str
    card: dict[str, Any]
    trained_on: dict[str, Any]
    metrics: dict[str, Any]
    created_by: str
    created_at: datetime
    activated_at: datetime | None


class TrainingRequest(BaseModel):
    station_id: str = Field(min_length=1, max_length=128)
    max_images: int = Field(default=200, ge=8, le=5000, description="newest good images to train on")
    mode: Literal["refit", "update"] = Field(
        default="refit",
        description="refit: a new model from the collected good images; update: the reviewed false alarms join "
        "the active memory-bank model's bank (no refit), kept only if held-out good images and confirmed "
        "defects show it costs nothing the model promises",
    )


class TrainingJobOut(BaseModel):
    id: int
    station_id: str
    status: str
    params: dict[str, Any]
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    message: str | None
    version_id: int | None


class EventOut(BaseModel):
    id: int
    station_id: str
    at: datetime
    kind: str
    severity: str
    message: str
    active: bool
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    ack_comment: str | None = None


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]
    sha256: str


class AuditCheck(BaseModel):
    intact: bool
    entries: int
    head_sha256: str = Field(description="the newest entry's hash: note it elsewhere to catch a rollback")
    keyed_from_id: int | None = Field(description="first entry with a MAC (older ones predate the audit key)")
    problem: str | None
    first_bad_id: int | None


class PackageOut(Manifest):
    """A signed package's manifest, as verified, with its files counted."""

    files: int = Field(description="files it carries, each verified against its digest")  # type: ignore[assignment]


class PackageImported(BaseModel):
    package: PackageOut
    installed_in: str
    model_version: ModelVersionOut | None = Field(description="the candidate version made of its model, if asked")
    control_limits: list[dict[str, Any]] = Field(
        default_factory=list, description="control limits it carried, frozen for the station: metric, chart, version"
    )


class ChainOut(BaseModel):
    """One station's record or review chain, as ``huoyan.store.chain`` walked it."""

    station_id: str
    intact: bool
    records: int = Field(description="chained records (or reviews) walked")
    unchained: int = Field(description="stored before the chain existed: not covered")
    head_pos: int
    head_sha256: str = Field(description="the newest link: note it elsewhere to catch a rollback")
    problems: list[str] = Field(description="the first edited, deleted or reordered entries, a cut-off tail")


class ChainsCheck(BaseModel):
    intact: bool = Field(description="the audit trail and every chain below are intact")
    audit: AuditCheck
    records: list[ChainOut]
    reviews: list[ChainOut]


class MeasuredPoint(BaseModel):
    inspection_id: int
    at: datetime
    value: float
    verdict: str


class MeasurementSeries(BaseModel):
    """One measured quantity of a station's records over time (oldest first)."""

    station: str
    name: str
    channel: str | None
    points: list[MeasuredPoint]


class Measured(BaseModel):
    channel: str
    name: str


class ConditionOut(BaseModel):
    """A sensor window's analysis: features, velocity zone, envelope spectrum and the
    diagnosis with the lines behind it (the record's ``condition`` evidence)."""

    inspection_id: int
    at: datetime
    source_name: str
    verdict: str
    diagnosis: str | None
    condition: dict[str, Any]


# -- quality analytics ---------------------------------------------------------------------


class LimitsOut(BaseModel):
    """The parameters a chart's limits come from: estimated now (version null) or frozen."""

    chart: str
    params: dict[str, float]
    points: int = Field(description="how many points the estimate used")
    version: int | None = Field(default=None, description="the frozen version; null while estimated (Phase I)")
    frozen_by: str | None = None
    frozen_at: datetime | None = None


class ChartSeriesOut(BaseModel):
    """One plotted series; per-point arrays, null where a point has no value or limit."""

    chart: str = Field(description="p, np, c, u, laney-p, i, mr, xbar, r, s, ewma or cusum")
    rules: str = Field(description="'zones': every run rule applies; 'limits': rule 1 only")
    statistic: list[float | None]
    lower_statistic: list[float | None] | None = Field(default=None, description="CUSUM's -C-")
    center: list[float | None]
    lcl: list[float | None]
    ucl: list[float | None]
    sigma: list[float | None]
    excluded: list[int] = Field(description="indices left out of the limits (Phase I)")
    limits: LimitsOut


class ViolationOut(BaseModel):
    chart: str
    rule: str = Field(description="WE1-WE4 (Western Electric) or N1-N8 (Nelson)")
    point: int = Field(description="index of the point that completes the pattern")
    label: str
    text: str


class ChartReportOut(BaseModel):
    kind: str
    title: str
    metric: str
    by: str
    labels: list[str] = Field(description="what each point is: a period, a lot or a part's time")
    charts: list[ChartSeriesOut]
    violations: list[ViolationOut]
    capability: Capability | None = Field(description="against the recipe's specification for the metric, if any")


class FreezeIn(BaseModel):
    """Freeze the limits estimated from these points (Phase I) for Phase II."""

    station: str = Field(min_length=1, max_length=128)
    metric: str = Field(default="ng-rate", min_length=1, max_length=100)
    chart: str = Field(default="p", min_length=1, max_length=16)
    by: str = Field(default="shift", min_length=1, max_length=8)
    since: datetime
    until: datetime | None = None
    exclude: list[int] = Field(default_factory=list, max_length=10_000, description="indices of points to leave out")
    note: str | None = Field(default=None, max_length=2000, description="why (kept with the limits and in the audit)")


class DriftOut(BaseModel):
    station: str
    model_sha256: str
    reference: str = Field(
        description="'calibration' (the model's held-out good parts) or 'baseline' (its first OK scores)"
    )
    reference_size: int
    recent: int = Field(description="OK scores compared")
    psi: float = Field(description="population stability index: < 0.1 stable, 0.1-0.25 moderate, > 0.25 significant")
    ks_statistic: float
    ks_p_value: float
    level: str = Field(description="stable, watch or drift")
    alarm: bool = Field(description="the EWMA of rank-normalised scores is outside its limits now")
    chart: ChartSeriesOut


class AckIn(BaseModel):
    comment: str = Field(min_length=1, max_length=2000, description="what was seen and done")


class ReinspectionRunOut(RunInfo):
    """A re-inspection run (``huoyan batch``): its model, threshold, judging recipe, what
    it re-inspects, and how many of its ``total`` images are stored."""

    stored: int


class VerdictChange(BaseModel):
    """How many parts had ``original`` (None: an image without a record) and now ``verdict``."""

    original: str | None
    verdict: str
    parts: int


class ReinspectionResultOut(ReinspectionResult):
    decided_at: datetime


class ReinspectionDetail(ReinspectionRunOut):
    """A run with its verdict table and the parts whose verdict it changed (largest score change first)."""

    table: list[VerdictChange]
    changed: list[ReinspectionResultOut]
