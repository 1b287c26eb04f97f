"""Blocks of samples from a live sensor to the windows a model judges, with the checks a
stream needs: nothing is dropped without an alarm, and no window spans a gap.

A sensor gateway sends blocks (a few hundred to a few thousand samples each), perhaps
numbered (``seq``) and time-stamped (``t0``: the time of the block's first sample).
``Windower`` keeps the samples since the last window and cuts a window of ``length``
samples every ``hop`` samples. It raises, as ``StationEvent`` alarms:

- ``sensor-gap``: a block whose ``seq`` is not the next, or whose ``t0`` is not where
  the previous block ended (beyond half a block or two samples of jitter); the samples
  held are discarded (a window across the gap would mix two moments of the machine)
  and windows start again at the new block; cleared by the next block in order;
- ``sensor-late``: a block whose last sample is older than ``late_s`` when it arrives
  (the gateway or the network is behind); its samples are still used; cleared by the
  next block on time;
- ``sensor-rate``: a block declaring another sample rate than the station's, or holding
  non-finite samples: refused (counted in the alarm), and treated as a gap.

Window times are absolute (epoch seconds of the first sample) when the blocks carry
``t0``, else counted from the first block's arrival.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from huoyan.core.models import SignalWindow
from huoyan.core.records import Severity

Alarm = Callable[[str, Severity, str, bool], None]  # kind, severity, message, active

GAP, LATE, RATE = "sensor-gap", "sensor-late", "sensor-rate"


@dataclass
class Block:
    samples: np.ndarray
    arrived: float  # epoch seconds
    t0: float | None = None
    seq: int | None = None
    rate: float | None = None
    rpm: float | None = None


@dataclass
class Windower:
    length: int  # samples per window
    hop: int  # samples between window starts
    rate: float  # Hz
    channel: str
    source: str
    alarm: Alarm
    rpm: float | None = None
    late_s: float = 2.0
    _held: np.ndarray = field(default_factory=lambda: np.empty(0))
    _held_start: float = 0.0  # time of the first held sample
    _next_t0: float | None = None  # where the next block should start
    _next_seq: int | None = None
    _active: set[str] = field(default_factory=set)
    refused: int = 0

    def _raise(self, kind: str, message: str) -> None:
        self._active.add(kind)
        self.alarm(kind, Severity.ALARM, message, True)

    def _clear(self, kind: str, message: str) -> None:
        if kind in self._active:
            self._active.discard(kind)
            self.alarm(kind, Severity.INFO, message, False)

    def _restart(self) -> None:
        self._held = np.empty(0)
        self._next_t0 = None

    def add(self, block: Block) -> list[SignalWindow]:
        """The windows completed by ``block`` (alarms raised on the way)."""
        samples = np.asarray(block.samples, dtype=np.float64).ravel()
        if block.rate is not None and abs(block.rate - self.rate) > 1e-6 * self.rate:
            return self._refuse(block, f"a block at {block.rate:g} Hz, but this station expects {self.rate:g} Hz")
        if samples.size == 0 or not np.isfinite(samples).all():
            return self._refuse(block, "a block with non-finite samples (NaN or inf), or none")
        t0 = block.t0 if block.t0 is not None else (self._next_t0 if self._next_t0 is not None else block.arrived)
        gap = self._gap(block, t0, samples.size)
        if gap is not None:
            self._raise(GAP, f"{self.source}: {gap}; windows start again after it")
            self._restart()
        elif self._held.size or self._next_t0 is not None:
            self._clear(GAP, f"{self.source}: blocks in order again")
        duration = samples.size / self.rate
        behind = block.arrived - (t0 + duration)
        self._clear(RATE, f"{self.source}: blocks at {self.rate:g} Hz again")
        if block.t0 is not None and behind > self.late_s:
            self._raise(LATE, f"{self.source}: a block arrived {behind:.1f} s after its last sample")
        else:
            self._clear(LATE, f"{self.source}: blocks on time again")
        if block.seq is not None:
            self._next_seq = block.seq + 1
        if not self._held.size:
            self._held_start = t0
        self._held = np.concatenate([self._held, samples])
        self._next_t0 = t0 + duration
        return self._cut(block.rpm if block.rpm is not None else self.rpm)

    def _gap(self, block: Block, t0: float, n: int) -> str | None:
        if block.seq is not None and self._next_seq is not None and block.seq != self._next_seq:
            return f"block {block.seq} came after block {self._next_seq - 1}"
        if block.t0 is not None and self._next_t0 is not None:
            jitter = max(2 / self.rate, 0.5 * n / self.rate)
            if abs(t0 - self._next_t0) > jitter:
                return f"a block starts {t0 - self._next_t0:+.3f} s from where the last one ended"
        return None

    def _refuse(self, block: Block, why: str) -> list[SignalWindow]:
        self.refused += 1
        self._raise(RATE, f"{self.source}: refused {why} ({self.refused} refused so far)")
        self._restart()
        self._next_seq = None if block.seq is None else block.seq + 1
        return []

    def _cut(self, rpm: float | None) -> list[SignalWindow]:
        out = []
        while self._held.size >= self.length:
            out.append(
                SignalWindow(
                    samples=self._held[: self.length].copy(),
                    sample_rate=self.rate,
                    start_s=self._held_start,
                    source=self.source,
                    channel=self.channel,
                    rpm=rpm,
                )
            )
            self._held = self._held[self.hop :]
            self._held_start += self.hop / self.rate
        return out
