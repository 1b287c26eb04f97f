"""A vibration model against labelled recordings: folders laid out as ``healthy/`` and
one folder per fault (``outer_race/``, ``inner_race/``, ``rolling_element/``,
``cage/``, ``unbalance/``, ``misalignment/``, or the usual short names: ``outer``,
``or``, ``inner``, ``ir``, ``ball``, ``b``).

Reported: window AUROC of healthy against all faults and against each fault (the
field's standard for detection), the share of healthy windows called NG (false
alarms) and of fault windows called OK (misses) at the model's threshold, and the
diagnosis: per fault folder whose name is a family, the share of its windows given
that family, and what the others were given.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from huoyan.signals.detector import VibrationMonitor
from huoyan.signals.diagnosis import FAMILIES
from huoyan.signals.readers import SignalError, list_recordings, read_recording

HEALTHY = "healthy"
FAMILY_ALIASES = {
    "outer": "outer_race",
    "or": "outer_race",
    "inner": "inner_race",
    "ir": "inner_race",
    "ball": "rolling_element",
    "b": "rolling_element",
    **{f: f for f in FAMILIES},
}


def family_of_folder(name: str) -> str | None:
    return FAMILY_ALIASES.get(name.lower().replace("-", "_"))


def labelled_folders(root: Path) -> dict[str, Path]:
    """``healthy`` and the fault folders under ``root``; an error names what is missing."""
    if not root.is_dir():
        raise SignalError(f"{root}: not a folder")
    folders = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    if HEALTHY not in folders or len(folders) < 2:
        raise SignalError(
            f"{root}: expected a folder 'healthy/' and at least one fault folder beside it "
            f"(found: {', '.join(folders) or 'none'})"
        )
    return folders


def evaluate_folders(
    model: VibrationMonitor,
    root: str | Path,
    channel: str | None = None,
    sample_rate: float | None = None,
    rpm: float | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` on the labelled recordings under ``root`` (see the module's text)."""
    details = model.details()
    rate = sample_rate or details.sample_rate
    scores: dict[str, list[float]] = {}
    families: dict[str, list[str | None]] = {}
    skipped: list[str] = []
    windows_done, seconds = 0, 0.0
    for name, folder in labelled_folders(Path(root)).items():
        scores[name], families[name] = [], []
        for path in list_recordings([folder]):
            try:
                recording = read_recording(path, channel, rate, rpm, usual_channel=details.channel)
                windows = model.windows_of(recording)
            except SignalError as exc:
                skipped.append(str(exc))
                continue
            start = time.perf_counter()
            result = model.score(windows)
            seconds += time.perf_counter() - start
            windows_done += len(windows)
            scores[name] += [float(s) for s in result.raw]
            families[name] += [c.diagnosis.family if c.diagnosis else None for c in result.evidence]
    healthy = np.array(scores.pop(HEALTHY))
    healthy_families = families.pop(HEALTHY)
    if healthy.size == 0 or not any(scores.values()):
        raise SignalError(f"{root}: no readable healthy and fault recordings ({'; '.join(skipped) or 'none found'})")
    threshold = model.threshold
    faults = np.concatenate([np.array(v) for v in scores.values() if v])
    per_fault = {}
    right_total, named_total = 0, 0
    for name, values in scores.items():
        if not values:
            continue
        got = Counter(f or "none" for f in families[name])
        family = family_of_folder(name)
        entry: dict[str, Any] = {
            "windows": len(values),
            "auroc": _auroc(healthy, np.array(values)),
            "miss_rate": float(np.mean(np.array(values) <= threshold)),
            "family": family,
            "diagnosed": dict(got),
        }
        if family is not None:
            entry["diagnosis_accuracy"] = got[family] / len(values)
            right_total += got[family]
            named_total += len(values)
        per_fault[name] = entry
    return {
        "healthy_windows": int(healthy.size),
        "fault_windows": int(faults.size),
        "auroc": _auroc(healthy, faults),
        "false_alarm_rate": float(np.mean(healthy > threshold)),
        "expected_false_alarm_rate": model.card_.calibration.expected_false_reject_rate,
        "healthy_diagnosed": dict(Counter(f or "none" for f in healthy_families)),
        "diagnosis_accuracy": right_total / named_total if named_total else None,
        "faults": per_fault,
        "windows_per_second": windows_done / seconds if seconds else 0.0,
        "skipped": skipped,
    }


def _auroc(healthy: np.ndarray, faulty: np.ndarray) -> float:
    y = np.r_[np.zeros(healthy.size), np.ones(faulty.size)]
    return float(roc_auc_score(y, np.r_[healthy, faulty]))
