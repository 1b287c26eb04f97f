"""Shewhart, EWMA and CUSUM control charts: the statistic, centre line and limits per point.

Each chart function takes the data (counts with their sample sizes, individual values or
subgroups) and returns one ``Chart`` per plotted series (I-MR, X-bar-R and X-bar-S give
two). Limits come from one of two places:

* **Phase I** (``frozen=None``): the parameters (p-bar, c-bar, the mean, sigma) are
  estimated from the data, leaving out the points in ``exclude`` (an assignable cause the
  user removed); every point is still charted.
* **Phase II** (``frozen=Limits``): the parameters come from limits frozen earlier
  (``Limits.params``, with the version and who froze them); nothing is re-estimated.

Formulas are Montgomery's (Introduction to Statistical Quality Control, chapters 6, 7 and
9) and the NIST/SEMATECH e-Handbook's (section 6.3); a lower limit that would fall below
zero on a count, proportion or dispersion chart is zero. ``sigma`` per point is the
standard deviation of the plotted statistic, which the zone rules use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
from scipy import signal

from huoyan.core.text import Message
from huoyan.quality import constants as K

ArrayF = np.ndarray[Any, np.dtype[np.float64]]

#: Charts whose points the zone and run rules apply to; range, moving-range and s charts,
#: EWMA and CUSUM are tested by rule 1 only (their points are not independent or not normal).
ZONE_RULES = "zones"
LIMITS_ONLY = "limits"


class ChartError(ValueError):
    """Data a chart cannot be computed from (the message says which value and why)."""


@dataclass(frozen=True)
class Limits:
    """The parameters a chart's limits are computed from, and where they came from."""

    chart: str
    params: dict[str, float]
    points: int  # how many points the estimate used
    version: int | None = None  # set when frozen (Phase II)
    frozen_by: str | None = None
    frozen_at: datetime | None = None

    @property
    def frozen(self) -> bool:
        return self.version is not None

    def freeze(self, version: int, by: str, at: datetime) -> Limits:
        return replace(self, version=version, frozen_by=by, frozen_at=at)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON, as ``from_dict`` reads it back."""
        return {
            "chart": self.chart,
            "params": dict(self.params),
            "points": self.points,
            "version": self.version,
            "frozen_by": self.frozen_by,
            "frozen_at": self.frozen_at.isoformat() if self.frozen_at else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Limits:
        """Limits from ``as_dict``'s JSON; KeyError, TypeError or ValueError if it is not that."""
        frozen_at = data.get("frozen_at")
        return cls(
            chart=str(data["chart"]),
            params={str(k): float(v) for k, v in data["params"].items()},
            points=int(data["points"]),
            version=data.get("version"),
            frozen_by=data.get("frozen_by"),
            frozen_at=datetime.fromisoformat(frozen_at) if frozen_at else None,
        )


@dataclass(frozen=True)
class Chart:
    """One plotted series: a statistic per point with its centre line and limits."""

    name: str
    statistic: ArrayF
    center: ArrayF
    lcl: ArrayF  # NaN where the chart has no lower limit
    ucl: ArrayF
    sigma: ArrayF  # standard deviation of the statistic at each point (NaN where none)
    limits: Limits
    rules: str = ZONE_RULES
    excluded: np.ndarray[Any, np.dtype[np.bool_]] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    #: CUSUM's lower side (-C-), charted against ``lcl``; None for other charts
    lower_statistic: ArrayF | None = None

    def __len__(self) -> int:
        return int(self.statistic.size)

    def beyond(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Points outside their limits (rule 1)."""
        with np.errstate(invalid="ignore"):
            out = (self.statistic > self.ucl) | (self.statistic < self.lcl)
            if self.lower_statistic is not None:
                out |= self.lower_statistic < self.lcl
        return np.asarray(out, dtype=bool)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready numbers (NaN becomes None)."""

        def clean(a: ArrayF | None) -> list[float | None] | None:
            return None if a is None else [None if not math.isfinite(v) else float(v) for v in a]

        return {
            "chart": self.name,
            "rules": self.rules,
            "statistic": clean(self.statistic),
            "lower_statistic": clean(self.lower_statistic),
            "center": clean(self.center),
            "lcl": clean(self.lcl),
            "ucl": clean(self.ucl),
            "sigma": clean(self.sigma),
            "excluded": [int(i) for i in np.flatnonzero(self.excluded)],
            "limits": self.limits.as_dict(),
        }


# -- input checks --------------------------------------------------------------------------


def _values(data: Iterable[float], what: Message) -> ArrayF:
    arr = np.asarray(list(data), dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ChartError(Message("{what}: no values", what=what))
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ChartError(Message("{what}: point {point} is not a finite number", what=what, point=int(bad[0])))
    return arr


def _counts(data: Iterable[float], what: Message) -> ArrayF:
    arr = _values(data, what)
    bad = np.flatnonzero(arr < 0)
    if bad.size:
        raise ChartError(
            Message(
                "{what}: point {point} is negative ({value})",
                what=what,
                point=int(bad[0]),
                value=format(arr[bad[0]], "g"),
            )
        )
    return arr


def _sizes(sizes: Iterable[float] | float, points: int) -> ArrayF:
    arr = np.full(points, float(sizes)) if isinstance(sizes, int | float) else _values(sizes, Message("sample sizes"))
    if arr.size != points:
        raise ChartError(Message("sample sizes: {given} given for {points} points", given=arr.size, points=points))
    bad = np.flatnonzero(arr <= 0)
    if bad.size:
        raise ChartError(
            Message(
                "sample sizes: point {point} has size {value}; sizes must be positive",
                point=int(bad[0]),
                value=format(arr[bad[0]], "g"),
            )
        )
    return arr


def _mask(exclude: Iterable[int], points: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    mask = np.zeros(points, dtype=bool)
    for i in exclude:
        if not 0 <= int(i) < points:
            raise ChartError(
                Message("exclude: point {i} does not exist (there are {points} points, from 0)", i=i, points=points)
            )
        mask[int(i)] = True
    if mask.all():
        raise ChartError(Message("exclude: every point is excluded; nothing is left to estimate the limits from"))
    return mask


def _params(frozen: Limits | None, chart: str, estimate: Callable[[], dict[str, float]]) -> dict[str, float]:
    if frozen is None:
        return estimate()
    if frozen.chart != chart:
        raise ChartError(
            Message("frozen limits are for a {frozen} chart, not {chart}", frozen=frozen.chart, chart=chart)
        )
    return dict(frozen.params)


def _limits(frozen: Limits | None, chart: str, params: dict[str, float], used: int) -> Limits:
    return frozen if frozen is not None else Limits(chart=chart, params=params, points=used)


def _full(value: float, points: int) -> ArrayF:
    return np.full(points, float(value))


def _shewhart(
    name: str,
    stat: ArrayF,
    center: ArrayF,
    sigma: ArrayF,
    limits: Limits,
    excluded: np.ndarray[Any, np.dtype[np.bool_]],
    *,
    floor: float | None = None,
    ceiling: float | None = None,
    rules: str = ZONE_RULES,
) -> Chart:
    lcl = center - 3 * sigma
    ucl = center + 3 * sigma
    if floor is not None:
        lcl = np.maximum(lcl, floor)
    if ceiling is not None:
        ucl = np.minimum(ucl, ceiling)
    return Chart(name, stat, center, lcl, ucl, sigma, limits, rules, excluded)


# -- attributes charts ---------------------------------------------------------------------


def p_chart(
    defectives: Sequence[float],
    sizes: Sequence[float] | float,
    *,
    exclude: Iterable[int] = (),
    frozen: Limits | None = None,
) -> list[Chart]:
    """Fraction nonconforming; limits vary with each sample's size."""
    d = _counts(defectives, Message("defectives"))
    n = _sizes(sizes, d.size)
    _no_more_than(d, n)
    mask = _mask(exclude, d.size)
    keep = ~mask
    params = _params(frozen, "p", lambda: {"p_bar": float(d[keep].sum() / n[keep].sum())})
    p_bar = params["p_bar"]
    sigma = np.sqrt(p_bar * (1 - p_bar) / n)
    limits = _limits(frozen, "p", params, int(keep.sum()))
    return [_shewhart("p", d / n, _full(p_bar, d.size), sigma, limits, mask, floor=0.0, ceiling=1.0)]


def np_chart(
    defectives: Sequence[float],
    size: float,
    *,
    exclude: Iterable[int] = (),
    frozen: Limits | None = None,
) -> list[Chart]:
    """Number nonconforming in samples of one constant size."""
    d = _counts(defectives, Message("defectives"))
    n = _sizes(size, d.size)
    if np.unique(n).size != 1:
        raise ChartError(Message("np chart: the sample size must be the same for every point (use a p chart)"))
    _no_more_than(d, n)
    mask = _mask(exclude, d.size)
    keep = ~mask
    params = _params(frozen, "np", lambda: {"p_bar": float(d[keep].sum() / n[keep].sum()), "n": float(n[0])})
    p_bar, size_n = params["p_bar"], params["n"]
    sigma = _full(math.sqrt(size_n * p_bar * (1 - p_bar)), d.size)
    limits = _limits(frozen, "np", params, int(keep.sum()))
    return [_shewhart("np", d, _full(size_n * p_bar, d.size), sigma, limits, mask, floor=0.0, ceiling=size_n)]


def c_chart(
    counts: Sequence[float],
    *,
    exclude: Iterable[int] = (),
    frozen: Limits | None = None,
) -> list[Chart]:
    """Nonconformities per inspection unit of constant size."""
    c = _counts(counts, Message("nonconformities"))
    mask = _mask(exclude, c.size)
    keep = ~mask
    params = _params(frozen, "c", lambda: {"c_bar": float(c[keep].mean())})
    c_bar = params["c_bar"]
    limits = _limits(frozen, "c", params, int(keep.sum()))
    return [_shewhart("c", c, _full(c_bar, c.size), _full(math.sqrt(c_bar), c.size), limits, mask, floor=0.0)]


def u_chart(
    counts: Sequence[float],
    sizes: Sequence[float] | float,
    *,
    exclude: Iterable[int] = (),
    frozen: Limits | None = None,
) -> list[Chart]:
    """Nonconformities per unit when the number of units varies."""
    c = _counts(counts, Message("nonconformities"))
    n = _sizes(sizes, c.size)
    mask = _mask(exclude, c.size)
    keep = ~mask
    params = _params(frozen, "u", lambda: {"u_bar": float(c[keep].sum() / n[keep].sum())})
    u_bar = params["u_bar"]
    limits = _limits(frozen, "u", params, int(keep.sum()))
    return [_shewhart("u", c / n, _full(u_bar, c.size), np.sqrt(u_bar / n), limits, mask, floor=0.0)]


def laney_p_chart(
    defectives: Sequence[float],
    sizes: Sequence[float] | float,
    *,
    exclude: Iterable[int] = (),
    frozen: Limits | None = None,
) -> list[Chart]:
    """Laney's p' chart (Quality Engineering 14(4), 2002): the p chart's limits widened by
    sigma_z, the between-sample variation of the standardised proportions measured by their
    mean moving range / d2(2). With sigma_z = 1 it is the p chart; for very large lots, where
    the ordinary limits are too tight to be useful, sigma_z > 1 widens them."""
    d = _counts(defectives, Message("defectives"))
    n = _sizes(sizes, d.size)
    _no_more_than(d, n)
    mask = _mask(exclude, d.size)
    keep = ~mask
    p = d / n

    def estimate() -> dict[str, float]:
        p_bar = float(d[keep].sum() / n[keep].sum())
        if not 0 < p_bar < 1:
            raise ChartError(Message("Laney p' chart: the proportion is 0 or 1 in every kept sample; nothing varies"))
        z = (p[keep] - p_bar) / np.sqrt(p_bar * (1 - p_bar) / n[keep])
        if z.size < 2:
            raise ChartError(Message("Laney p' chart: needs at least 2 kept points for a moving range"))
        return {"p_bar": p_bar, "sigma_z": float(np.abs(np.diff(z)).mean() / K.d2(2))}

    params = _params(frozen, "laney-p", estimate)
    p_bar, sigma_z = params["p_bar"], params["sigma_z"]
    sigma = np.sqrt(p_bar * (1 - p_bar) / n) * sigma_z
    limits = _limits(frozen, "laney-p", params, int(keep.sum()))
    return [_shewhart("laney-p", p, _full(p_bar, d.size), sigma, limits, mask, floor=0.0, ceiling=1.0)]


def _no_more_than(defectives: ArrayF, sizes: ArrayF) -> None:
    bad = np.flatnonzero(defectives > sizes)
    if bad.size:
        i = int(bad[0])
        raise ChartError(
            Message(
                "point {i}: {defectives} nonconforming in a sample of {size}",
                i=i,
                defectives=format(defectives[i], "g"),
                size=format(sizes[i], "g"),
            )
        )


# -- variables charts ----------------------------------------------------------------------


def imr_chart(
    values: Sequence[float],
    *,
    exclude: Iterable[int] = (),
    frozen: Limits | None = None,
) -> list[Chart]:
    """Individuals and moving range (span 2); sigma = mean moving range / d2(2)."""
    x = _values(values, Message("values"))
    if x.size < 2:
        raise ChartError(Message("I-MR chart: needs at least 2 values"))
    mask = _mask(exclude, x.size)
    keep = ~mask
    mr = np.r_[np.nan, np.abs(np.diff(x))]
    # A moving range touching an excluded point measures the assignable cause, not the process.
    mr_keep = keep & np.r_[False, keep[:-1]]

    def estimate() -> dict[str, float]:
        if not mr_keep.any():
            raise ChartError(Message("I-MR chart: no two consecutive kept values to take a moving range from"))
        return {"mean": float(x[keep].mean()), "mr_bar": float(mr[mr_keep].mean())}

    params = _params(frozen, "imr", estimate)
    mean, mr_bar = params["mean"], params["mr_bar"]
    sigma = mr_bar / K.d2(2)
    limits = _limits(frozen, "imr", params, int(keep.sum()))
    individuals = _shewhart("i", x, _full(mean, x.size), _full(sigma, x.size), limits, mask)
    mr_sigma = _full(K.d3(2) * sigma, x.size)
    mr_sigma[0] = np.nan
    center = _full(mr_bar, x.size)
    center[0] = np.nan
    moving = _shewhart("mr", mr, center, mr_sigma, limits, mask, floor=0.0, rules=LIMITS_ONLY)
    moving = replace(moving, lcl=np.where(np.isnan(mr), np.nan, 0.0), ucl=center * K.d4_factor(2))
    return [individuals, moving]


@dataclass(frozen=True)
class Subgroups:
    """What the variables charts need of each subgroup: its size, mean and standard
    deviation, and its range where known. Built from the values (``of``) or from sums a
    database computed (``of_sums``), so that a chart of a month of parts never loads them."""

    n: ArrayF
    mean: ArrayF
    sd: ArrayF
    range: ArrayF | None = None

    def __len__(self) -> int:
        return int(self.n.size)

    @classmethod
    def of(cls, groups: Sequence[Sequence[float]]) -> Subgroups:
        arrays = []
        for i, group in enumerate(groups):
            arr = np.asarray(list(group), dtype=np.float64)
            if arr.size < 2:
                raise ChartError(
                    Message("subgroup {i} has {given} value(s); subgroups need at least 2", i=i, given=arr.size)
                )
            if not np.isfinite(arr).all():
                raise ChartError(Message("subgroup {i} holds a value that is not a finite number", i=i))
            arrays.append(arr)
        if not arrays:
            raise ChartError(Message("no subgroups"))
        return cls(
            n=np.array([a.size for a in arrays], dtype=np.float64),
            mean=np.array([a.mean() for a in arrays]),
            sd=np.array([a.std(ddof=1) for a in arrays]),
            range=np.array([a.max() - a.min() for a in arrays]),
        )

    @classmethod
    def of_sums(
        cls,
        n: Sequence[float],
        total: Sequence[float],
        squares: Sequence[float],
        low: Sequence[float] | None = None,
        high: Sequence[float] | None = None,
    ) -> Subgroups:
        count = np.asarray(n, dtype=np.float64)
        if count.size == 0:
            raise ChartError(Message("no subgroups"))
        small = np.flatnonzero(count < 2)
        if small.size:
            raise ChartError(
                Message(
                    "subgroup {subgroup} has {count} value(s); subgroups need at least 2",
                    subgroup=int(small[0]),
                    count=format(count[small[0]], "g"),
                )
            )
        mean = np.asarray(total, dtype=np.float64) / count
        # sum of squares about the mean; rounding can take a constant group a hair below 0
        ss = np.maximum(np.asarray(squares, dtype=np.float64) - count * mean**2, 0.0)
        spread = None
        if low is not None and high is not None:
            spread = np.asarray(high, dtype=np.float64) - np.asarray(low, dtype=np.float64)
        return cls(count, mean, np.sqrt(ss / (count - 1)), spread)


def _summary(subgroups: Sequence[Sequence[float]] | Subgroups) -> Subgroups:
    return subgroups if isinstance(subgroups, Subgroups) else Subgroups.of(subgroups)


def xbar_r_chart(
    subgroups: Sequence[Sequence[float]] | Subgroups,
    *,
    exclude: Iterable[int] = (),
    frozen: Limits | None = None,
) -> list[Chart]:
    """Subgroup means and ranges, subgroups of one size; sigma = R-bar / d2(n)."""
    groups = _summary(subgroups)
    sizes = sorted({int(k) for k in groups.n})
    if len(sizes) != 1:
        raise ChartError(
            Message("X-bar-R chart: subgroups must have one size (found {sizes}); use X-bar-S", sizes=sizes)
        )
    if groups.range is None:
        raise ChartError(Message("X-bar-R chart: the subgroups' ranges are not known; use X-bar-S"))
    n = sizes[0]
    means, ranges = groups.mean, groups.range
    mask = _mask(exclude, len(groups))
    keep = ~mask
    params = _params(
        frozen, "xbar-r", lambda: {"mean": float(means[keep].mean()), "r_bar": float(ranges[keep].mean()), "n": n}
    )
    mean, r_bar, size = params["mean"], params["r_bar"], int(params["n"])
    if size != n:
        raise ChartError(
            Message("X-bar-R chart: the frozen limits are for subgroups of {size}, these have {n}", size=size, n=n)
        )
    sigma = r_bar / K.d2(n)
    limits = _limits(frozen, "xbar-r", params, int(keep.sum()))
    points = len(groups)
    xbar = _shewhart("xbar", means, _full(mean, points), _full(sigma / math.sqrt(n), points), limits, mask)
    r = _shewhart("r", ranges, _full(r_bar, points), _full(K.d3(n) * sigma, points), limits, mask, rules=LIMITS_ONLY)
    r = replace(r, lcl=_full(K.d3_factor(n) * r_bar, points), ucl=_full(K.d4_factor(n) * r_bar, points))
    return [xbar, r]


def _pooled_sigma(groups: Subgroups, keep: np.ndarray[Any, np.dtype[np.bool_]]) -> float:
    """Sigma within subgroups: s-bar / c4(n) for one subgroup size (Montgomery 6.3.1), the
    pooled s weighted by degrees of freedom for varying sizes (Montgomery 6.3.2)."""
    n, sds = groups.n[keep], groups.sd[keep]
    if np.unique(n).size == 1:
        return float(sds.mean() / K.c4(int(n[0])))
    dof = n - 1
    return float(math.sqrt((dof * sds**2).sum() / dof.sum()))


def xbar_s_chart(
    subgroups: Sequence[Sequence[float]] | Subgroups,
    *,
    exclude: Iterable[int] = (),
    frozen: Limits | None = None,
) -> list[Chart]:
    """Subgroup means and standard deviations; each point's limits use its own n."""
    groups = _summary(subgroups)
    n, means, sds = groups.n, groups.mean, groups.sd
    mask = _mask(exclude, len(groups))
    keep = ~mask

    def estimate() -> dict[str, float]:
        grand = float((n[keep] * means[keep]).sum() / n[keep].sum())
        return {"mean": grand, "sigma": _pooled_sigma(groups, keep)}

    params = _params(frozen, "xbar-s", estimate)
    mean, sigma = params["mean"], params["sigma"]
    limits = _limits(frozen, "xbar-s", params, int(keep.sum()))
    points = len(groups)
    c4 = np.array([K.c4(int(k)) for k in n])
    xbar = _shewhart("xbar", means, _full(mean, points), sigma / np.sqrt(n), limits, mask)
    s_sigma = sigma * np.sqrt(1 - c4**2)
    s = _shewhart("s", sds, c4 * sigma, s_sigma, limits, mask, floor=0.0, rules=LIMITS_ONLY)
    return [xbar, s]


# -- time-weighted charts ------------------------------------------------------------------

Located = Sequence[float] | Sequence[Sequence[float]] | Subgroups


def _location(values: Located) -> tuple[ArrayF, ArrayF, Callable[[np.ndarray[Any, np.dtype[np.bool_]]], float]]:
    """Points to chart (values or subgroup means), their sizes, and an estimator of sigma
    for the individual value (moving range for individuals, pooled s for subgroups)."""
    first = None if isinstance(values, Subgroups) else next(iter(values), None)
    if isinstance(values, Subgroups) or isinstance(first, Sequence | np.ndarray):
        groups = _summary(values)  # type: ignore[arg-type]
        return groups.mean, groups.n, lambda keep: _pooled_sigma(groups, keep)
    x = _values(values, Message("values"))  # type: ignore[arg-type]

    def moving_range(keep: np.ndarray[Any, np.dtype[np.bool_]]) -> float:
        pairs = keep & np.r_[False, keep[:-1]]
        if not pairs.any():
            raise ChartError(Message("no two consecutive kept values to estimate sigma from; give sigma"))
        return float(np.abs(np.diff(x))[pairs[1:]].mean() / K.d2(2))

    return x, np.ones(x.size), moving_range


def ewma_chart(
    values: Located,
    *,
    lam: float = 0.2,
    width: float = 3.0,
    target: float | None = None,
    sigma: float | None = None,
    exclude: Iterable[int] = (),
    frozen: Limits | None = None,
) -> list[Chart]:
    """Exponentially weighted moving average z_i = lam * x_i + (1 - lam) * z_(i-1), z_0 =
    target, with the exact limits target +/- width * sigma / sqrt(n) *
    sqrt(lam / (2 - lam) * (1 - (1 - lam)^(2i))) (Montgomery 9.2), which approach the
    steady-state limits of the NIST handbook (6.3.2.4) after a few points. Without a
    target and sigma they are estimated from the kept points (mean; moving range or
    pooled s)."""
    if not 0 < lam <= 1:
        raise ChartError(Message("EWMA: lambda must be in (0, 1], got {lam}", lam=lam))
    if width <= 0:
        raise ChartError(Message("EWMA: the limit width L must be positive, got {width}", width=width))
    x, n, sigma_of = _location(values)
    mask = _mask(exclude, x.size)
    keep = ~mask
    params = _params(
        frozen,
        "ewma",
        lambda: {
            "target": float(target if target is not None else (n[keep] * x[keep]).sum() / n[keep].sum()),
            "sigma": float(sigma if sigma is not None else sigma_of(keep)),
            "lambda": lam,
            "L": width,
        },
    )
    return [_ewma_series(x, n, params, _limits(frozen, "ewma", params, int(keep.sum())), mask)]


def _ewma_series(
    x: ArrayF, n: ArrayF, params: dict[str, float], limits: Limits, mask: np.ndarray[Any, np.dtype[np.bool_]]
) -> Chart:
    target, sig, lam, width = params["target"], params["sigma"], params["lambda"], params["L"]
    if sig <= 0:
        raise ChartError(Message("EWMA: sigma must be positive (the values do not vary)"))
    # z_i = lam * x_i + (1 - lam) * z_(i-1), started at z_0 = target, as one linear filter
    z, _ = signal.lfilter([lam], [1.0, lam - 1.0], x, zi=[(1.0 - lam) * target])
    spread = ewma_spread(lam, sig / np.sqrt(n), np.arange(1, x.size + 1))
    center = _full(target, x.size)
    return Chart("ewma", z, center, center - width * spread, center + width * spread, spread, limits, LIMITS_ONLY, mask)


def ewma_spread(lam: float, sigma: ArrayF | float, step: np.ndarray[Any, Any] | int) -> ArrayF:
    """Standard deviation of the EWMA at step i (from 1) of values with standard deviation sigma."""
    return np.asarray(sigma * np.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * np.asarray(step)))), dtype=np.float64)


def cusum_chart(
    values: Located,
    *,
    k: float = 0.5,
    h: float = 5.0,
    target: float | None = None,
    sigma: float | None = None,
    exclude: Iterable[int] = (),
    frozen: Limits | None = None,
) -> list[Chart]:
    """Tabular CUSUM (Montgomery 9.1.2): C+_i = max(0, x_i - (target + K) + C+_(i-1)),
    C-_i = max(0, (target - K) - x_i + C-_(i-1)), with K = k * sigma_x and H = h * sigma_x
    (sigma_x = sigma / sqrt(n) for subgroup means). The chart plots C+ and -C- against
    +H and -H."""
    if k < 0 or h <= 0:
        raise ChartError(Message("CUSUM: k must be >= 0 and h > 0 (in sigmas), got k={k}, h={h}", k=k, h=h))
    x, n, sigma_of = _location(values)
    mask = _mask(exclude, x.size)
    keep = ~mask
    params = _params(
        frozen,
        "cusum",
        lambda: {
            "target": float(target if target is not None else (n[keep] * x[keep]).sum() / n[keep].sum()),
            "sigma": float(sigma if sigma is not None else sigma_of(keep)),
            "k": k,
            "h": h,
        },
    )
    mu, sig = params["target"], params["sigma"]
    if sig <= 0:
        raise ChartError(Message("CUSUM: sigma must be positive (the values do not vary)"))
    sx = sig / np.sqrt(n)
    big_k, big_h = params["k"] * sx, params["h"] * sx
    upper = np.empty_like(x)
    lower = np.empty_like(x)
    cp = cm = 0.0
    for i, v in enumerate(x):
        cp = max(0.0, v - (mu + big_k[i]) + cp)
        cm = max(0.0, (mu - big_k[i]) - v + cm)
        upper[i], lower[i] = cp, cm
    limits = _limits(frozen, "cusum", params, int(keep.sum()))
    zero = _full(0.0, x.size)
    return [Chart("cusum", upper, zero, -big_h, big_h, sx, limits, LIMITS_ONLY, mask, lower_statistic=-lower)]


#: Every chart by the name the CLI, the API and frozen limits use.
ATTRIBUTE_CHARTS = ("p", "np", "c", "u", "laney-p")
VARIABLE_CHARTS = ("imr", "xbar-r", "xbar-s", "ewma", "cusum")
CHARTS = ATTRIBUTE_CHARTS + VARIABLE_CHARTS
