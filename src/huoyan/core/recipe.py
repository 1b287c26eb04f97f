"""The station recipe: one YAML file that says what a station inspects and how.

A recipe names the station, the product and its own version; where parts come from;
how images are cropped and turned before the model; which model artifact to use; how
a score becomes OK or NG; what is kept on disk; and where the part id comes from.
Every model forbids unknown keys, so a typo is an error that names the field rather
than a setting silently ignored. Relative paths are resolved against the recipe file.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# A station id: what names it in records, URLs, topics and API keys.
STATION_ID = r"^[A-Za-z0-9_.:-]+$"


class RecipeError(ValueError):
    """A recipe file is missing, unreadable or invalid; the message names the bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _compiles(v: str) -> str:
    try:
        re.compile(v)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from exc
    return v


Regex = Annotated[str, AfterValidator(_compiles)]  # a regular expression, checked when the recipe is read


class HotFolderSource(_Strict):
    """Files dropped into ``path``; each is claimed atomically and archived after its record is stored."""

    type: Literal["hot_folder"]
    path: Path
    done_dir: Path | None = Field(default=None, description="default: <path>/done")
    failed_dir: Path | None = Field(default=None, description="default: <path>/failed")
    settle_ms: int = Field(default=100, ge=0, description="size and mtime must hold this long before a claim")
    poll_ms: int = Field(default=20, ge=1)
    queue: int = Field(default=16, ge=1, description="parts waiting for inference before intake pauses")


class ReplaySource(_Strict):
    """Images of a folder fed at a fixed rate, for demos and load tests."""

    type: Literal["replay"]
    path: Path
    rate: float = Field(default=5.0, gt=0, description="parts per second")
    loop: bool = False
    queue: int = Field(default=16, ge=1)


class CameraSource(_Strict):
    """An OpenCV capture: a device index, a video file or a stream URL (RTSP, HTTP)."""

    type: Literal["camera"]
    device: int | str = Field(description="device index, video file path or stream URL")
    mode: Literal["free_run", "trigger"] = "free_run"
    rate: float = Field(default=5.0, gt=0, description="frames per second taken in free-run mode")
    queue: int = Field(default=4, ge=1, description="free-run drops the oldest frame beyond this")


class HttpSource(_Strict):
    """Images uploaded to the server (``POST /api/stations/{station}/inspect``); each request
    waits for its part's stored record and answers with it."""

    type: Literal["http"]
    queue: int = Field(default=8, ge=1, description="uploads waiting for inspection beyond this are refused (503)")


class SensorReplaySource(_Strict):
    """Recorded sensor files (.mat, .wav, .csv, .npy) replayed at their real rate: windows
    arrive as they would from the machine (``speed`` 10 replays ten times as fast)."""

    type: Literal["sensor_replay"]
    path: Path = Field(description="a recording, or a folder of them (replayed in name order)")
    channel: str | None = Field(default=None, description="channel to read (default: the model's, or the only one)")
    sample_rate: float | None = Field(default=None, gt=0, description="Hz, for files that record none")
    rpm: float | None = Field(default=None, gt=0, description="shaft speed, where the files record none")
    speed: float = Field(default=1.0, gt=0)
    loop: bool = False
    queue: int = Field(default=16, ge=1)


class MqttSensorSource(_Strict):
    """Blocks of samples published on an MQTT topic, as sensor gateways publish them:
    JSON ``{"samples": [...], "rate": Hz, "seq": n, "t0": epoch seconds, "rpm": r}``
    (only ``samples`` required), or raw little-endian float32. Blocks are joined into
    the model's windows; a gap in ``seq`` or ``t0``, a late block or another rate
    raises an alarm, and no window spans a gap."""

    type: Literal["mqtt_sensor"]
    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password_env: str | None = Field(default=None, description="environment variable holding the password")
    topic: str = Field(min_length=1, pattern=r"^[^#+]+$", description="one sensor's topic (no wildcards)")
    channel: str = Field(default="main", min_length=1, max_length=100, description="the name records give it")
    sample_rate: float = Field(gt=0, description="Hz; blocks declaring another rate are refused under an alarm")
    rpm: float | None = Field(default=None, gt=0, description="shaft speed where the blocks carry none")
    late_s: float = Field(default=2.0, gt=0, description="a block ending longer ago than this is late")
    queue: int = Field(default=16, ge=1)


class OpcUaSensorSource(_Strict):
    """A variable on a PLC's or gateway's OPC UA server, subscribed: each change is a block
    of samples (an array of numbers), its source timestamp the time of its first sample."""

    type: Literal["opcua_sensor"]
    endpoint: str = Field(pattern=r"^opc\.tcp://", description="the server's endpoint URL")
    node: str = Field(min_length=1, description="NodeId of the variable, e.g. ns=2;s=Spindle.Acceleration")
    username: str | None = None
    password_env: str | None = Field(default=None, description="environment variable holding the password")
    channel: str = Field(default="main", min_length=1, max_length=100)
    sample_rate: float = Field(gt=0, description="Hz of the samples in each block")
    rpm: float | None = Field(default=None, gt=0)
    publishing_ms: int = Field(default=100, ge=10, description="the subscription's publishing interval")
    late_s: float = Field(default=2.0, gt=0)
    queue: int = Field(default=16, ge=1)


class Machine(_Strict):
    """The machine a sensor station watches: its bearing (a shipped designation such as
    ``6205``, or its geometry) and its ISO 20816 class. The model must have been fitted
    for this bearing (its lines are among the features it scores); the class names the
    velocity zone. (The shaft speed is the source's ``rpm`` where the samples carry none.)"""

    bearing: str | dict[str, float | int | str] | None = Field(
        default=None, description="'6205', or {rolling_elements, element_diameter_mm, pitch_diameter_mm, ...}"
    )
    machine_class: str | None = Field(default=None, description="I, II, III, IV, group1-rigid, ... (ISO 20816)")


SENSOR_SOURCES = (SensorReplaySource, MqttSensorSource, OpcUaSensorSource)
Source = Annotated[
    HotFolderSource
    | ReplaySource
    | CameraSource
    | HttpSource
    | SensorReplaySource
    | MqttSensorSource
    | OpcUaSensorSource,
    Field(discriminator="type"),
]


class Preprocess(_Strict):
    """Applied to every image before the model, in this order: crop, rotate, resize."""

    max_image_pixels: int = Field(
        default=50_000_000,
        ge=1,
        description="larger images (width x height from the file's header) are ERROR without being decoded",
    )

    roi: tuple[int, int, int, int] | None = Field(default=None, description="x, y, width, height in pixels")
    rotate: Literal[0, 90, 180, 270] = 0
    resize: tuple[int, int] | None = Field(default=None, description="width, height after crop and rotation")
    mm_per_px: float | None = Field(default=None, gt=0, description="scale of the preprocessed image")

    @field_validator("roi")
    @classmethod
    def _positive_roi(cls, v: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
        if v is not None and (v[0] < 0 or v[1] < 0 or v[2] < 1 or v[3] < 1):
            raise ValueError("roi needs x, y >= 0 and width, height >= 1")
        return v

    @field_validator("resize")
    @classmethod
    def _positive_size(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and min(v) < 1:
            raise ValueError("resize needs width, height >= 1")
        return v


class RegionRule(_Strict):
    """A defect region makes the part NG when its ``field`` is above ``above``."""

    field: Literal["area_mm2", "area_px", "width", "height", "max_score", "mean_score"]
    above: float


class Decision(_Strict):
    """How a score and its regions become a verdict."""

    threshold: Literal["calibrated"] | float = Field(
        default="calibrated", description="'calibrated' uses the model card's threshold; a number overrides it"
    )
    min_region_area_px: int = Field(default=0, ge=0, description="smaller regions are ignored")
    ng_if_any_region: list[RegionRule] = Field(
        default_factory=list,
        description="if given, the part is NG only when some region above the threshold meets one rule",
    )

    @field_validator("threshold")
    @classmethod
    def _positive(cls, v: str | float) -> str | float:
        if not isinstance(v, str) and v <= 0:
            raise ValueError("an override threshold must be > 0")
        return v


class Retention(_Strict):
    """How long a part's evidence files (images, heat maps, signal windows) are kept.

    The records themselves stay: they are small, and they are the audit trail. Reviewed
    parts' evidence, and images a model version was trained on, are never removed.
    """

    ok_days: int | None = Field(
        default=None, ge=1, description="remove OK parts' evidence after this many days; none keeps it"
    )
    ng_days: int | None = Field(
        default=None, ge=1, description="remove NG and ERROR parts' evidence after this many days; none keeps it"
    )


class Storage(_Strict):
    """Where records, images and heat maps go, which images are kept, and for how long."""

    database: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite in data_dir")
    data_dir: Path = Path("huoyan-data")
    keep_ng: bool = True
    keep_ok_every: int = Field(default=10, ge=0, description="keep 1 in N OK images; 0 keeps none")
    min_free_mb: int = Field(default=200, ge=0, description="intake pauses below this much free disk")
    retention: Retention = Field(default_factory=Retention)


class PartId(_Strict):
    """Where each part's id comes from."""

    source: Literal["filename", "trigger", "counter"] = Field(default="filename", alias="from")
    pattern: Regex | None = Field(default=None, description="regex on the file name; group 'id' or the whole match")
    key: str = Field(default="part_id", description="trigger payload key")
    prefix: str = ""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LotId(_Strict):
    """Where each part's lot (batch) comes from, so that NG rates can be charted per lot.
    A lot given with the part itself always wins: the trigger payload's ``key`` (default
    ``lot``) or the upload's ``lot`` field. Otherwise ``from: filename`` takes it from the
    file name with ``pattern`` (group ``lot``, or the whole match)."""

    source: Literal["none", "filename"] = Field(default="none", alias="from")
    pattern: Regex | None = Field(default=None, description="regex on the file name; group 'lot' or the whole match")
    key: str = Field(default="lot", description="trigger payload key")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _pattern_for_filename(self) -> LotId:
        if self.source == "filename" and not self.pattern:
            raise ValueError("from: filename needs a pattern (a regex with a group 'lot')")
        return self


class Spec(_Strict):
    """Specification limits of a charted value, for capability (Cp, Cpk, Pp, Ppk)."""

    lsl: float | None = None
    usl: float | None = None

    @model_validator(mode="after")
    def _a_limit(self) -> Spec:
        if self.lsl is None and self.usl is None:
            raise ValueError("give lsl, usl or both")
        if self.lsl is not None and self.usl is not None and not self.lsl < self.usl:
            raise ValueError(f"lsl ({self.lsl:g}) must be below usl ({self.usl:g})")
        return self


class QualitySettings(_Strict):
    """Quality analytics of this station's records."""

    drift: bool = Field(default=True, description="alarm when OK scores drift from the model's calibration")
    specs: dict[str, Spec] = Field(
        default_factory=dict,
        description="specification limits per charted metric, e.g. 'feature:velocity_rms_mm_s': {usl: 4.5}",
    )


class Templates(_Strict):
    """Where a template model that compares each part with its own golden template
    (boards imaged in tiles, several products on one line) finds it: ``pattern`` is
    matched against the part's file name and ``name`` is filled with its named groups,
    e.g. ``tile_(?P<row>\\d+)_(?P<col>\\d+)\\.png`` and ``golden_{row}_{col}.png``.
    The default follows DeepPCB: ``<id>_test.jpg`` is compared with ``<id>_temp.jpg``.
    Templates get the recipe's preprocessing too, so they stay in the parts' geometry."""

    folder: Path = Field(description="folder of the golden templates")
    pattern: Regex = Field(default=r"^(?P<id>.+)_test(?P<ext>\.[^.]+)$", description="regex on the part's file name")
    name: str = Field(default="{id}_temp{ext}", description="the template's file name, from the pattern's groups")

    @model_validator(mode="after")
    def _name_uses_the_groups(self) -> Templates:
        groups = set(re.compile(self.pattern).groupindex)
        try:
            self.name.format(**dict.fromkeys(groups, "x"))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"name {self.name!r} uses {exc} which the pattern has no group for") from None
        return self

    def template_for(self, part_name: str) -> Path:
        """The template file of a part, or ``ValueError`` when its name does not fit."""
        match = re.search(self.pattern, Path(part_name).name)
        if match is None:
            raise ValueError(f"{part_name}: the name does not match the templates pattern {self.pattern!r}")
        name = self.name.format(**{k: v or "" for k, v in match.groupdict().items()})
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise ValueError(f"{part_name}: the template name {name!r} leaves the templates folder")
        return self.folder / name


class Channel(_Strict):
    """One channel of a station that judges each part from several (two camera views, a
    camera and a sensor): which of the part's files are this channel's, and what judges
    them. What a channel leaves out is the recipe's own (its model, preprocessing,
    decision and templates); a sensor channel's files are recordings (one per part),
    judged window by window, the channel NG when any window is."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    files: Regex = Field(description="regex on the file name that says a file is this channel's, e.g. '_side\\.png$'")
    model: Path | None = Field(default=None, description="default: the recipe's model")
    detector: str | None = None
    preprocess: Preprocess | None = None
    decision: Decision | None = None
    templates: Templates | None = None
    sample_rate: float | None = Field(default=None, gt=0, description="sensor recordings that record none")
    rpm: float | None = Field(default=None, gt=0)
    signal_channel: str | None = Field(default=None, description="which channel of a recording to read")


class Fusion(_Strict):
    """How the channels' verdicts make the part's. ``any_ng``: NG if any channel is NG,
    else ERROR if any could not judge, else OK. ``all_ng``: NG only if every channel is
    (a second view confirms the first). ``weighted``: the weighted mean of the channels'
    normalised scores against ``threshold`` (a channel that could not judge makes the
    part ERROR)."""

    rule: Literal["any_ng", "all_ng", "weighted"] = "any_ng"
    weights: dict[str, float] = Field(default_factory=dict, description="per channel, default 1")
    threshold: float = Field(default=1.0, gt=0, description="weighted: NG above this mean normalised score")
    wait_s: float = Field(default=5.0, gt=0, description="how long a part waits for its other channels' files")

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in v.values()):
            raise ValueError("weights must be >= 0")
        return v


SecurityMode = Literal["none", "basic256sha256"]


def _encrypted_only() -> list[SecurityMode]:
    return ["basic256sha256"]


class OpcUaFeedback(_Strict):
    """An OPC UA server following OPC 40100-1 (Machine Vision): state machine, recipe switch, results."""

    endpoint: str = Field(default="opc.tcp://0.0.0.0:4840/huoyan/", description="opc.tcp URL to listen on")
    anonymous: bool = Field(default=False, description="allow clients without credentials")
    users: dict[str, str] = Field(
        default_factory=dict, description="user name -> name of the environment variable holding the password"
    )
    security: list[SecurityMode] = Field(
        default_factory=_encrypted_only,
        description="'basic256sha256' is Sign&Encrypt; 'none' also offers an unencrypted endpoint",
    )
    certificate_dir: Path | None = Field(
        default=None, description="server certificate and key (made on first start); default <data_dir>/opcua"
    )
    trusted_clients_dir: Path | None = Field(
        default=None, description="if set, only client certificates (DER or PEM) in this folder are accepted"
    )

    @model_validator(mode="after")
    def _someone_can_connect(self) -> OpcUaFeedback:
        if not self.anonymous and not self.users and "basic256sha256" not in self.security:
            raise ValueError("no client could log in: allow anonymous, add users, or offer basic256sha256")
        return self


class ModbusFeedback(_Strict):
    """A Modbus TCP server with the trigger / result / acknowledge handshake (register map in the README)."""

    host: str = "0.0.0.0"
    port: int = Field(default=502, ge=1, le=65535)
    device_id: int = Field(default=1, ge=0, le=247, description="unit id the PLC addresses; 0 answers any")


class MqttFeedback(_Strict):
    """Results, status and alarms published to an MQTT broker, queued on disk while it is away."""

    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password_env: str | None = Field(default=None, description="environment variable holding the password")
    topic_prefix: str = Field(default="huoyan", pattern=r"^[^#+]+$")
    keepalive_s: int = Field(default=30, ge=5)


class WebhookFeedback(_Strict):
    """Each result POSTed as JSON, signed with HMAC-SHA256, retried with back-off from a disk queue."""

    url: str = Field(pattern=r"^https?://")
    secret_env: str | None = Field(default=None, description="environment variable holding the HMAC secret")
    timeout_s: float = Field(default=5.0, gt=0)
    max_backoff_s: float = Field(default=60.0, gt=0)


class RecipeSlot(_Strict):
    """A recipe the line may switch this station to: by index (Modbus), id (OPC UA) or product."""

    index: int = Field(ge=1, le=65535)
    file: Path


class Feedback(_Strict):
    """How the station tells the line its verdicts and takes triggers and recipe changes."""

    plant: str = Field(default="plant", pattern=r"^[^/#+]+$")
    line: str = Field(default="line", pattern=r"^[^/#+]+$")
    opcua: OpcUaFeedback | None = None
    modbus: ModbusFeedback | None = None
    mqtt: MqttFeedback | None = None
    webhook: WebhookFeedback | None = None
    recipes: list[RecipeSlot] = Field(default_factory=list, description="recipes the PLC may switch to")
    recipe_dir: Path | None = Field(
        default=None,
        description="folder of recipe files (<recipe id>.yaml) the line may add to the table (OPC UA AddRecipe)",
    )

    @field_validator("recipes")
    @classmethod
    def _unique_index(cls, v: list[RecipeSlot]) -> list[RecipeSlot]:
        if len({s.index for s in v}) != len(v):
            raise ValueError("recipe indexes must be unique")
        return v


class Recipe(_Strict):
    """One station's complete configuration."""

    station: str = Field(min_length=1, max_length=128, pattern=STATION_ID)
    product: str = Field(min_length=1)
    recipe: str = Field(min_length=1, description="recipe id")
    version: str = Field(min_length=1)
    source: Source
    preprocess: Preprocess = Preprocess()
    model: Path
    detector: str | None = Field(
        default=None, description="the detector kind the model must be (e.g. 'patchcore'); default: the file's own"
    )
    templates: Templates | None = Field(
        default=None, description="template models without a fixed template: where each part's template is"
    )
    decision: Decision = Decision()
    storage: Storage = Storage()
    part_id: PartId = PartId()
    lot: LotId = LotId()
    quality: QualitySettings = QualitySettings()
    feedback: Feedback = Feedback()
    machine: Machine | None = Field(default=None, description="sensor stations: the machine watched")
    channels: list[Channel] = Field(
        default_factory=list, description="several channels per part: the part's files, one per channel"
    )
    fusion: Fusion = Fusion()

    @model_validator(mode="after")
    def _channels_make_sense(self) -> Recipe:
        if not self.channels:
            return self
        if len(self.channels) < 2:
            raise ValueError("channels: give two or more (one channel is the recipe itself)")
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError("channels: names must be unique")
        if not isinstance(self.source, HotFolderSource | ReplaySource):
            raise ValueError("channels: the parts' files come from a hot_folder or replay source")
        if self.part_id.source != "filename":
            raise ValueError(
                "channels: a part's files are joined by the part id in their names (part_id.from: filename)"
            )
        unknown = sorted(set(self.fusion.weights) - set(names))
        if unknown:
            raise ValueError(f"fusion.weights: no channel {', '.join(unknown)}")
        return self

    def channel_recipe(self, channel: Channel) -> Recipe:
        """The recipe as one channel sees it: its model, preprocessing, decision and templates."""
        update: dict[str, Any] = {"model": channel.model or self.model, "detector": channel.detector or self.detector}
        for name in ("preprocess", "decision", "templates"):
            if getattr(channel, name) is not None:
                update[name] = getattr(channel, name)
        return self.model_copy(update={**update, "channels": []})

    @model_validator(mode="after")
    def _mm_rules_need_scale(self) -> Recipe:
        if self.preprocess.mm_per_px is None and any(r.field == "area_mm2" for r in self.decision.ng_if_any_region):
            raise ValueError("a decision rule on area_mm2 needs preprocess.mm_per_px")
        return self

    @model_validator(mode="after")
    def _trigger_needs_camera(self) -> Recipe:
        if self.part_id.source == "trigger" and not (
            isinstance(self.source, CameraSource) and self.source.mode == "trigger"
        ):
            raise ValueError("part_id.from 'trigger' needs a camera source in trigger mode")
        return self

    def content_sha256(self) -> str:
        """Hash of the validated content: a changed recipe under an old version number is caught.

        ``feedback`` is left out: it wires the station to the line and does not change
        how a part is judged, so a new broker address needs no new recipe version.
        Fields added in later releases count only when set away from their default, so
        upgrading Huoyan does not make every stored recipe version look edited."""
        body = self.model_dump(mode="json", by_alias=True, exclude={"feedback"})
        for section, fields in ADDED_LATER.items():
            model: BaseModel = getattr(self, section) if section else self
            part = body[section] if section else body
            for name in fields:
                if getattr(model, name) == type(model).model_fields[name].get_default(call_default_factory=True):
                    part.pop(name, None)
        return hashlib.sha256(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


# Fields each recipe section gained after the first release (see ``content_sha256``).
# ("" is the recipe itself.)
ADDED_LATER: dict[str, tuple[str, ...]] = {
    "": ("detector", "templates", "machine", "channels", "fusion", "lot", "quality"),
    "preprocess": ("max_image_pixels",),
    "storage": ("retention",),
}


def _resolve(base: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Make the recipe's relative paths relative to its own folder, not the working directory."""
    src = data.get("source")
    if isinstance(src, dict):
        for key in ("path", "done_dir", "failed_dir"):  # sensor_replay's path too
            if isinstance(src.get(key), str):
                src[key] = str(base / src[key])
        dev = src.get("device")
        if src.get("type") == "camera" and isinstance(dev, str) and "://" not in dev and not dev.isdigit():
            src["device"] = str(base / dev)
    if isinstance(data.get("model"), str):
        data["model"] = str(base / data["model"])
    templates = data.get("templates")
    if isinstance(templates, dict) and isinstance(templates.get("folder"), str):
        templates["folder"] = str(base / templates["folder"])
    for channel in data.get("channels") or []:
        if isinstance(channel, dict):
            if isinstance(channel.get("model"), str):
                channel["model"] = str(base / channel["model"])
            own = channel.get("templates")
            if isinstance(own, dict) and isinstance(own.get("folder"), str):
                own["folder"] = str(base / own["folder"])
    feedback = data.get("feedback")
    if isinstance(feedback, dict):
        for slot in feedback.get("recipes") or []:
            if isinstance(slot, dict) and isinstance(slot.get("file"), str):
                slot["file"] = str(base / slot["file"])
        opcua = feedback.get("opcua")
        if isinstance(opcua, dict):
            for key in ("certificate_dir", "trusted_clients_dir"):
                if isinstance(opcua.get(key), str):
                    opcua[key] = str(base / opcua[key])
    storage = data.setdefault("storage", {})
    if isinstance(storage, dict):
        storage["data_dir"] = str(base / storage.get("data_dir", "huoyan-data"))
    return data


def format_validation_error(exc: ValidationError, where: str) -> str:
    lines = [f"{where}: invalid recipe"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)


def parse_recipe(text: str, base: Path, where: str = "recipe") -> Recipe:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: a recipe is a YAML mapping, got {type(data).__name__}")
    try:
        return Recipe.model_validate(_resolve(base, data))
    except ValidationError as exc:
        raise RecipeError(format_validation_error(exc, where)) from exc


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file, or raise ``RecipeError`` naming every bad field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{p}: cannot read recipe ({exc})") from exc
    return parse_recipe(text, p.resolve().parent, str(p))
