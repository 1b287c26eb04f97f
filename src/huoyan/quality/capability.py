"""Process capability (Cp, Cpk) and performance (Pp, Ppk) against specification limits.

Cp and Cpk use the within-subgroup sigma (short-term: the moving range, R-bar or s-bar of
the control chart, ``within_sigma``); Pp and Ppk the overall sample standard deviation
(long-term). Confidence intervals assume normal data (NIST/SEMATECH e-Handbook 6.1.6;
Montgomery 8.3.5), with n - 1 degrees of freedom for both sigmas:

* Cp, Pp: exact, from the chi-square distribution of the variance;
* Cpk, Ppk: Bissell's (1990) normal approximation, C +/- z * sqrt(1/(9n) + C^2/(2(n-1))).

With one specification limit only, Cp and Pp are undefined and Cpk / Ppk are the one-sided
index (Cpu or Cpl).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from huoyan.core.text import Message
from huoyan.quality import constants as K
from huoyan.quality.charts import ChartError, Limits


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Capability:
    n: int
    mean: float
    sigma_within: float
    sigma_overall: float
    lsl: float | None
    usl: float | None
    confidence: float
    cp: Interval | None
    cpk: Interval
    pp: Interval | None
    ppk: Interval
    #: parts per million outside the specification: observed, and expected from the normal
    #: model with each sigma
    ppm_observed: float | None  # None where only summary statistics were given
    ppm_expected_within: float
    ppm_expected_overall: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def within_sigma(limits: Limits) -> float:
    """The short-term sigma of individual values that a variables chart's limits use."""
    p = limits.params
    if limits.chart == "imr":
        return p["mr_bar"] / K.d2(2)
    if limits.chart == "xbar-r":
        return p["r_bar"] / K.d2(int(p["n"]))
    if limits.chart in ("xbar-s", "ewma", "cusum"):
        return p["sigma"]
    raise ChartError(Message("a {chart} chart has no within-subgroup sigma of a measured value", chart=limits.chart))


def ratio_interval(value: float, n: int, confidence: float) -> Interval:
    """Cp / Pp: (USL - LSL) / 6 sigma scales with 1/sigma, so its interval is exact."""
    alpha = 1 - confidence
    dof = n - 1
    return Interval(
        value,
        value * math.sqrt(stats.chi2.ppf(alpha / 2, dof) / dof),
        value * math.sqrt(stats.chi2.ppf(1 - alpha / 2, dof) / dof),
    )


def k_interval(value: float, n: int, confidence: float) -> Interval:
    """Cpk / Ppk: Bissell's approximation."""
    z = float(stats.norm.ppf(1 - (1 - confidence) / 2))
    half = z * math.sqrt(1 / (9 * n) + value**2 / (2 * (n - 1)))
    return Interval(value, value - half, value + half)


def _expected_ppm(mean: float, sigma: float, lsl: float | None, usl: float | None) -> float:
    below = stats.norm.cdf(lsl, mean, sigma) if lsl is not None else 0.0
    above = stats.norm.sf(usl, mean, sigma) if usl is not None else 0.0
    return float((below + above) * 1e6)


def capability(
    values: Sequence[float],
    *,
    lsl: float | None = None,
    usl: float | None = None,
    sigma_within: float | None = None,
    confidence: float = 0.95,
) -> Capability:
    """Indices of ``values`` against the specification; the within sigma defaults to the
    moving range of the values in time order (an individuals chart)."""
    x = np.asarray(list(values), dtype=np.float64)
    if x.size < 2 or not np.isfinite(x).all():
        raise ChartError(Message("capability needs at least 2 finite values"))
    within = float(sigma_within) if sigma_within is not None else float(np.abs(np.diff(x)).mean() / K.d2(2))
    outside = np.zeros(x.size, dtype=bool)
    if lsl is not None:
        outside |= x < lsl
    if usl is not None:
        outside |= x > usl
    return capability_of(
        int(x.size),
        float(x.mean()),
        float(x.std(ddof=1)),
        within,
        lsl=lsl,
        usl=usl,
        confidence=confidence,
        observed_outside=float(outside.mean()),
    )


def capability_of(
    n: int,
    mean: float,
    sigma_overall: float,
    sigma_within: float,
    *,
    lsl: float | None = None,
    usl: float | None = None,
    confidence: float = 0.95,
    observed_outside: float | None = None,
) -> Capability:
    """Indices from summary statistics (what a database aggregates of a month of parts)."""
    if lsl is None and usl is None:
        raise ChartError(Message("capability needs a specification: give LSL, USL or both"))
    if lsl is not None and usl is not None and not lsl < usl:
        raise ChartError(
            Message(
                "the lower specification limit ({lsl}) must be below the upper ({usl})",
                lsl=format(lsl, "g"),
                usl=format(usl, "g"),
            )
        )
    if not 0 < confidence < 1:
        raise ChartError(Message("confidence must be between 0 and 1"))
    if n < 2:
        raise ChartError(Message("capability needs at least 2 values"))
    if sigma_overall <= 0 or sigma_within <= 0:
        raise ChartError(Message("the values do not vary; capability is undefined"))

    def indices(sigma: float) -> tuple[Interval | None, Interval]:
        spread = None
        if lsl is not None and usl is not None:
            spread = ratio_interval((usl - lsl) / (6 * sigma), n, confidence)
        sides = [(usl - mean) / (3 * sigma)] if usl is not None else []
        sides += [(mean - lsl) / (3 * sigma)] if lsl is not None else []
        return spread, k_interval(min(sides), n, confidence)

    cp, cpk = indices(sigma_within)
    pp, ppk = indices(sigma_overall)
    return Capability(
        n=n,
        mean=mean,
        sigma_within=sigma_within,
        sigma_overall=sigma_overall,
        lsl=lsl,
        usl=usl,
        confidence=confidence,
        cp=cp,
        cpk=cpk,
        pp=pp,
        ppk=ppk,
        ppm_observed=None if observed_outside is None else observed_outside * 1e6,
        ppm_expected_within=_expected_ppm(mean, sigma_within, lsl, usl),
        ppm_expected_overall=_expected_ppm(mean, sigma_overall, lsl, usl),
    )
