"""The station recipe: one YAML file that says what a station inspects and how.

A recipe names the station, the product and its own version; where parts come from;
how images are cropped and turned before the model; which model artifact to use; how
a score becomes OK or NG; what is kept on disk; and where the part id comes from.
Every model forbids unknown keys, so a typo is an error that names the field rather
than a setting silently ignored. Relative paths are resolved against the recipe file.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class RecipeError(ValueError):
    """A recipe file is missing, unreadable or invalid; the message names the bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


Source = Annotated[HotFolderSource | ReplaySource | CameraSource, Field(discriminator="type")]


class Preprocess(_Strict):
    """Applied to every image before the model, in this order: crop, rotate, resize."""

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


class Storage(_Strict):
    """Where records, images and heat maps go, and which images are kept."""

    database: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite in data_dir")
    data_dir: Path = Path("huoyan-data")
    keep_ng: bool = True
    keep_ok_every: int = Field(default=10, ge=0, description="keep 1 in N OK images; 0 keeps none")
    min_free_mb: int = Field(default=200, ge=0, description="intake pauses below this much free disk")


class PartId(_Strict):
    """Where each part's id comes from."""

    source: Literal["filename", "trigger", "counter"] = Field(default="filename", alias="from")
    pattern: str | None = Field(default=None, description="regex on the file name; group 'id' or the whole match")
    key: str = Field(default="part_id", description="trigger payload key")
    prefix: str = ""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return v


class Recipe(_Strict):
    """One station's complete configuration."""

    station: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    product: str = Field(min_length=1)
    recipe: str = Field(min_length=1, description="recipe id")
    version: str = Field(min_length=1)
    source: Source
    preprocess: Preprocess = Preprocess()
    model: Path
    decision: Decision = Decision()
    storage: Storage = Storage()
    part_id: PartId = PartId()

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
        """Hash of the validated content: a changed recipe under an old version number is caught."""
        return hashlib.sha256(self.model_dump_json(by_alias=True).encode()).hexdigest()


def _resolve(base: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Make the recipe's relative paths relative to its own folder, not the working directory."""
    src = data.get("source")
    if isinstance(src, dict):
        for key in ("path", "done_dir", "failed_dir"):
            if isinstance(src.get(key), str):
                src[key] = str(base / src[key])
        dev = src.get("device")
        if src.get("type") == "camera" and isinstance(dev, str) and "://" not in dev and not dev.isdigit():
            src["device"] = str(base / dev)
    if isinstance(data.get("model"), str):
        data["model"] = str(base / data["model"])
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
