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
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol, Self, TypeVar, runtime_checkable

import numpy as np

from huoyan.core.models import InputSpec, InspectionResult, ModelCard


class NotFittedError(RuntimeError):
    """A detector was used before ``fit`` or ``load``."""


class Scores(NamedTuple):
    """A batch's raw scores (N,) and, for each sample, the evidence behind its score:
    an anomaly map at model resolution for images (an N x S x S array), a spectrum or
    feature vector for signals, boxes for template comparison."""

    raw: np.ndarray
    evidence: np.ndarray | Sequence[Any]


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
    """A detector of images (HxWx3 uint8 RGB) whose evidence is an anomaly map."""

    @property
    def threshold(self) -> float: ...

    @property
    def input_spec(self) -> InputSpec | None: ...


@runtime_checkable
class Decider(Protocol):
    """The decision stage as the station uses it (``huoyan.decision.judge.ImageDecider``):
    an image's score and model-resolution map to a verdict, regions and normalised score."""

    @property
    def threshold(self) -> float: ...

    def judge(self, image: np.ndarray, score: float, model_map: np.ndarray, name: str) -> InspectionResult: ...


D = TypeVar("D", bound=Detector)


def clone(detector: D) -> D:
    """An unfitted detector with the same parameters (scikit-learn's ``clone``)."""
    return type(detector)(**detector.get_params())
