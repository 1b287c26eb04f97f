"""Typed core models shared by every stage of the data path.

Stages (vision, station, store, io, server) exchange only these objects, so none of
them needs to know another stage's internals. They are plain pydantic models or
dataclasses: cheap to build, easy to serialise to JSON for records and line feedback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

# File suffixes every stage treats as images (sources, file inspection, training folders).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})


class Verdict(StrEnum):
    """Outcome of one inspection."""

    OK = "OK"
    NG = "NG"
    ERROR = "ERROR"


@dataclass(slots=True)
class Frame:
    """One image as it arrives from a source, before any preprocessing.

    ``image`` is an HxWx3 uint8 RGB array; sources convert grayscale and 16-bit inputs
    before a frame is built so that every later stage sees one layout.
    """

    image: np.ndarray
    source_name: str
    part_id: str | None = None
    arrived_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DefectBox:
    """An annotated defect: a box in the tested image's pixels (``x2``/``y2`` exclusive)
    and its type."""

    x1: int
    y1: int
    x2: int
    y2: int
    label: str


@dataclass(frozen=True, slots=True)
class PairedImage:
    """A tested image with the golden template it is compared with (HxWx3 uint8 RGB
    both), and the defects annotated on it, if any. A template detector with a fixed
    template (in its model file) takes bare images instead."""

    image: np.ndarray
    template: np.ndarray | None = None
    defects: tuple[DefectBox, ...] = ()
    name: str = ""


@dataclass(frozen=True, slots=True)
class SignalWindow:
    """A window of one sensor channel, as the vibration detector scores it: float64
    samples at ``sample_rate`` Hz, starting ``start_s`` seconds into its ``source``,
    with the shaft speed while it was recorded (None: the model's own)."""

    samples: np.ndarray
    sample_rate: float
    start_s: float = 0.0
    source: str = ""
    channel: str = ""
    rpm: float | None = None


class SpectralLine(BaseModel):
    """One expected line of a fault family in a spectrum, as found: the evidence behind
    a diagnosis."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="e.g. '2x BPFO', 'BPFI-1x' (a shaft-speed sideband)")
    expected_hz: float
    found_hz: float = Field(description="where the highest bin within the slip tolerance lies")
    amplitude: float = Field(description="the line's height (envelope: modulation depth; velocity: mm/s)")
    noise_floor: float = Field(description="median height of the spectrum around it, the line excluded")
    prominence_db: float = Field(description="20 log10(amplitude / noise_floor)")


class FamilyEvidence(BaseModel):
    """How strongly one fault family shows in a window, against healthy running."""

    model_config = ConfigDict(frozen=True)

    family: str = Field(description="outer_race, inner_race, rolling_element, cage, unbalance, misalignment")
    strength_db: float = Field(
        description="bearing families: mean prominence of its harmonics in the envelope spectrum; "
        "unbalance (1x) and misalignment (2x): the line's velocity in dB re 1 mm/s"
    )
    healthy_db: float | None = Field(default=None, description="its mean in healthy running")
    rise_db: float | None = Field(default=None, description="strength above healthy running")
    lines: list[SpectralLine] = Field(default_factory=list)


class Diagnosis(BaseModel):
    """Which fault family stands out in a window (None: none does), with the evidence of each."""

    model_config = ConfigDict(frozen=True)

    family: str | None = Field(description="the family that stands out most, if one does")
    evidence: list[FamilyEvidence] = Field(default_factory=list)


class Region(BaseModel):
    """A connected defect region found in an anomaly map (original image coordinates)."""

    model_config = ConfigDict(frozen=True)

    x: int = Field(description="left edge of the bounding box, pixels")
    y: int = Field(description="top edge of the bounding box, pixels")
    width: int
    height: int
    area_px: int
    area_mm2: float | None = None
    max_score: float = Field(description="highest normalised score inside the region")
    mean_score: float = Field(description="mean normalised score inside the region")
    label: str | None = Field(default=None, description="the defect type, when the detector names one")
    confidence: float | None = Field(default=None, description="the detector's confidence in the label, 0-1")
    channel: str = Field(default="main", max_length=100, description="the camera it was found in")


class Calibration(BaseModel):
    """How the NG threshold was set, and what false-reject rate it implies."""

    method: str = Field(description="'conformal' (finite-sample) or 'parametric-tail'")
    threshold: float = Field(description="raw image score at which a part becomes NG")
    target_false_reject_rate: float
    expected_false_reject_rate: float = Field(
        description="marginal false-reject rate on new good parts implied by the method"
    )
    false_reject_rate_upper: float = Field(description="upper bound of the realised false-reject rate at `confidence`")
    confidence: float
    n_calibration: int = Field(description="number of good-part scores used")
    region_threshold: float = Field(description="raw pixel score above which a pixel belongs to a defect region")
    f1_threshold: float | None = None
    f1_metrics: dict[str, float] | None = None
    score_quantiles: list[float] | None = Field(
        default=None,
        description="the calibration scores' 0%, 1%, ..., 100% quantiles: the reference the line's OK "
        "scores are compared with for drift (absent in models made before it was kept)",
    )


def colourfulness(image: np.ndarray) -> float:
    """Mean difference between an RGB image's channels (0 for a gray image), on a grid of
    about 16k pixels: enough to tell a gray frame from a colour one, at well under a
    millisecond whatever the image's size."""
    if image.ndim != 3 or image.shape[2] < 3:
        return 0.0
    step = max(2, int((image.shape[0] * image.shape[1] / 16384) ** 0.5))
    view = image[::step, ::step].astype(np.int16)
    return float(np.abs(view[..., 0] - view[..., 1]).mean() + np.abs(view[..., 1] - view[..., 2]).mean())


COLOUR_MIN = 1.0  # a training set whose median colourfulness reaches this is a colour set
GRAY_MAX = 0.05  # an input below this carries no colour at all
SIZE_SLACK = 2.0  # inputs may be this much smaller or larger than the training images


class InputSpec(BaseModel):
    """What the training images looked like, so that an input the model was never meant to
    judge (a gray frame for a colour model, a 1-pixel sliver) is an error, not a verdict."""

    min_width: int
    max_width: int
    min_height: int
    max_height: int
    colour: bool = Field(description="the training images were colour images")

    @classmethod
    def of(cls, images: Sequence[np.ndarray]) -> InputSpec:
        widths = [im.shape[1] for im in images]
        heights = [im.shape[0] for im in images]
        colours = sorted(colourfulness(im) for im in images)
        return cls(
            min_width=min(widths),
            max_width=max(widths),
            min_height=min(heights),
            max_height=max(heights),
            colour=bool(colours[len(colours) // 2] >= COLOUR_MIN),
        )

    def mismatch(self, image: np.ndarray) -> str | None:
        """Why ``image`` (HxWx3, after preprocessing) is unlike the training images, or None."""
        h, w = image.shape[:2]
        wide = self.min_width / SIZE_SLACK <= w <= self.max_width * SIZE_SLACK
        tall = self.min_height / SIZE_SLACK <= h <= self.max_height * SIZE_SLACK
        if not (wide and tall):
            trained = (
                f"{self.min_width}x{self.min_height}"
                if (self.min_width, self.min_height) == (self.max_width, self.max_height)
                else f"{self.min_width}-{self.max_width} x {self.min_height}-{self.max_height}"
            )
            return f"image is {w}x{h} px; the model was trained on {trained} px images"
        if self.colour and colourfulness(image) < GRAY_MAX:
            return "gray image (no colour at all); the model was trained on colour images"
        return None


class ModelCard(BaseModel):
    """Everything needed to trust, reproduce and audit a trained model: a header every kind
    of detector fills in, and ``details`` that its kind alone defines (for PatchCore: the
    backbone, input size and memory bank; ``huoyan.vision.patchcore.PatchCoreDetails``)."""

    kind: str = Field(default="patchcore", description="the detector kind (huoyan.detectors)")
    huoyan_version: str
    created_at: datetime
    seed: int
    train_samples: int = Field(description="good samples given to fit (those held out to calibrate included)")
    train_content_sha256: str = Field(description="digest of the training samples, in order")
    calibration: Calibration
    metrics: dict[str, float] = Field(default_factory=dict)
    input: InputSpec | None = Field(default=None, description="the training images (absent in older models)")
    details: dict[str, Any] = Field(default_factory=dict, description="what this kind of detector records of itself")

    @classmethod
    def fitted(
        cls,
        kind: str,
        seed: int,
        train_samples: int,
        train_content_sha256: str,
        calibration: Calibration,
        details: BaseModel,
        input: InputSpec | None = None,
    ) -> ModelCard:
        """The card of a model fitted now, by this Huoyan: what every detector kind's ``fit`` writes."""
        from huoyan import __version__

        return cls(
            kind=kind,
            huoyan_version=__version__,
            created_at=datetime.now(UTC),
            seed=seed,
            train_samples=train_samples,
            train_content_sha256=train_content_sha256,
            calibration=calibration,
            input=input,
            details=details.model_dump(),
        )

    @model_validator(mode="before")
    @classmethod
    def _first_release_layout(cls, data: Any) -> Any:
        """Cards of the first release were PatchCore's alone, with its details at the top."""
        if isinstance(data, dict) and "details" not in data and "backbone" in data:
            data = dict(data)
            details = {k: data.pop(k) for k in _FIRST_RELEASE_DETAILS if k in data}
            data["kind"] = data.pop("name", "patchcore")
            data["train_samples"] = data.pop("train_images")
            data["details"] = details
        return data


_FIRST_RELEASE_DETAILS = (
    "backbone",
    "layers",
    "image_size",
    "feature_dim",
    "bank_size",
    "bank_dtype",
    "coreset_ratio",
    "bank_images",
    "bank_sha256",
)


class RuleOutcome(BaseModel):
    """One condition of the decision and how this part fared against it: the answer to
    "why was this part NG (or not)?" that the record keeps."""

    model_config = ConfigDict(frozen=True)

    rule: str = Field(description="what was tested, e.g. 'score above threshold', 'region area_mm2 above 2.0'")
    met: bool = Field(description="the part met this condition (all of them together make it NG)")
    value: float | None = Field(default=None, description="the part's value: score, largest region …")
    limit: float | None = Field(default=None, description="the value the rule compares it with")


class Measurement(BaseModel):
    """A number measured on a part or a window (a sensor window's RMS, kurtosis,
    velocity): what trends and control charts are drawn from."""

    model_config = ConfigDict(frozen=True)

    channel: str = Field(default="main", max_length=100)
    name: str = Field(max_length=64, description="e.g. 'rms', 'kurtosis', 'velocity_rms_mm_s'")
    value: float


class ChannelVerdict(BaseModel):
    """One channel's own verdict in an inspection of several channels (two camera views,
    a camera and a sensor): the record's verdict is the recipe's rule over these."""

    model_config = ConfigDict(frozen=True)

    channel: str = Field(max_length=100)
    verdict: Verdict
    score: float | None = None
    normalised_score: float | None = None
    error: str | None = None
    diagnosis: str | None = Field(default=None, max_length=64)
    model_sha256: str | None = Field(default=None, description="the model that judged this channel")


class Judgement(BaseModel):
    """What was decided about one part: shared by the engine's result and the stored record."""

    source_name: str
    verdict: Verdict
    score: float | None = None
    normalised_score: float | None = None
    regions: list[Region] = Field(default_factory=list)
    rules: list[RuleOutcome] = Field(default_factory=list, description="the decision's conditions, in order")
    error: str | None = None
    width: int | None = None
    height: int | None = None
    diagnosis: str | None = Field(
        default=None, max_length=64, description="the fault family a sensor window shows (e.g. outer_race), if any"
    )
    measurements: list[Measurement] = Field(default_factory=list)
    channels: list[ChannelVerdict] = Field(
        default_factory=list, description="each channel's verdict, when the station judges several"
    )


class InspectionResult(Judgement):
    """The engine's answer for one image."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    anomaly_map: np.ndarray | None = Field(default=None, exclude=True, repr=False)
    # What the image was compared with, aligned to it (a template detector's golden template).
    reference: np.ndarray | None = Field(default=None, exclude=True, repr=False)
