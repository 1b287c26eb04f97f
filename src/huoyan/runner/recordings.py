"""Run a vibration model and the decision stage over recordings on disk: one results row
per window and one summary row per recording.

Results file (``results.jsonl``, in input order; the recording's window rows, then its
summary row):

- window rows: ``path``; ``window``: start, seconds into the recording; ``verdict``;
  ``score`` (raw distance from healthy running), ``normalised_score`` (score /
  threshold: above 1.0 is NG), ``threshold``, ``rules``; ``measurements`` (RMS and
  peak in the input's units, crest factor, kurtosis, skewness, velocity RMS, the
  demodulated band's spectral kurtosis); ``velocity_rms_mm_s`` and ``iso_zone``;
  ``band_hz``: the band demodulated; ``diagnosis``: ``family`` (or null) and
  ``evidence``, each family's strength, its rise over healthy running and its lines
  (expected and found frequency, amplitude, noise floor, prominence);
- summary rows: ``path``, ``summary: true``, ``windows``, ``counts`` by verdict,
  ``verdict`` (NG if any window is NG; ERROR for a recording that cannot be read, with
  ``error``), ``max_score``, ``max_normalised_score``, ``diagnosis`` (the family most
  often diagnosed in its NG windows, else in all) and ``families`` (how often each was).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from huoyan.core.detector import Condition, Decider
from huoyan.core.models import Verdict
from huoyan.decision.fusion import diagnosis_counts, recording_diagnosis, recording_verdict
from huoyan.signals.detector import VibrationMonitor
from huoyan.signals.readers import SignalError, list_recordings, read_recording

RESULTS_FILE = "results.jsonl"


def predict_recordings(
    model: VibrationMonitor,
    decider: Decider,
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    channel: str | None = None,
    sample_rate: float | None = None,
    rpm: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Judge every window of every recording in ``inputs``, writing ``results.jsonl``; yield each row."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    details = model.details()
    rate = sample_rate or details.sample_rate
    with (out / RESULTS_FILE).open("w", encoding="utf-8") as results:
        for path in _paths(inputs):
            for row in _one_recording(model, decider, path, channel, rate, rpm):
                results.write(json.dumps(row) + "\n")
                results.flush()
                yield row


def _paths(inputs: Iterable[str | Path]) -> Iterator[str]:
    for item in inputs:
        p = Path(item)
        found = list_recordings([p]) if p.is_dir() else [p]
        if not found:
            yield f"{item}"  # an empty folder: read_recording names it
        yield from (str(f) for f in found)


def _one_recording(
    model: VibrationMonitor, decider: Decider, path: str, channel: str | None, rate: float, rpm: float | None
) -> list[dict[str, Any]]:
    details = model.details()
    try:
        if Path(path).is_dir():
            raise SignalError(f"{path}: folder holds no recordings")
        windows = model.windows_of(read_recording(path, channel, rate, rpm, usual_channel=details.channel))
        scores = model.score(windows)
    except (SignalError, ValueError) as exc:
        return [{"path": path, "summary": True, "windows": 0, "verdict": Verdict.ERROR.value, "error": str(exc)}]
    rows = []
    for window, score, condition in zip(windows, scores.raw, scores.evidence, strict=True):
        result = decider.judge(window, float(score), condition, path)
        row = {
            "path": path,
            "window": round(window.start_s, 6),
            **result.model_dump(mode="json", include={"verdict", "score", "normalised_score", "rules", "error"}),
            "threshold": decider.threshold,
            **_condition(condition),
        }
        rows.append(row)
    return [*rows, _summary(path, rows)]


def _condition(c: Condition) -> dict[str, Any]:
    return {
        "measurements": c.measurements,
        "velocity_rms_mm_s": c.velocity_rms_mm_s,
        "iso_zone": c.iso_zone,
        "band_hz": list(c.band_hz) if c.band_hz else None,
        "diagnosis": c.diagnosis.model_dump(mode="json") if c.diagnosis else None,
    }


def _summary(path: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    verdicts = [Verdict(r["verdict"]) for r in rows]
    diagnoses = [(r["diagnosis"] or {}).get("family") for r in rows]
    families = diagnosis_counts(verdicts, diagnoses)
    return {
        "path": path,
        "summary": True,
        "windows": len(rows),
        "counts": dict(Counter(v.value for v in verdicts)),
        "verdict": recording_verdict(verdicts).value,
        "max_score": max(r["score"] for r in rows),
        "max_normalised_score": max(r["normalised_score"] for r in rows),
        "diagnosis": recording_diagnosis(verdicts, diagnoses),
        "families": dict(families),
    }
