"""Run rules: the Western Electric and Nelson tests for special causes, switchable one by one.

Tools differ in the run lengths (Western Electric's same-side run is 8 points, Nelson's
is 9) and in which point they flag, so both are stated here:

* every rule flags the point that completes its pattern, and only while that point is
  itself part of it (so a run of 10 on one side flags points 9 and 10 under N2);
* the zones are in sigmas of the plotted statistic at each point (``Chart.sigma``), so
  charts whose limits vary with the sample size are tested on the standardised value;
* a point exactly on the centre line breaks a same-side run, and equal neighbours break a
  trend or an alternation;
* excluded points (Phase I) are neither tested nor flagged, and the rules look through
  them to their neighbours;
* range, moving-range and s charts, EWMA and CUSUM are tested by rule 1 only (limits):
  their points are not independent normal values, so the zone rules' false-alarm rates
  would not hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from huoyan.core.text import Message
from huoyan.quality.charts import ZONE_RULES, Chart, ChartError

Flags = np.ndarray[Any, np.dtype[np.bool_]]


@dataclass(frozen=True)
class Rule:
    id: str
    family: str
    text: str
    test: Callable[[np.ndarray[Any, np.dtype[np.float64]]], Flags]


@dataclass(frozen=True)
class Violation:
    rule: str
    index: int  # the point that completes the pattern
    text: str


def _windows(mask: Flags, length: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """For each point, how many of the ``length`` points ending there are set."""
    return np.convolve(mask.astype(np.int64), np.ones(length, dtype=np.int64))[: mask.size]


def _run(mask: Flags, length: int) -> Flags:
    """Points that end a run of at least ``length`` consecutive set points."""
    out = np.zeros(mask.size, dtype=bool)
    run = 0
    for i, m in enumerate(mask):
        run = run + 1 if m else 0
        out[i] = run >= length
    return out


def _k_of_m(z: np.ndarray[Any, np.dtype[np.float64]], k: int, m: int, beyond: float) -> Flags:
    flags = np.zeros(z.size, dtype=bool)
    for side in (1.0, -1.0):
        far = side * z > beyond
        flags |= far & (_windows(far, m) >= k)
    return flags


def _same_side(z: np.ndarray[Any, np.dtype[np.float64]], length: int) -> Flags:
    return _run(z > 0, length) | _run(z < 0, length)


def _trend(z: np.ndarray[Any, np.dtype[np.float64]], points: int) -> Flags:
    step = np.diff(z)
    up = np.r_[False, _run(step > 0, points - 1)]
    down = np.r_[False, _run(step < 0, points - 1)]
    return up | down


def _alternating(z: np.ndarray[Any, np.dtype[np.float64]], points: int) -> Flags:
    sign = np.sign(np.diff(z))
    flips = np.r_[False, (sign[1:] * sign[:-1]) < 0]  # difference i+1 turns against difference i
    return np.r_[False, _run(flips, points - 2)]


def _beyond(limit: float) -> Callable[[np.ndarray[Any, np.dtype[np.float64]]], Flags]:
    return lambda z: np.abs(z) > limit


RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule("WE1", "Western Electric", "1 point beyond 3 sigma (outside the control limits)", _beyond(3.0)),
        Rule(
            "WE2",
            "Western Electric",
            "2 of 3 consecutive points beyond 2 sigma, same side",
            lambda z: _k_of_m(z, 2, 3, 2.0),
        ),
        Rule(
            "WE3",
            "Western Electric",
            "4 of 5 consecutive points beyond 1 sigma, same side",
            lambda z: _k_of_m(z, 4, 5, 1.0),
        ),
        Rule(
            "WE4", "Western Electric", "8 consecutive points on one side of the centre line", lambda z: _same_side(z, 8)
        ),
        Rule("N1", "Nelson", "1 point beyond 3 sigma (outside the control limits)", _beyond(3.0)),
        Rule("N2", "Nelson", "9 points in a row on one side of the centre line", lambda z: _same_side(z, 9)),
        Rule("N3", "Nelson", "6 points in a row steadily increasing or decreasing", lambda z: _trend(z, 6)),
        Rule("N4", "Nelson", "14 points in a row alternating up and down", lambda z: _alternating(z, 14)),
        Rule("N5", "Nelson", "2 of 3 points in a row beyond 2 sigma, same side", lambda z: _k_of_m(z, 2, 3, 2.0)),
        Rule("N6", "Nelson", "4 of 5 points in a row beyond 1 sigma, same side", lambda z: _k_of_m(z, 4, 5, 1.0)),
        Rule("N7", "Nelson", "15 points in a row within 1 sigma, either side", lambda z: _run(np.abs(z) < 1.0, 15)),
        Rule("N8", "Nelson", "8 points in a row beyond 1 sigma, either side", lambda z: _run(np.abs(z) > 1.0, 8)),
    )
}
#: Applied when the user names none: the four Western Electric rules.
DEFAULT_RULES = ("WE1", "WE2", "WE3", "WE4")
#: The rules that look only at the limits.
LIMIT_RULES = frozenset({"WE1", "N1"})


def parse_rules(text: str | Iterable[str]) -> tuple[str, ...]:
    """Rule ids from 'WE1,WE2' or a list, or the names 'western-electric', 'nelson', 'none'."""
    items = [part.strip() for part in (text.split(",") if isinstance(text, str) else text) if part.strip()]
    out: list[str] = []
    for item in items:
        key = item.upper()
        if key in ("WESTERN-ELECTRIC", "WE"):
            out += [r for r in RULES if r.startswith("WE")]
        elif key in ("NELSON", "N"):
            out += [r for r in RULES if r.startswith("N")]
        elif key == "NONE":
            continue
        elif key in RULES:
            out.append(key)
        else:
            raise ChartError(
                Message(
                    "unknown rule '{item}'; rules are {rules}, 'western-electric' or 'nelson'",
                    item=item,
                    rules=", ".join(RULES),
                )
            )
    return tuple(dict.fromkeys(out))


def check(chart: Chart, rules: Iterable[str] = DEFAULT_RULES) -> list[Violation]:
    """Every rule violation on the chart, in point order."""
    ids = parse_rules(rules)
    kept = np.flatnonzero(~chart.excluded) if chart.excluded.size else np.arange(len(chart))
    out: list[Violation] = []
    if chart.rules != ZONE_RULES:
        beyond = chart.beyond()
        for rule_id in ids:
            if rule_id in LIMIT_RULES:
                out += [Violation(rule_id, int(i), RULES[rule_id].text) for i in kept if beyond[i]]
        return sorted(out, key=lambda v: (v.index, v.rule))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (chart.statistic - chart.center) / chart.sigma
    # A point whose sigma is 0 (p-bar of 0 or 1) is on its centre or infinitely far from it.
    z = np.where(np.isnan(z), 0.0, z)[kept]
    beyond = chart.beyond()[kept]
    for rule_id in ids:
        flags = beyond if rule_id in LIMIT_RULES else RULES[rule_id].test(z)
        out += [Violation(rule_id, int(kept[i]), RULES[rule_id].text) for i in np.flatnonzero(flags)]
    return sorted(out, key=lambda v: (v.index, v.rule))
