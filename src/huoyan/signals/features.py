"""Condition-monitoring features of one window of acceleration.

- time domain: RMS, peak, crest factor (peak / RMS), kurtosis (3 for Gaussian noise;
  impacts from a bearing defect raise it) and skewness;
- band energies: RMS in ``n_bands`` logarithmically spaced bands from 10 Hz to the
  Nyquist frequency (a defect exciting a structural resonance raises one band);
- velocity RMS over 10-1000 Hz, integrated from acceleration in the frequency domain,
  in mm/s, and its ISO 20816 severity zone for the machine's class.

ISO zones (velocity RMS boundaries A/B, B/C, C/D in mm/s, 10-1000 Hz): classes I-IV
are ISO 10816-1's examples (kept as Annex B of ISO 20816-1:2016): small machines up to
15 kW, medium 15-75 kW, large on rigid foundations, large on flexible ones. The
``group1``/``group2`` classes are ISO 20816-3:2022's industrial machines above 15 kW
(group 1: above 300 kW; group 2: 15-300 kW), on rigid or flexible supports. Zone A:
new machines; B: unrestricted long-term operation; C: limited operation; D: damage.
"""

from __future__ import annotations

import numpy as np

G = 9.80665  # m/s^2 per g
ACCELERATION_UNITS = {"g": G, "m/s2": 1.0}

ISO_ZONES: dict[str, tuple[float, float, float]] = {
    "I": (0.71, 1.8, 4.5),
    "II": (1.12, 2.8, 7.1),
    "III": (1.8, 4.5, 11.2),
    "IV": (2.8, 7.1, 18.0),
    "group1-rigid": (2.3, 4.5, 7.1),
    "group1-flexible": (3.5, 7.1, 11.0),
    "group2-rigid": (1.4, 2.8, 4.5),
    "group2-flexible": (2.3, 4.5, 7.1),
}
VELOCITY_BAND_HZ = (10.0, 1000.0)
TIME_FEATURES = ("log_rms", "log_peak", "crest", "kurtosis", "skewness")


def iso_zone(velocity_rms_mm_s: float, machine_class: str) -> str:
    """The ISO 20816 zone (A-D) of a velocity RMS for ``machine_class`` (``ISO_ZONES``)."""
    try:
        ab, bc, cd = ISO_ZONES[machine_class]
    except KeyError:
        raise ValueError(f"machine class {machine_class!r} unknown (known: {', '.join(ISO_ZONES)})") from None
    return (
        "A" if velocity_rms_mm_s <= ab else "B" if velocity_rms_mm_s <= bc else "C" if velocity_rms_mm_s <= cd else "D"
    )


def time_features(x: np.ndarray) -> np.ndarray:
    """``TIME_FEATURES`` of one window (logarithms of g-level quantities keep them comparable)."""
    centred = x - x.mean()
    m2 = float(np.mean(centred**2))
    peak = float(np.max(np.abs(centred)))
    tiny = 1e-24
    if m2 <= tiny:  # a flat window: Gaussian-like values rather than 0/0
        return np.array([np.log10(1e-12), np.log10(1e-12), 1.0, 3.0, 0.0])
    rms = m2**0.5
    squared = centred * centred
    return np.array(
        [
            np.log10(rms),
            np.log10(peak + 1e-12),
            peak / rms,
            float(np.mean(squared * squared)) / m2**2,
            float(np.mean(squared * centred)) / m2**1.5,
        ]
    )


def band_edges(sample_rate: float, n_bands: int) -> np.ndarray:
    return np.geomspace(10.0, sample_rate / 2, n_bands + 1)


def band_energies(spectrum: np.ndarray, sample_rate: float, n_samples: int, n_bands: int) -> np.ndarray:
    """log10 of the RMS in each band, from a one-sided ``rfft`` of the window."""
    freqs = np.arange(spectrum.size) * sample_rate / n_samples
    power = np.abs(spectrum) ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    idx = np.searchsorted(freqs, band_edges(sample_rate, n_bands))
    energy = (cumulative[idx[1:]] - cumulative[idx[:-1]]) * 2 / n_samples**2
    return np.log10(np.sqrt(np.maximum(energy, 0)) + 1e-12)


def velocity_spectrum(spectrum: np.ndarray, sample_rate: float, n_samples: int, units: str = "g") -> np.ndarray:
    """The velocity (mm/s) amplitude spectrum over ``VELOCITY_BAND_HZ``, zero outside,
    from a one-sided ``rfft`` of acceleration in ``units``; amplitudes are peak values
    of each sinusoid (2|X|/N)."""
    freqs = np.arange(spectrum.size) * sample_rate / n_samples
    low, high = VELOCITY_BAND_HZ
    inside = (freqs >= low) & (freqs <= high)
    out = np.zeros(spectrum.size)
    scale = ACCELERATION_UNITS[units] * 1000.0  # to mm/s^2
    out[inside] = 2 * np.abs(spectrum[inside]) / n_samples * scale / (2 * np.pi * freqs[inside])
    return out


def velocity_rms(velocity: np.ndarray) -> float:
    """RMS of the velocity from its peak-amplitude spectrum (each line contributes A^2/2)."""
    return float(np.sqrt(np.sum(velocity**2) / 2))
