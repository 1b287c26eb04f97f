"""Synthetic vibration for the signal tests: a shaft at 1 x and 2 x, broadband noise, and,
for a bearing fault, impacts at its defect frequency, each ringing a structural
resonance (the textbook model of a localised bearing defect: McFadden & Smith 1984).
An inner-race defect turns with the shaft, so its impacts are modulated at 1 x."""

from __future__ import annotations

import numpy as np

from huoyan.core.models import SignalWindow
from huoyan.signals.bearings import bearing
from huoyan.signals.readers import Recording
from huoyan.signals.windows import windows

RATE = 20_000.0
RPM = 1800.0
RESONANCE_HZ = 3_000.0


def vibration(seconds: float, fault: str | None = None, seed: int = 0, rate: float = RATE) -> np.ndarray:
    """Acceleration in g: healthy running, or with ``fault`` (``outer_race``,
    ``inner_race``, ``unbalance``)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    shaft = RPM / 60
    x = 0.05 * rng.standard_normal(n) + 0.02 * np.sin(2 * np.pi * shaft * t) + 0.01 * np.sin(4 * np.pi * shaft * t)
    if fault == "unbalance":
        x += 0.3 * np.sin(2 * np.pi * shaft * t + 0.3)
    elif fault in ("outer_race", "inner_race"):
        f = bearing("6205").frequencies(shaft)
        period = 1 / (f.bpfo if fault == "outer_race" else f.bpfi)
        ring = np.arange(int(0.004 * rate)) / rate
        impulse = np.exp(-ring / 0.0006) * np.sin(2 * np.pi * RESONANCE_HZ * ring)
        at = np.arange(rng.uniform(0, period), seconds, period)
        at = at + rng.normal(0, 0.005 * period, at.size)  # rolling elements slip a little
        for when in at:
            i = int(when * rate)
            strength = 0.6 if fault == "outer_race" else 0.6 * (1 + np.cos(2 * np.pi * shaft * when)) / 2 + 0.1
            piece = impulse[: max(0, min(impulse.size, n - i))]
            x[i : i + piece.size] += strength * piece
    return x


def recording(seconds: float, fault: str | None = None, seed: int = 0, source: str = "") -> Recording:
    return Recording(vibration(seconds, fault, seed), RATE, "DE", source or f"{fault or 'healthy'}-{seed}", RPM)


def signal_windows(
    seconds: float, fault: str | None = None, seed: int = 0, length: float = 0.25, hop: float = 0.125
) -> list[SignalWindow]:
    return list(windows(recording(seconds, fault, seed), length, hop))
