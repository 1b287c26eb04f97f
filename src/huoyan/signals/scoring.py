"""How far a window's features lie from healthy running, and the healthy scores the
threshold is calibrated on.

The distance is the Mahalanobis distance of the standardised features, divided by
the square root of their number (so that healthy windows score about 1 whatever the
feature count), with a Ledoit-Wolf shrunk covariance or a diagonal one.

Calibration needs healthy scores from windows the scorer did not learn from, and a
few seconds of healthy running give only a few dozen windows: holding a share out
would leave too few to fit on and too few to calibrate with. So the scores are
cross-fitted (CV+, Barber et al., "Predictive inference with the jackknife+", Ann.
Statist. 49 (2021)): each recording is cut into ``folds`` blocks in time, each
block's windows are scored by a scorer fitted on the windows that do not overlap
that block (overlapping windows would leak), and the final scorer is fitted on all.
The final scorer has seen more healthy running than any fold's, so its healthy
scores tend to be lower than the cross-fitted ones: the threshold errs on the side
of fewer false alarms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.covariance import LedoitWolf

from huoyan.core.models import SignalWindow

SCORERS = ("ledoit-wolf", "diagonal")
SCALE_FLOOR = 1e-3  # a feature steadier than this in healthy running is not trusted to be that steady


@dataclass(frozen=True, slots=True)
class HealthyModel:
    """Healthy running as the scorer holds it: standardisation and the precision matrix."""

    mean: np.ndarray
    scale: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, scorer: str) -> HealthyModel:
        mean = features.mean(axis=0)
        scale = np.maximum(features.std(axis=0), SCALE_FLOOR)
        z = (features - mean) / scale
        if scorer == "ledoit-wolf":
            precision = np.asarray(LedoitWolf(assume_centered=True).fit(z).precision_)
        elif scorer == "diagonal":
            precision = np.eye(features.shape[1])
        else:
            raise ValueError(f"scorer must be one of {', '.join(SCORERS)}")
        return cls(mean, scale, precision)

    def distance(self, features: np.ndarray) -> np.ndarray:
        z = (features - self.mean) / self.scale
        d2 = np.einsum("ij,jk,ik->i", z, self.precision, z)
        return np.asarray(np.sqrt(np.maximum(d2, 0.0) / z.shape[1]))


def time_blocks(windows: Sequence[SignalWindow], folds: int) -> list[np.ndarray]:
    """Per fold, the indices of the windows that start in its block of each recording."""
    blocks: list[list[int]] = [[] for _ in range(folds)]
    by_source: dict[str, list[int]] = {}
    for i, w in enumerate(windows):
        by_source.setdefault(w.source, []).append(i)
    for idx in by_source.values():
        starts = np.array([windows[i].start_s for i in idx])
        span = starts.max() - starts.min()
        which = np.minimum(((starts - starts.min()) / (span if span > 0 else 1) * folds).astype(int), folds - 1)
        for i, b in zip(idx, which, strict=True):
            blocks[b].append(i)
    return [np.array(b, dtype=int) for b in blocks if b]


def cross_fitted_scores(
    windows: Sequence[SignalWindow], features: np.ndarray, scorer: str, folds: int, min_fit: int
) -> np.ndarray:
    """Each window's score from a scorer fitted without the windows that overlap its block."""
    ends = np.array([w.start_s + w.samples.size / w.sample_rate for w in windows])
    starts = np.array([w.start_s for w in windows])
    sources = np.array([w.source for w in windows])
    scores = np.full(len(windows), np.nan)
    for block in time_blocks(windows, folds):
        overlaps = np.zeros(len(windows), dtype=bool)
        for source in set(sources[block]):
            mine = block[sources[block] == source]
            lo, hi = starts[mine].min(), ends[mine].max()
            overlaps |= (sources == source) & (ends > lo) & (starts < hi)
        train = np.flatnonzero(~overlaps)
        if train.size < min_fit:
            raise ValueError(
                f"at least {min_fit} healthy windows outside each of {folds} time blocks are needed "
                f"({train.size} outside one): record longer, or shorten window_s or hop_s"
            )
        scores[block] = HealthyModel.fit(features[train], scorer).distance(features[block])
    return scores
