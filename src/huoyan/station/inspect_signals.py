"""One micro-batch of sensor windows to one stored record each: score, decide, keep.

The window counterpart of ``inspect``: the detector scores the windows, the decider
(``SignalDecider``) gives each its verdict, diagnosis and measurements, and the record
keeps, as evidence, the window's samples (float32 ``.npy``) and its analysis (JSON:
features, measurements, velocity zone, envelope spectrum, the diagnosis and every
line behind it), for NG windows and one OK window in ``keep_ok_every``, as for images.

A change of condition is an alarm: ``condition-changed`` when a channel goes from OK to
NG or its diagnosis changes, cleared when it is OK again with no diagnosis; the line
hears of it on MQTT, OPC UA and the webhook like any alarm, besides each NG window's
result.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from huoyan.core.detector import Condition, Decider
from huoyan.core.models import SignalWindow, Verdict
from huoyan.core.recipe import Recipe
from huoyan.core.records import (
    Arrival,
    Evidence,
    EvidenceKind,
    InspectionRecord,
    Severity,
    StationEvent,
    StoredRecord,
)
from huoyan.decision.fusion import recording_diagnosis, recording_verdict, worst_window
from huoyan.station.inspect import JUDGED, Prepared, keeps, record_for

CONDITION_KIND = "condition-changed"


def window_npy(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, samples.astype(np.float32), allow_pickle=False)
    return buf.getvalue()


def condition_json(condition: Condition, sample_rate: float, start_s: float, channel: str) -> bytes:
    """A window's analysis as the record keeps it (and the sensor page draws it)."""
    body: dict[str, Any] = {
        "channel": channel,
        "sample_rate": sample_rate,
        "start_s": start_s,
        "features": condition.features,
        "measurements": condition.measurements,
        "velocity_rms_mm_s": condition.velocity_rms_mm_s,
        "iso_zone": condition.iso_zone,
        "iso_limits": list(condition.iso_limits) if condition.iso_limits else None,
        "band_hz": list(condition.band_hz) if condition.band_hz else None,
        "envelope_hz_step": float(condition.envelope_hz[1] - condition.envelope_hz[0])
        if condition.envelope_hz is not None and condition.envelope_hz.size > 1
        else None,
        "envelope": [round(float(v), 6) for v in condition.envelope] if condition.envelope is not None else None,
        "diagnosis": condition.diagnosis.model_dump(mode="json") if condition.diagnosis else None,
    }
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass
class SignalInspector:
    detector: Any  # a detector that ``judges_signals`` (core.detector's contract)
    decider: Decider
    recipe: Recipe
    model_sha256: str
    preview: Any = None  # windows have no picture; kept so the line treats every inspector alike
    on_event: Callable[[StationEvent], None] | None = None
    # Reads a part's recording (a file, in a station of several channels) into windows.
    read_windows: Callable[[Arrival], list[SignalWindow]] | None = None
    _condition: dict[str, tuple[Verdict, str | None]] = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        return self.decider.threshold

    def _record(self, a: Arrival, **fields: object) -> InspectionRecord:
        return record_for(a, self.recipe, self.model_sha256, self.threshold, **fields)

    def prepare(self, a: Arrival) -> Prepared:
        if a.window is not None:
            return Prepared(a, None)
        if self.read_windows is not None and (a.data or a.meta.get("claimed_path")):
            try:  # a recording of one part (a channel of a station of several)
                return Prepared(a, None, windows=self.read_windows(a))
            except (OSError, ValueError) as exc:
                return Prepared(a, None, str(exc))
        return Prepared(a, None, str(a.meta.get("error") or "no samples"))

    def run(self, batch: Sequence[Prepared]) -> list[StoredRecord]:
        out: list[StoredRecord] = []
        for p in batch:
            if p.error is not None or (p.arrival.window is None and not p.windows):
                out.append(StoredRecord(self._record(p.arrival, verdict=Verdict.ERROR, error=p.error or "no samples")))
                continue
            windows = [p.arrival.window] if p.arrival.window is not None else list(p.windows or [])
            try:
                scores = self.detector.score(windows)
            except Exception as exc:  # every window gets its record, with the reason
                out.append(
                    StoredRecord(self._record(p.arrival, verdict=Verdict.ERROR, error=f"inspection failed: {exc}"))
                )
                continue
            out.append(self._judge(p.arrival, windows, [float(s) for s in scores.raw], list(scores.evidence)))
        return out

    def _judge(
        self, a: Arrival, windows: list[SignalWindow], scores: list[float], conditions: list[Condition]
    ) -> StoredRecord:
        """One record for the arrival: its window, or, for a recording, the window that
        speaks for it (``decision.fusion``: NG if any window is)."""
        results = [
            self.decider.judge(w, s, c, a.source_name) for w, s, c in zip(windows, scores, conditions, strict=True)
        ]
        verdicts = [r.verdict for r in results]
        i = worst_window(verdicts, [r.score for r in results])
        window, condition, result = windows[i], conditions[i], results[i]
        if len(results) > 1:
            result = result.model_copy(
                update={
                    "verdict": recording_verdict(verdicts),
                    "diagnosis": recording_diagnosis(verdicts, [r.diagnosis for r in results]),
                }
            )
        blobs: dict[str, bytes] = {}
        evidence = []
        channel = window.channel or "main"
        if keeps(self.recipe, result.verdict, a.seq):
            evidence.append(_kept(blobs, EvidenceKind.SIGNAL, channel, window_npy(window.samples), "application/x-npy"))
            body = condition_json(condition, window.sample_rate, window.start_s, channel)
            evidence.append(_kept(blobs, EvidenceKind.CONDITION, channel, body, "application/json"))
        judged = {name: getattr(result, name) for name in JUDGED}
        self._watch(channel, result.verdict, result.diagnosis, a.source_name)
        return StoredRecord(self._record(a, **judged, evidence=evidence), blobs)

    def _watch(self, channel: str, verdict: Verdict, diagnosis: str | None, name: str) -> None:
        """Alarm on a change of condition (see the module's text)."""
        before = self._condition.get(channel, (Verdict.OK, None))
        now = (verdict, diagnosis)
        self._condition[channel] = now
        if now == before or verdict == Verdict.ERROR or self.on_event is None:
            return
        if verdict == Verdict.OK and diagnosis is None:
            message, severity, active = f"{channel}: back to healthy running at {name}", Severity.INFO, False
        else:
            shows = f", diagnosis {diagnosis}" if diagnosis else ""
            message, severity, active = f"{channel}: {verdict.value}{shows} from {name}", Severity.ALARM, True
        self.on_event(
            StationEvent(
                station_id=self.recipe.station, kind=CONDITION_KIND, severity=severity, message=message, active=active
            )
        )


def _kept(blobs: dict[str, bytes], kind: EvidenceKind, channel: str, data: bytes, media: str) -> Evidence:
    sha = hashlib.sha256(data).hexdigest()
    blobs[sha] = data
    return Evidence(kind=kind, channel=channel, sha256=sha, media_type=media)
