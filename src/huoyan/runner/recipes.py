"""What a recipe and its model make of a station: the inspector (detector, decision
policy, retention), what the record store registers, and the derived recipe version
under which a threshold set on the line is recorded."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from huoyan.core.detector import Detector, ImageDetector, needs_own_template
from huoyan.core.models import SignalWindow
from huoyan.core.recipe import SENSOR_SOURCES, Channel, Recipe
from huoyan.core.records import Arrival, StationEvent
from huoyan.decision.judge import Policy, decider_for
from huoyan.detectors import judges_signals, load_station_detector
from huoyan.signals.detector import VibrationMonitor
from huoyan.signals.readers import SIGNAL_SUFFIXES, read_recording
from huoyan.signals.windows import windows
from huoyan.station.fuse import FusedInspector
from huoyan.station.inspect import Inspector, Previewer
from huoyan.station.inspect_signals import SignalInspector
from huoyan.station.sensors import RecordingLike, RecordingReader, WindowSpec
from huoyan.station.templates import TemplateLibrary
from huoyan.store.blobs import file_sha256
from huoyan.vision.imageio import decode_image

StationInspector = Inspector | SignalInspector | FusedInspector


def recipe_config(recipe: Recipe) -> dict[str, Any]:
    """The recipe half of what the record store registers."""
    return {
        "station_id": recipe.station,
        "product": recipe.product,
        "recipe_id": recipe.recipe,
        "recipe_version": recipe.version,
        "recipe_sha256": recipe.content_sha256(),
        "recipe_body": recipe.model_dump(mode="json", by_alias=True),
    }


def with_threshold(recipe: Recipe, threshold: float | None) -> Recipe:
    """``recipe`` deciding at a fixed raw-score threshold (None: the model's calibrated one),
    as a derived version so that every record names the threshold rule that decided it."""
    if threshold is None:
        return recipe
    decision = recipe.decision.model_copy(update={"threshold": float(threshold)})
    return recipe.model_copy(update={"decision": decision, "version": f"{recipe.version}+threshold={threshold:.6g}"})


def store_config(recipe: Recipe, model_path: Path, model: Detector, model_sha: str) -> dict[str, Any]:
    """What the record store registers for a recipe and its model."""
    return {
        **recipe_config(recipe),
        "model_sha256": model_sha,
        "model_name": model_path.name,
        "model_card": model.card_.model_dump(mode="json"),
    }


def make_inspector(
    detector: Detector,
    recipe: Recipe,
    model_sha: str,
    preview: Previewer | None = None,
    on_event: Callable[[StationEvent], None] | None = None,
    channel_of_several: bool = False,
) -> StationInspector:
    """The station's inspector: the detector scores, the recipe's decision policy judges.
    A model of sensor windows needs a sensor source, an image model any other; a
    mismatch is refused naming the recipe's field. (``channel_of_several``: a camera
    channel of a station whose recipe names the machine for its sensor channel.)"""
    sensor_source = isinstance(recipe.source, SENSOR_SOURCES)
    if judges_signals(detector):
        if not sensor_source:
            raise ValueError(
                f"source: a {detector.kind!r} model judges windows of a sensor channel; the source must be "
                "sensor_replay, mqtt_sensor or opcua_sensor"
            )
        return _signal_inspector(detector, recipe, model_sha, on_event)
    if sensor_source:
        raise ValueError(
            f"source: a {recipe.source.type} source gives windows of a sensor channel; the model must judge them "
            f"(a 'vibration' model), not be a {detector.kind!r} model"
        )
    if recipe.machine is not None and not channel_of_several:
        raise ValueError(f"machine: a {detector.kind!r} model judges images; only sensor stations watch a machine")
    assert isinstance(detector, ImageDetector)
    policy = Policy.of(detector.threshold, recipe.decision, recipe.preprocess.mm_per_px)
    inspector = Inspector(detector, decider_for(detector, policy), recipe, model_sha, decode_image, preview=preview)
    if needs_own_template(detector):
        if recipe.templates is None:
            raise ValueError(
                "the model compares each part with its own golden template: the recipe needs a 'templates' "
                "section (folder, and pattern/name if the files are not named <id>_test / <id>_temp)"
            )
        inspector.templates = TemplateLibrary(recipe.templates, recipe.preprocess)
    return inspector


def _signal_inspector(
    detector: Detector,
    recipe: Recipe,
    model_sha: str,
    on_event: Callable[[StationEvent], None] | None,
    read_windows: Callable[[Arrival], list[SignalWindow]] | None = None,
) -> SignalInspector:
    if recipe.decision.ng_if_any_region or recipe.decision.min_region_area_px:
        raise ValueError("decision: sensor windows have no regions; remove ng_if_any_region and min_region_area_px")
    if recipe.machine is not None and isinstance(detector, VibrationMonitor):
        detector.for_machine(recipe.machine.bearing, recipe.machine.machine_class)
    policy = Policy.of(detector.threshold, recipe.decision)  # type: ignore[attr-defined]
    return SignalInspector(
        detector, decider_for(detector, policy), recipe, model_sha, on_event=on_event, read_windows=read_windows
    )


def make_fused_inspector(
    recipe: Recipe,
    runtime: str = "onnx",
    preview: Previewer | None = None,
    on_event: Callable[[StationEvent], None] | None = None,
) -> tuple[FusedInspector, dict[str, Any]]:
    """A station of several channels: each channel's model and inspector, and what the
    record store registers (the first channel's model as the station's, every other too)."""
    inspectors: dict[str, Any] = {}
    models: dict[str, str] = {}
    registered: list[dict[str, Any]] = []
    first: tuple[Path, Detector] | None = None
    for channel in recipe.channels:
        view = recipe.channel_recipe(channel)
        path = Path(view.model)
        try:
            detector = load_station_detector(path, view.detector, runtime)
        except (OSError, ValueError) as exc:
            raise ValueError(f"channels.{channel.name}.model: {exc}") from exc
        sha = file_sha256(path)
        models[channel.name] = sha
        registered.append({"sha256": sha, "name": path.name, "card": detector.card_.model_dump(mode="json")})
        first = first or (path, detector)
        if judges_signals(detector):
            inspectors[channel.name] = _signal_inspector(
                detector, view, sha, on_event, _recording_windows(detector, channel)
            )
        else:
            inspectors[channel.name] = make_inspector(detector, view, sha, preview, channel_of_several=True)
    assert first is not None
    config = {**store_config(recipe, first[0], first[1], models[recipe.channels[0].name]), "channel_models": registered}
    return FusedInspector(inspectors, models, recipe), config


def _recording_windows(detector: Detector, channel: Channel) -> Callable[[Arrival], list[SignalWindow]]:
    """Reads a part's recording (its claimed file, or its bytes) into the model's windows."""
    spec = window_spec(detector)
    assert spec is not None

    def read(a: Arrival) -> list[SignalWindow]:
        claimed = a.meta.get("claimed_path")
        if claimed:
            recording = read_recording(claimed, channel.signal_channel, channel.sample_rate, channel.rpm, spec.channel)
        else:
            with tempfile.TemporaryDirectory(prefix="huoyan-recording-") as folder:
                path = Path(folder) / Path(a.source_name).name
                path.write_bytes(a.data or b"")
                recording = read_recording(path, channel.signal_channel, channel.sample_rate, channel.rpm, spec.channel)
        # Named as the recipe names the channel, not as the file does ("0", "DE").
        return [replace(w, channel=channel.name) for w in windows(recording, spec.length_s, spec.hop_s)]

    return read


def window_spec(detector: Detector) -> WindowSpec | None:
    """The windows a sensor source cuts for this model (None: it judges images)."""
    if not judges_signals(detector):
        return None
    params = detector.get_params()
    channel = detector.card_.details.get("channel") or None
    return WindowSpec(float(params["window_s"]), float(params["hop_s"]), channel)


def _read(path: Path, channel: str | None, rate: float | None, rpm: float | None, usual: str | None) -> RecordingLike:
    return read_recording(path, channel, rate, rpm, usual_channel=usual)


RECORDING_READER = RecordingReader(_read, SIGNAL_SUFFIXES)
