"""Envelope analysis: find the most impulsive frequency band, demodulate it, and give
the spectrum of its envelope, where bearing defects show as lines at their defect
frequencies.

Band selection is a fast kurtogram (Antoni, "Fast computation of the kurtogram for the
detection of transient faults", MSSP 21 (2007)) computed with an FFT filter bank on the
1/3-binary tree: the band [0, fs/2] is cut into 2, 3, 4, 6, 8, 12 ... equal bands down
to ``min_band_hz``; each band's complex envelope is the inverse FFT of its bins
(an analytic, decimated signal), and its spectral kurtosis

    SK = E|z|^4 / (E|z|^2)^2 - 2

is 0 for Gaussian noise and grows with impulsiveness. Bands holding less than
``min_band_share`` of the window's energy are not candidates: near the anti-aliasing
filter's edge, or wherever a channel carries little more than its converter's
quantisation, a nearly empty band can be very "impulsive" and demodulates to
nothing (the CWRU recordings show SK of several hundred at 22-24 kHz with no
bearing lines there). The band with the largest SK
is demodulated again at a rate fit for the envelope spectrum (``max_envelope_hz``),
and the spectrum of its squared envelope (Randall & Antoni 2011: squared, so that
harmonics are not distorted) is normalised by its mean, so that a line's height is a
modulation depth, independent of the machine's overall level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft


@dataclass(frozen=True, slots=True)
class EnvelopeSpectrum:
    """The squared-envelope spectrum of a window's most impulsive band."""

    frequencies: np.ndarray  # Hz, from 0, step 1 / window length
    amplitudes: np.ndarray  # relative to the squared envelope's mean
    band: tuple[float, float]  # Hz, the demodulated band
    kurtosis: float  # its spectral kurtosis


def band_counts(sample_rate: float, min_band_hz: float) -> list[int]:
    """How many equal bands each kurtogram level cuts [0, fs/2] into: 2, 3, 4, 6, 8, ..."""
    counts, k = [], 1
    while True:
        for n in (2**k, 3 * 2 ** (k - 1)) if k > 1 else (2,):
            if sample_rate / 2 / n >= min_band_hz:
                counts.append(n)
        if sample_rate / 2 / 2**k < min_band_hz:
            return sorted(set(counts))
        k += 1


def spectral_kurtosis(z: np.ndarray) -> np.ndarray:
    """SK of complex envelopes along the last axis."""
    power = z.real**2 + z.imag**2
    n = power.shape[-1]
    mean = power.sum(axis=-1) / n
    return np.asarray(np.einsum("...i,...i->...", power, power) / n / np.maximum(mean**2, 1e-300) - 2.0)


def most_impulsive_band(
    spectrum: np.ndarray, sample_rate: float, min_band_hz: float, min_band_share: float
) -> tuple[int, int, float]:
    """(first bin, end bin, SK) of the band with the largest spectral kurtosis among
    those with at least ``min_band_share`` of the energy, from a one-sided ``rfft``."""
    half = spectrum.size - 1  # bins up to Nyquist (the last one left out)
    power = spectrum[:half].real ** 2 + spectrum[:half].imag ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    least = min_band_share * max(float(cumulative[-1]), 1e-300)
    best = (0, half, -math.inf)
    for n in band_counts(sample_rate, min_band_hz):
        width = half // n
        if width < 8:
            continue
        starts = np.arange(n) * width
        energy = cumulative[starts + width] - cumulative[starts]
        candidates = np.flatnonzero(energy >= least)  # only these are demodulated: the costly step
        if candidates.size == 0:
            continue
        bands = spectrum[: n * width].reshape(n, width)[candidates]
        sk = spectral_kurtosis(fft.ifft(bands, axis=1))
        i = int(np.argmax(sk))
        if sk[i] > best[2]:
            band = int(candidates[i])
            best = (band * width, (band + 1) * width, float(sk[i]))
    return best if math.isfinite(best[2]) else (0, half, 0.0)  # a silent window: the whole band


def envelope_spectrum(
    spectrum: np.ndarray,
    sample_rate: float,
    n_samples: int,
    min_band_hz: float = 1000.0,
    max_envelope_hz: float = 1000.0,
    min_band_share: float = 0.01,
) -> EnvelopeSpectrum:
    """The squared-envelope spectrum of the most impulsive band of a window, from its
    one-sided ``rfft``; frequencies up to ``max_envelope_hz``."""
    low, high, sk = most_impulsive_band(spectrum, sample_rate, min_band_hz, min_band_share)
    duration = n_samples / sample_rate
    m = max(high - low, math.ceil(2 * max_envelope_hz * duration) + 2)
    squared = np.abs(fft.ifft(spectrum[low:high], n=m)) ** 2
    mean = float(squared.mean())
    lines = np.abs(fft.rfft(squared - mean)) * 2 / (m * max(mean, 1e-300))
    keep = min(lines.size, int(max_envelope_hz * duration) + 1)
    step = sample_rate / n_samples
    return EnvelopeSpectrum(
        frequencies=np.arange(keep) / duration,
        amplitudes=lines[:keep],
        band=(low * step, high * step),
        kurtosis=sk,
    )
