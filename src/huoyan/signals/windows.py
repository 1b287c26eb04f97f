"""Cutting a recording into the windows a detector scores (length and hop in seconds)."""

from __future__ import annotations

from collections.abc import Iterator

from huoyan.core.models import SignalWindow
from huoyan.signals.readers import Recording, SignalError


def window_samples(seconds: float, sample_rate: float) -> int:
    return max(1, round(seconds * sample_rate))


def windows(recording: Recording, length_s: float, hop_s: float | None = None) -> Iterator[SignalWindow]:
    """Windows of ``length_s`` every ``hop_s`` (default: no overlap); a tail shorter
    than a window is left out. A recording shorter than one window is an error."""
    if not length_s > 0 or (hop_s is not None and not hop_s > 0):
        raise SignalError(f"window length and hop must be positive (got {length_s}, {hop_s})")
    n = window_samples(length_s, recording.sample_rate)
    hop = window_samples(hop_s if hop_s is not None else length_s, recording.sample_rate)
    if recording.samples.size < n:
        raise SignalError(
            f"{recording.source}: {recording.seconds:.3g} s recorded, shorter than one {length_s:g} s window"
        )
    for start in range(0, recording.samples.size - n + 1, hop):
        yield SignalWindow(
            samples=recording.samples[start : start + n],
            sample_rate=recording.sample_rate,
            start_s=start / recording.sample_rate,
            source=recording.source,
            channel=recording.channel,
            rpm=recording.rpm,
        )
