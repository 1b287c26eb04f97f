"""Which fault family stands out in a window, and the lines that say so.

Bearing families are read in the envelope spectrum (``envelope``): outer race at
BPFO, inner race at BPFI (with sidebands at the shaft speed, as the defect turns in
and out of the load zone), rolling element at 2 x BSF (a ball defect strikes both
races each spin; sidebands at the cage speed FTF) and cage at FTF, each with its
harmonics. Unbalance (1 x shaft speed) and misalignment (2 x) are read in the velocity
spectrum. A line's prominence is its height over the median of the spectrum around it
(the line itself left out); a bearing family's strength is the mean prominence of its
first ``harmonics`` lines (sidebands are shown, not counted). Unbalance and
misalignment have no "floor" to stand over (every machine turns at 1 x), so their
strength is the line's velocity in dB re 1 mm/s.

A family stands out when its strength rises above healthy running (learned by the
detector from its healthy windows) by ``min_rise_db`` and by ``min_z`` healthy
standard deviations; of those, the largest rise is the diagnosis, a bearing family
before a shaft family: bearing lines sit at non-integer orders that nothing else
makes, while any fault that shakes the machine harder also lifts 1 x and 2 x (the
CWRU inner-race recording lifts 2 x by 6-10 dB). The CWRU recordings
show why the rise, not the raw prominence, decides: the healthy recording's envelope
already has a line at BPFO (about 12 dB over its floor), and its 1 x is always there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from huoyan.core.models import Diagnosis, FamilyEvidence, SpectralLine
from huoyan.signals.bearings import DefectFrequencies

BEARING_FAMILIES = ("outer_race", "inner_race", "rolling_element", "cage")
SHAFT_FAMILIES = ("unbalance", "misalignment")
FAMILIES = BEARING_FAMILIES + SHAFT_FAMILIES
FLOOR_HALF_WIDTH = (10.0, 0.15)  # the floor around a line: +- max(10 Hz, 15 % of its frequency)


def measure_line(
    frequencies: np.ndarray, amplitudes: np.ndarray, name: str, expected_hz: float, slip: float
) -> SpectralLine | None:
    """The highest bin within ``slip`` (relative) and one bin of ``expected_hz``, with its
    floor; None where the spectrum does not reach that far. ``frequencies`` is an even
    grid from 0 (as ``rfft`` gives)."""
    step = float(frequencies[1] - frequencies[0])
    tolerance = slip * expected_hz + step
    if expected_hz + tolerance > frequencies[-1] or expected_hz - tolerance < step:
        return None
    lo, hi = math.ceil((expected_hz - tolerance) / step), math.floor((expected_hz + tolerance) / step) + 1
    half = max(FLOOR_HALF_WIDTH[0], FLOOR_HALF_WIDTH[1] * expected_hz, 3 * tolerance)
    around_lo = max(1, math.ceil((expected_hz - half) / step))
    around_hi = min(amplitudes.size, math.floor((expected_hz + half) / step) + 1)
    peak = lo + int(np.argmax(amplitudes[lo:hi]))
    amplitude = float(amplitudes[peak])
    around = np.concatenate([amplitudes[around_lo:lo], amplitudes[hi:around_hi]])
    floor = float(np.sort(around)[around.size // 2]) if around.size else 0.0  # the (upper) median
    # Built from computed floats: validation would only cost time (18 lines a window).
    return SpectralLine.model_construct(
        name=name,
        expected_hz=expected_hz,
        found_hz=peak * step,
        amplitude=amplitude,
        noise_floor=floor,
        prominence_db=_db(amplitude, floor),
    )


def _db(value: float, reference: float) -> float:
    tiny = 1e-12
    return float(20 * np.log10((value + tiny) / (reference + tiny)))


def _harmonics(label: str, base: float, count: int, order: int = 1) -> list[tuple[str, float]]:
    """``count`` harmonics of ``order`` x the ``label`` frequency ``base``: 1x BPFO, 2x BPFO ...;
    with order 2: 2x BSF, 4x BSF ..."""
    return [(f"{order * h}x {label}", order * h * base) for h in range(1, count + 1)]


def bearing_lines(
    f: DefectFrequencies, harmonics: int
) -> dict[str, tuple[list[tuple[str, float]], list[tuple[str, float]]]]:
    """Per bearing family: (lines that count, sidebands shown), as (name, Hz)."""
    return {
        "outer_race": (_harmonics("BPFO", f.bpfo, harmonics), []),
        "inner_race": (
            _harmonics("BPFI", f.bpfi, harmonics),
            [("BPFI-1x", f.bpfi - f.shaft), ("BPFI+1x", f.bpfi + f.shaft)],
        ),
        "rolling_element": (
            _harmonics("BSF", f.bsf, harmonics, order=2),
            [("2xBSF-FTF", 2 * f.bsf - f.ftf), ("2xBSF+FTF", 2 * f.bsf + f.ftf)],
        ),
        "cage": (_harmonics("FTF", f.ftf, harmonics), []),
    }


def family_evidence(
    envelope_hz: np.ndarray,
    envelope: np.ndarray,
    velocity_hz: np.ndarray,
    velocity: np.ndarray,
    frequencies: DefectFrequencies | None,
    shaft_hz: float | None,
    harmonics: int,
    slip: float,
) -> list[FamilyEvidence]:
    """Each family's strength and lines (families whose frequencies are unknown are left out)."""
    out = []
    if frequencies is not None:
        for family, (counted, shown) in bearing_lines(frequencies, harmonics).items():
            lines = [ln for name, hz in counted if (ln := measure_line(envelope_hz, envelope, name, hz, slip))]
            if not lines:
                continue
            extra = [ln for name, hz in shown if (ln := measure_line(envelope_hz, envelope, name, hz, slip))]
            strength = float(np.mean([ln.prominence_db for ln in lines]))
            out.append(FamilyEvidence(family=family, strength_db=strength, lines=lines + extra))
    if shaft_hz is not None:
        for family, order in zip(SHAFT_FAMILIES, (1, 2), strict=True):
            line = measure_line(velocity_hz, velocity, f"{order}x shaft", order * shaft_hz, slip)
            if line is not None:
                out.append(FamilyEvidence(family=family, strength_db=_db(line.amplitude, 1.0), lines=[line]))
    return out


def strengths(evidence: Sequence[FamilyEvidence]) -> np.ndarray:
    """Strengths in ``FAMILIES`` order (NaN for a family not measured)."""
    by_family = {e.family: e.strength_db for e in evidence}
    return np.array([by_family.get(f, np.nan) for f in FAMILIES])


def diagnose(
    evidence: Sequence[FamilyEvidence],
    healthy_mean: np.ndarray,
    healthy_std: np.ndarray,
    min_rise_db: float,
    min_z: float,
) -> Diagnosis:
    """The family that rises most above healthy running, if any rises enough (see the
    module's text); every family's evidence with its rise."""
    rated: list[FamilyEvidence] = []
    standing: dict[str, float] = {}
    for e in evidence:
        i = FAMILIES.index(e.family)
        mean, std = float(healthy_mean[i]), float(healthy_std[i])
        if not np.isfinite(mean):
            rated.append(e)
            continue
        rise = e.strength_db - mean
        rated.append(e.model_copy(update={"healthy_db": mean, "rise_db": rise}))
        if rise >= min_rise_db and rise >= min_z * std:
            standing[e.family] = rise
    for group in (BEARING_FAMILIES, SHAFT_FAMILIES):
        risen = {f: r for f, r in standing.items() if f in group}
        if risen:
            return Diagnosis(family=max(risen, key=risen.__getitem__), evidence=rated)
    return Diagnosis(family=None, evidence=rated)
