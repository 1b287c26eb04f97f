"""One entry to every chart: a named chart kind over counts or measured values.

The CLI (a CSV's columns), the records (SQL aggregates) and the API all describe their data
the same way, as a ``Series``: counts with sample sizes for the attributes charts, groups
of measured values for the variables charts (a group of one is an individual value), and a
label per point (a CSV row, an hour, a shift, a lot). ``build`` picks the chart function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from huoyan.core.text import Message
from huoyan.quality import charts as C
from huoyan.quality.capability import Capability, capability, capability_of, within_sigma
from huoyan.quality.charts import Chart, ChartError, Limits, Subgroups


@dataclass(frozen=True)
class Series:
    labels: list[str]
    counts: list[float] | None = None  # nonconforming units or nonconformities per point
    sizes: list[float] | None = None  # units inspected per point
    groups: list[list[float]] | None = None  # measured values per point (one: an individual value)
    subgroups: Subgroups | None = None  # or what a database summed of each point's values


@dataclass(frozen=True)
class Options:
    exclude: Sequence[int] = ()
    frozen: Limits | None = None
    lam: float = 0.2
    width: float = 3.0
    k: float = 0.5
    h: float = 5.0
    target: float | None = None
    sigma: float | None = None


def build(kind: str, series: Series, options: Options = Options()) -> list[Chart]:
    """The chart(s) of ``kind`` over ``series``; a mismatch between kind and data is a
    ChartError that says what the kind needs."""
    ex, frozen = options.exclude, options.frozen
    if kind in C.ATTRIBUTE_CHARTS:
        return _attributes(kind, series, ex, frozen)
    if kind not in C.VARIABLE_CHARTS:
        raise ChartError(Message("unknown chart '{kind}'; charts are {charts}", kind=kind, charts=", ".join(C.CHARTS)))
    individual = series.groups is not None and all(len(g) == 1 for g in series.groups)
    data: C.Located
    if series.subgroups is not None:
        data = series.subgroups
    elif series.groups is not None:
        data = [g[0] for g in series.groups] if individual else series.groups
    else:
        raise ChartError(Message("a {kind} chart charts measured values; give values per point", kind=kind))
    if kind == "imr":
        if not individual:
            raise ChartError(Message("an I-MR chart charts one value per point; use xbar-r or xbar-s for subgroups"))
        return C.imr_chart(data, exclude=ex, frozen=frozen)  # type: ignore[arg-type]
    if kind in ("xbar-r", "xbar-s"):
        if individual:
            raise ChartError(
                Message("an {kind} chart needs subgroups of at least 2 values; use imr for single values", kind=kind)
            )
        chart = C.xbar_r_chart if kind == "xbar-r" else C.xbar_s_chart
        return chart(data, exclude=ex, frozen=frozen)  # type: ignore[arg-type]
    o = options
    if kind == "ewma":
        return C.ewma_chart(data, lam=o.lam, width=o.width, target=o.target, sigma=o.sigma, exclude=ex, frozen=frozen)
    return C.cusum_chart(data, k=o.k, h=o.h, target=o.target, sigma=o.sigma, exclude=ex, frozen=frozen)


def _attributes(kind: str, series: Series, ex: Sequence[int], frozen: Limits | None) -> list[Chart]:
    if series.counts is None:
        raise ChartError(Message("a {kind} chart charts counts; give a count per point", kind=kind))
    counts = series.counts
    if kind == "c":
        return C.c_chart(counts, exclude=ex, frozen=frozen)
    if series.sizes is None:
        raise ChartError(Message("a {kind} chart needs the sample size of each point", kind=kind))
    sizes = series.sizes
    if kind == "p":
        return C.p_chart(counts, sizes, exclude=ex, frozen=frozen)
    if kind == "u":
        return C.u_chart(counts, sizes, exclude=ex, frozen=frozen)
    if kind == "laney-p":
        return C.laney_p_chart(counts, sizes, exclude=ex, frozen=frozen)
    if len(set(sizes)) != 1:
        raise ChartError(Message("an np chart needs one sample size for every point; use a p chart"))
    return C.np_chart(counts, sizes[0], exclude=ex, frozen=frozen)


def capability_for(
    series: Series, limits: Limits, lsl: float | None, usl: float | None, confidence: float = 0.95
) -> Capability:
    """Capability of the charted values against a specification, with the chart's own
    within sigma: from the values, or from the subgroups' sums where only those are known."""
    sigma_within = within_sigma(limits)
    if series.groups is not None:
        values = [v for g in series.groups for v in g]
        return capability(values, lsl=lsl, usl=usl, sigma_within=sigma_within, confidence=confidence)
    if series.subgroups is None:
        raise ChartError(Message("capability needs measured values, not counts"))
    g = series.subgroups
    total = float(g.n.sum())
    mean = float((g.n * g.mean).sum() / total)
    # overall variance from each subgroup's own: within plus between the subgroup means
    squares = float(((g.n - 1) * g.sd**2).sum() + (g.n * (g.mean - mean) ** 2).sum())
    overall = math.sqrt(squares / (total - 1))
    return capability_of(int(total), mean, overall, sigma_within, lsl=lsl, usl=usl, confidence=confidence)
