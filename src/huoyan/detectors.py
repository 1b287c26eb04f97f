"""The registry of detector kinds: the one place that names them.

A model file's header names its kind (``huoyan.core.artifact.artifact_kind``);
``load_detector`` returns an instance of the registered class for it. Everything that
loads, trains or lists models (stations, the server's training, the CLI) goes through
here and never names a class. A new kind joins by one line in ``REGISTRY`` (and its
fixture in the shared contract test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huoyan.core.artifact import artifact_kind
from huoyan.core.detector import Detector, ImageDetector
from huoyan.signals.detector import VibrationMonitor
from huoyan.vision.patchcore import PatchCore
from huoyan.vision.template.detector import TemplateComparison

REGISTRY: dict[str, type[Detector]] = {
    PatchCore.kind: PatchCore,
    TemplateComparison.kind: TemplateComparison,
    VibrationMonitor.kind: VibrationMonitor,
}
DEFAULT_KIND = PatchCore.kind


class UnknownDetectorKind(ValueError):
    """A recipe or a model file names a detector kind this installation does not have."""


def detector_class(kind: str) -> type[Detector]:
    try:
        return REGISTRY[kind]
    except KeyError:
        raise UnknownDetectorKind(
            f"detector kind {kind!r} is not installed here (installed: {', '.join(sorted(REGISTRY))})"
        ) from None


def load_detector(path: str | Path, expect: str | None = None, **options: Any) -> Detector:
    """The detector saved at ``path``, of the class its header names; with ``expect``
    (a recipe's ``detector``), the file must be of that kind. ``options`` go to ``load``
    (e.g. ``runtime``)."""
    if expect is not None:
        detector_class(expect)  # a kind that is not installed is named as such
    kind = artifact_kind(path)
    if expect is not None and kind != expect:
        raise UnknownDetectorKind(f"{path}: a {kind!r} model, but the recipe names detector {expect!r}")
    return detector_class(kind).load(path, **options)


def new_detector(kind: str = DEFAULT_KIND, **params: Any) -> Detector:
    """An unfitted detector of ``kind`` with ``params`` (the rest at their defaults)."""
    return detector_class(kind)(**params)


def default_params(kind: str = DEFAULT_KIND) -> dict[str, Any]:
    """A kind's parameters at their defaults: what the CLI offers, declared once by the estimator."""
    return new_detector(kind).get_params()


def load_image_detector(path: str | Path, expect: str | None = None, runtime: str = "onnx") -> ImageDetector:
    """A station's model: an image detector, ready to judge (its runtime built now)."""
    detector = load_detector(path, expect, runtime=runtime)
    if not isinstance(detector, ImageDetector):
        raise UnknownDetectorKind(f"{path}: a {detector.kind!r} model does not judge images")
    return detector.prepare()


def judges_signals(detector: object) -> bool:
    """A detector of windows of a sensor channel (vibration), not of images."""
    return bool(getattr(detector, "judges_signals", False))


def load_station_detector(path: str | Path, expect: str | None = None, runtime: str = "onnx") -> Detector:
    """A station's model, ready to judge: an image detector (its runtime built now) or a
    detector of sensor windows."""
    detector = load_detector(path, expect, runtime=runtime)
    if not judges_signals(detector) and not isinstance(detector, ImageDetector):
        raise UnknownDetectorKind(f"{path}: a {detector.kind!r} model judges neither images nor sensor windows")
    return detector.prepare()
