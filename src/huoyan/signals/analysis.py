"""One window from samples to everything the vibration detector judges it by: the
feature vector it scores, the velocity severity, the envelope spectrum and each
fault family's evidence. One FFT of the window serves every spectral step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft

from huoyan.core.models import FamilyEvidence, SignalWindow
from huoyan.signals.bearings import BearingGeometry
from huoyan.signals.diagnosis import FAMILIES, family_evidence, strengths
from huoyan.signals.envelope import EnvelopeSpectrum, envelope_spectrum
from huoyan.signals.features import (
    TIME_FEATURES,
    band_energies,
    iso_zone,
    time_features,
    velocity_rms,
    velocity_spectrum,
)


@dataclass(frozen=True, slots=True)
class Settings:
    """What the analysis of a window depends on (the detector's parameters)."""

    units: str
    machine_class: str
    n_bands: int
    min_band_hz: float
    max_envelope_hz: float
    min_band_share: float
    harmonics: int
    slip: float
    bearing: BearingGeometry | None
    rpm: float | None  # used where a window carries no speed of its own

    def feature_names(self) -> list[str]:
        bands = [f"log_band_{i}" for i in range(self.n_bands)]
        return [*TIME_FEATURES, *bands, "log_velocity_rms", "envelope_kurtosis", *(f"{f}_db" for f in FAMILIES)]


@dataclass(frozen=True, slots=True)
class Analysis:
    features: np.ndarray  # in ``Settings.feature_names`` order; NaN where a family is not measured
    velocity_rms_mm_s: float
    iso_zone: str
    envelope: EnvelopeSpectrum
    evidence: list[FamilyEvidence]


def analyse(window: SignalWindow, s: Settings) -> Analysis:
    x = window.samples
    n, rate = x.size, window.sample_rate
    spectrum = fft.rfft(x - x.mean())
    velocity = velocity_spectrum(spectrum, rate, n, s.units)
    v_rms = velocity_rms(velocity)
    env = envelope_spectrum(spectrum, rate, n, s.min_band_hz, s.max_envelope_hz, s.min_band_share)
    rpm = window.rpm if window.rpm is not None else s.rpm
    shaft = None if rpm is None else rpm / 60.0
    defects = None if shaft is None or s.bearing is None else s.bearing.frequencies(shaft)
    velocity_hz = np.arange(velocity.size) * rate / n
    evidence = family_evidence(
        env.frequencies, env.amplitudes, velocity_hz, velocity, defects, shaft, s.harmonics, s.slip
    )
    features = np.concatenate(
        [
            time_features(x),
            band_energies(spectrum, rate, n, s.n_bands),
            [np.log10(v_rms + 1e-9), np.log1p(max(env.kurtosis, 0.0))],
            strengths(evidence),
        ]
    )
    return Analysis(features, v_rms, iso_zone(v_rms, s.machine_class), env, evidence)
