"""The detector contract every kind of model meets (scikit-learn's estimator contract).

``__init__`` stores parameters only; ``fit`` validates them, learns, sets the state
whose names end in ``_`` (``card_`` among it) and returns ``self``; ``score`` is pure and
gives raw scores with the evidence behind each; ``save`` and the class's ``load`` round
trip exactly; ``get_params``/``set_params`` read and change parameters, so nothing
outside assigns attributes. The registry of kinds is ``huoyan.detectors``; the shared
contract test (``tests/test_detector_contract.py``) runs over every registered kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol, Self, TypeVar, runtime_checkable

import numpy as np

from huoyan.core.models import Diagnosis, InputSpec, InspectionResult, ModelCard, Region


class NotFittedError(RuntimeError):
    """A detector was used before ``fit`` or ``load``."""


class Scores(NamedTuple):
    """A batch's raw scores (N,) and, for each sample, the evidence behind its score:
    an anomaly map at model resolution for images (an N x S x S array), a spectrum or
    feature vector for signals, boxes for template comparison."""

    raw: np.ndarray
    evidence: np.ndarray | Sequence[Any]


@dataclass(slots=True)
class Comparison:
    """The evidence of a detector that finds and names defects itself (template
    comparison): its regions (boxes in the tested image, labelled), the anomaly map at
    the image's resolution (1.0 = the tolerance), the reference it compared with,
    aligned to the image, or why there is no comparison (``error``: registration
    failed, the pair does not match)."""

    regions: list[Region] = field(default_factory=list)
    anomaly_map: np.ndarray | None = None
    reference: np.ndarray | None = None
    error: str | None = None


@dataclass(slots=True)
class Condition:
    """The evidence of a detector of machine condition (vibration) for one window: its
    features by name (as the model scores them), its measurements in their own units
    (what the record keeps for trends: RMS in g, kurtosis, velocity in mm/s ...), the
    velocity severity, the envelope spectrum of its most impulsive band, and the
    diagnosis drawn from them; or why it could not be judged (``error``)."""

    features: dict[str, float] = field(default_factory=dict)
    measurements: dict[str, float] = field(default_factory=dict)
    velocity_rms_mm_s: float | None = None
    iso_zone: str | None = None
    iso_limits: tuple[float, float, float] | None = None  # the zone boundaries A/B, B/C, C/D in mm/s
    envelope_hz: np.ndarray | None = None
    envelope: np.ndarray | None = None
    band_hz: tuple[float, float] | None = None
    diagnosis: Diagnosis | None = None
    error: str | None = None


class Parameters:
    """``get_params``/``set_params`` over the names in ``PARAMS`` (scikit-learn's
    ``BaseEstimator``, reduced): what every detector kind shares of the contract."""

    PARAMS: ClassVar[tuple[str, ...]] = ()

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.PARAMS}

    def set_params(self, **params: Any) -> Self:
        unknown = sorted(set(params) - set(self.PARAMS))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no parameter {', '.join(unknown)}; it has {', '.join(self.PARAMS)}"
            )
        for name, value in params.items():
            setattr(self, name, value)
        self._parameters_changed(set(params))
        return self

    def _parameters_changed(self, names: set[str]) -> None:
        """Drop what was built from the parameters in ``names`` (a runtime, a cache)."""


@runtime_checkable
class Detector(Protocol):
    """What every detector kind provides."""

    kind: ClassVar[str]
    card_: ModelCard  # set by fit or load

    def fit(self, samples: Sequence[Any], defect_samples: Sequence[Any] | None = None) -> Self:
        """Learn from good samples; labelled ``defect_samples``, if any, only add to the card's report."""
        ...

    def prepare(self) -> Self:
        """Do the start-up work now (build runtimes) rather than on the first sample."""
        ...

    def score(self, samples: Sequence[Any]) -> Scores: ...

    def save(self, path: str | Path) -> Path: ...

    @classmethod
    def load(cls, path: str | Path, **options: Any) -> Self: ...

    def get_params(self) -> dict[str, Any]: ...

    def set_params(self, **params: Any) -> Self: ...


@runtime_checkable
class ImageDetector(Detector, Protocol):
    """A detector of images (HxWx3 uint8 RGB). Its evidence is an anomaly map at model
    resolution, or, where it ``names_defects`` itself, a ``Comparison``."""

    names_defects: ClassVar[bool]

    @property
    def threshold(self) -> float: ...

    @property
    def input_spec(self) -> InputSpec | None: ...


@runtime_checkable
class Decider(Protocol):
    """The decision stage as the station uses it (``huoyan.decision.judge``): a sample's
    score and evidence to a verdict, regions and normalised score."""

    @property
    def threshold(self) -> float: ...

    def judge(self, sample: Any, score: float, evidence: Any, name: str) -> InspectionResult:
        """``sample``: the image (HxWx3) or the window (``SignalWindow``) judged;
        ``evidence``: the detector's for it (an anomaly map, a ``Comparison``, a ``Condition``)."""
        ...


def needs_own_template(detector: object) -> bool:
    """A detector that compares each image with its own golden template (a template
    model without a fixed one): each sample is a ``PairedImage``."""
    return bool(getattr(detector, "names_defects", False)) and getattr(detector, "fixed_template", None) is None


D = TypeVar("D", bound=Detector)


def clone(detector: D) -> D:
    """An unfitted detector with the same parameters (scikit-learn's ``clone``)."""
    return type(detector)(**detector.get_params())


class Fitter(Protocol):
    """Fits a new detector with ``parent``'s parameters on ``samples``, here or on other
    machines (``huoyan.scale.training.RayFitter``); what retraining calls."""

    def __call__(self, parent: Detector, samples: Sequence[Any]) -> Detector: ...


def fit_here(parent: D, samples: Sequence[Any]) -> D:
    """The Fitter of this process: ``clone(parent).fit(samples)``."""
    return clone(parent).fit(samples)
