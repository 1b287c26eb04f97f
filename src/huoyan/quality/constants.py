"""Control-chart constants (c4, d2, d3 and the factors built on them) from their definitions.

Tables print these to three or four decimals (Montgomery, Appendix VI; ASTM E2587);
computing them from the normal distribution gives every subgroup size the same precision
and one source for every chart. ``c4`` is the bias of the sample standard deviation,
``d2`` and ``d3`` the mean and standard deviation of the relative range W = R/sigma.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from scipy import integrate, special

#: Ranges are for small subgroups (their efficiency falls fast beyond ~10); s works for any size.
MAX_RANGE_SUBGROUP = 100


def _check(n: int, largest: int | None = None) -> None:
    if n < 2 or (largest is not None and n > largest):
        top = f" and {largest}" if largest is not None else ""
        raise ValueError(f"subgroup size must be at least 2{top}, got {n}")


@cache
def c4(n: int) -> float:
    """E[s] / sigma for a normal sample of n."""
    _check(n)
    return math.sqrt(2.0 / (n - 1)) * math.exp(special.gammaln(n / 2) - special.gammaln((n - 1) / 2))


@cache
def d2(n: int) -> float:
    """E[R] / sigma: the integral of 1 - Phi(x)^n - (1 - Phi(x))^n over the real line."""
    _check(n, MAX_RANGE_SUBGROUP)

    def integrand(x: float) -> float:
        return float(1.0 - special.ndtr(x) ** n - special.ndtr(-x) ** n)

    value, _ = integrate.quad(integrand, -np.inf, np.inf, epsabs=1e-12, epsrel=1e-12)
    return float(value)


@cache
def d3(n: int) -> float:
    """SD[R] / sigma, from E[W^2] = 2 * the integral over x < y of
    1 - Phi(y)^n - (1 - Phi(x))^n + (Phi(y) - Phi(x))^n (Tippett 1925).

    With y = x + t the domain is a rectangle: the trapezoid rule over x (a smooth,
    fast-decaying integrand, where it is spectrally accurate) and Simpson's rule over t,
    on a 0.02 grid, agree with the published tables to all their digits.
    """
    _check(n, MAX_RANGE_SUBGROUP)
    x = np.arange(-8.0, 8.0 + 1e-9, 0.02)
    t = np.arange(0.0, 12.0 + 1e-9, 0.02)
    fx = special.ndtr(x)[:, None]
    fy = special.ndtr(x[:, None] + t[None, :])
    g = 1.0 - fy**n - (1.0 - fx) ** n + (fy - fx) ** n
    second = integrate.trapezoid(integrate.simpson(g, x=t, axis=1), x=x)
    return math.sqrt(2.0 * second - d2(n) ** 2)


def a2(n: int) -> float:
    """X-bar chart limits from the mean range: X-bar-bar +/- A2 * R-bar."""
    return 3.0 / (d2(n) * math.sqrt(n))


def a3(n: int) -> float:
    """X-bar chart limits from the mean standard deviation: X-bar-bar +/- A3 * s-bar."""
    return 3.0 / (c4(n) * math.sqrt(n))


def d3_factor(n: int) -> float:
    """D3: lower range limit D3 * R-bar (zero below n = 7)."""
    return max(0.0, 1.0 - 3.0 * d3(n) / d2(n))


def d4_factor(n: int) -> float:
    """D4: upper range limit D4 * R-bar."""
    return 1.0 + 3.0 * d3(n) / d2(n)


def b3(n: int) -> float:
    """B3: lower s-chart limit B3 * s-bar (zero below n = 6)."""
    return max(0.0, 1.0 - 3.0 * math.sqrt(1.0 - c4(n) ** 2) / c4(n))


def b4(n: int) -> float:
    """B4: upper s-chart limit B4 * s-bar."""
    return 1.0 + 3.0 * math.sqrt(1.0 - c4(n) ** 2) / c4(n)
