"""Drift of the model's view of the line: recent OK scores against a reference distribution.

The reference is the active model's calibration distribution (the scores of held-out good
parts, kept in the model card as quantiles) or, for a model without them, a baseline window
of the first OK scores it gave on the line. Three views of the same comparison:

* **PSI** (population stability index) over the reference's deciles: < 0.1 stable,
  0.1-0.25 a moderate shift, > 0.25 a significant one (the credit-scoring convention);
* **Kolmogorov-Smirnov**: the largest gap between the two distribution functions, with
  its p-value (exact for a known reference, approximate for an estimated one);
* **rank-normalised EWMA**: each score becomes z = Phi^-1(F_ref(score)), standard normal
  whatever the scores' own shape while the line matches the reference, and an EWMA chart of
  subgroup means of z with fixed limits (target 0, sigma 1) watches for a shift. Because z
  is normal by construction, the chart's in-control run length is the textbook one for
  normal data, on skewed score distributions too (bench/quality.py measures it).

OK scores are the scores at or below the threshold, so the reference is truncated at the
threshold too: F_ref(x) = F(x) / F(threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import special, stats

from huoyan.core.calibration import QUANTILE_LEVELS
from huoyan.core.text import Message
from huoyan.quality.charts import Chart, ChartError, Limits, ewma_chart, ewma_spread

ArrayF = np.ndarray[Any, np.dtype[np.float64]]

LEVELS = QUANTILE_LEVELS
#: EWMA design: lambda 0.1 with L = 2.814 gives an in-control average run length of 500
#: subgroups for normal data (Lucas and Saccucci 1990, Montgomery table 9.11); subgroups
#: of 5 consecutive OK parts.
LAMBDA = 0.1
WIDTH = 2.814
SUBGROUP = 5
#: A model whose card keeps no calibration scores is compared with its first OK scores on
#: the line, this many: fewer would make the reference itself too uncertain (see ``drift_spread``).
BASELINE = 1000
PSI_BINS = 10
PSI_ALPHA = 0.01
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25


@dataclass(frozen=True)
class Reference:
    """A reference distribution of OK scores, as a monotone distribution function."""

    values: ArrayF  # increasing
    levels: ArrayF  # F at those values
    size: int  # how many scores it was estimated from
    threshold: float | None = None

    @classmethod
    def of_scores(cls, scores: Sequence[float] | ArrayF, threshold: float | None = None) -> Reference:
        x = np.sort(np.asarray(scores, dtype=np.float64))
        if x.size < 10 or not np.isfinite(x).all():
            raise ChartError(Message("a drift reference needs at least 10 finite scores"))
        return cls._build(x, (np.arange(1, x.size + 1) - 0.5) / x.size, x.size, threshold)

    @classmethod
    def of_quantiles(cls, quantiles: Sequence[float], size: int, threshold: float | None = None) -> Reference:
        q = np.asarray(quantiles, dtype=np.float64)
        if q.size != LEVELS.size or np.any(np.diff(q) < 0):
            raise ChartError(Message("a drift reference needs {count} increasing quantiles", count=LEVELS.size))
        return cls._build(q, LEVELS.copy(), size, threshold)

    @classmethod
    def _build(cls, values: ArrayF, levels: ArrayF, size: int, threshold: float | None) -> Reference:
        # Ties (a flat stretch of scores) keep their largest level, so F stays a function.
        unique, last = np.unique(values[::-1], return_index=True)
        keep_levels = levels[::-1][last]
        return cls(unique, keep_levels, size, threshold)

    def cdf(self, x: ArrayF) -> ArrayF:
        """F_ref, linear between the known points, truncated at the threshold, and kept
        half a reference point away from 0 and 1 so that z stays finite."""
        edge = 0.5 / (self.size + 1)
        u = np.interp(x, self.values, self.levels, left=edge, right=1 - edge)
        if self.threshold is not None:
            top = float(np.interp(self.threshold, self.values, self.levels, left=edge, right=1.0))
            u = u / max(top, edge)
        return np.clip(u, edge, 1 - edge)

    def normalise(self, scores: Sequence[float] | ArrayF) -> ArrayF:
        """z = Phi^-1(F_ref(score)): standard normal while the scores match the reference."""
        return np.asarray(special.ndtri(self.cdf(np.asarray(scores, dtype=np.float64))), dtype=np.float64)


def psi(reference: Reference, recent: Sequence[float] | ArrayF, bins: int = PSI_BINS) -> float:
    """Population stability index of ``recent`` over the reference's equal-probability bins."""
    x = np.asarray(recent, dtype=np.float64)
    if x.size == 0:
        raise ChartError(Message("PSI needs recent scores"))
    u = reference.cdf(x)
    counts = np.histogram(u, bins=np.linspace(0.0, 1.0, bins + 1))[0]
    # Half a part added to every bin (Laplace smoothing): an empty bin would make the index
    # infinite, and a tiny floor would let one empty bin of a small sample dominate it.
    observed = (counts + 0.5) / (x.size + 0.5 * bins)
    expected = np.full(bins, 1.0 / bins)
    return float(np.sum((observed - expected) * np.log(observed / expected)))


@dataclass(frozen=True)
class KsTest:
    statistic: float
    p_value: float


def ks(reference: Reference, recent: Sequence[float] | ArrayF) -> KsTest:
    """One-sample Kolmogorov-Smirnov test of ``recent`` against the reference."""
    x = np.asarray(recent, dtype=np.float64)
    if x.size == 0:
        raise ChartError(Message("the KS test needs recent scores"))
    result = stats.kstest(reference.cdf(x), "uniform")
    return KsTest(float(result.statistic), float(result.pvalue))


def rank_ewma(
    reference: Reference,
    recent: Sequence[float] | ArrayF,
    *,
    subgroup: int = SUBGROUP,
    lam: float = LAMBDA,
    width: float = WIDTH,
) -> Chart:
    """EWMA chart of the subgroup means of rank-normalised scores, on fixed limits."""
    z = reference.normalise(recent)
    whole = z.size // subgroup
    if whole == 0:
        raise ChartError(Message("the drift chart needs at least one subgroup of {subgroup} scores", subgroup=subgroup))
    groups = z[: whole * subgroup].reshape(whole, subgroup) if subgroup > 1 else z[:, None]
    frozen = Limits("ewma", {"target": 0.0, "sigma": 1.0, "lambda": lam, "L": width}, points=reference.size)
    data: Sequence[Any] = groups.tolist() if subgroup > 1 else z.tolist()
    (chart,) = ewma_chart(data, lam=lam, width=width, frozen=frozen)
    spread = drift_spread(lam, subgroup, np.arange(1, whole + 1), reference.size)
    return replace(chart, lcl=-width * spread, ucl=width * spread, sigma=spread)


def drift_spread(lam: float, subgroup: int, step: Any, reference_size: int) -> ArrayF:
    """Standard deviation of the drift EWMA at each step: the EWMA's own, plus that of the
    reference's estimation error. A reference estimated from m scores shifts the mean of
    the normalised scores by an amount whose variance is 1/m (Hoeffding's identity applied
    to the empirical distribution function); left out, the chart would alarm too often on
    a line that matches the reference (with m = 300, 2 of 6 seeds alarmed within 300 subgroups)."""
    own = ewma_spread(lam, 1.0 / np.sqrt(subgroup), step)
    extra = 1.0 / reference_size if reference_size > 0 else 0.0
    return np.sqrt(own**2 + extra)


@dataclass(frozen=True)
class Drift:
    psi: float
    ks: KsTest
    chart: Chart
    n: int

    @property
    def alarm(self) -> bool:
        """The EWMA is outside its limits at the latest subgroup."""
        return bool(self.chart.beyond()[-1])

    @property
    def psi_beyond_noise(self) -> bool:
        """Whether the PSI is more than a sample of this size shows by chance: n * PSI is
        about chi-square with bins - 1 degrees of freedom on an unchanged line, so a PSI of
        0.15 from 100 scores is noise while from 2000 it is not."""
        return self.psi * self.n > float(stats.chi2.ppf(1 - PSI_ALPHA, PSI_BINS - 1))

    @property
    def level(self) -> str:
        """'drift' when the EWMA alarms or the PSI is significant (> 0.25), 'watch' for a
        moderate PSI (> 0.1), 'stable' otherwise; a PSI within its sampling noise counts for nothing."""
        if self.alarm or (self.psi > PSI_SIGNIFICANT and self.psi_beyond_noise):
            return "drift"
        return "watch" if self.psi > PSI_MODERATE and self.psi_beyond_noise else "stable"


def drift(reference: Reference, recent: Sequence[float] | ArrayF, *, subgroup: int = SUBGROUP) -> Drift:
    x = np.asarray(recent, dtype=np.float64)
    return Drift(psi(reference, x), ks(reference, x), rank_ewma(reference, x, subgroup=subgroup), int(x.size))


class DriftMonitor:
    """The rank-normalised EWMA, one OK score at a time, for a station: the same statistic
    and limits as ``rank_ewma`` (a test holds them equal), with its state in memory."""

    def __init__(
        self, reference: Reference, *, subgroup: int = SUBGROUP, lam: float = LAMBDA, width: float = WIDTH
    ) -> None:
        self.reference = reference
        self.subgroup = subgroup
        self.lam = lam
        self.width = width
        self.ewma = 0.0
        self.steps = 0
        self.out = False
        self._pending: list[float] = []

    def add(self, score: float) -> bool | None:
        """Feed one OK score; True when the EWMA leaves its limits, False when it comes
        back inside, None when nothing changed."""
        self._pending.append(float(self.reference.normalise([score])[0]))
        if len(self._pending) < self.subgroup:
            return None
        mean = float(np.mean(self._pending))
        self._pending.clear()
        self.steps += 1
        self.ewma = self.lam * mean + (1 - self.lam) * self.ewma
        limit = self.width * float(drift_spread(self.lam, self.subgroup, self.steps, self.reference.size))
        out = abs(self.ewma) > limit
        if out == self.out:
            return None
        self.out = out
        return out
