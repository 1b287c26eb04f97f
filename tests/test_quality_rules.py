"""Run rules on hand-made vectors: each rule fires exactly where its pattern completes."""

from __future__ import annotations

import numpy as np
import pytest

from huoyan.quality import constants as K
from huoyan.quality.charts import ChartError, Limits, imr_chart, p_chart, xbar_r_chart
from huoyan.quality.rules import DEFAULT_RULES, RULES, check, parse_rules

# Individuals on frozen limits: centre 0, sigma 1, so each value is its own z.
UNIT = Limits("imr", {"mean": 0.0, "mr_bar": K.d2(2)}, points=100)


def flagged(values: list[float], rule: str, exclude: tuple[int, ...] = ()) -> list[int]:
    chart, _ = imr_chart(values, frozen=UNIT, exclude=exclude)
    return [v.index for v in check(chart, [rule])]


def test_rule_one_flags_points_beyond_three_sigma_on_either_side() -> None:
    assert flagged([0.5, 3.2, -0.2, -3.01, 2.99], "WE1") == [1, 3]
    assert flagged([0.5, 3.2, -0.2, -3.01, 2.99], "N1") == [1, 3]


@pytest.mark.parametrize("rule", ["WE2", "N5"])
def test_two_of_three_beyond_two_sigma_needs_the_same_side(rule: str) -> None:
    assert flagged([0.0, 2.5, 0.3, 2.1, 0.0], rule) == [3]
    assert flagged([0.0, 2.5, -2.5, 0.0, 0.0], rule) == []  # opposite sides
    assert flagged([2.5, 0.0, 0.0, 2.5, 0.0], rule) == []  # 2 of 4, not of 3
    assert flagged([-2.2, -2.4, 0.0], rule) == [1]


@pytest.mark.parametrize("rule", ["WE3", "N6"])
def test_four_of_five_beyond_one_sigma_on_one_side(rule: str) -> None:
    assert flagged([1.5, 1.2, 0.0, 1.1, 1.9, 0.0], rule) == [4]
    assert flagged([1.5, 1.2, 0.0, 1.1, -1.9, 0.0], rule) == []


def test_same_side_runs_are_eight_for_western_electric_and_nine_for_nelson() -> None:
    eight = [0.1] * 8
    assert flagged(eight, "WE4") == [7]
    assert flagged(eight, "N2") == []
    assert flagged([*eight, 0.2, 0.3], "N2") == [8, 9]
    # a point on the centre line breaks the run
    assert flagged([0.1] * 4 + [0.0] + [0.1] * 4, "WE4") == []


def test_a_trend_is_six_points_steadily_rising_or_falling() -> None:
    assert flagged([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], "N3") == [5]
    assert flagged([0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1], "N3") == [5, 6]
    assert flagged([0.0, 0.1, 0.2, 0.2, 0.4, 0.5], "N3") == []  # a tie breaks it


def test_fourteen_points_alternating() -> None:
    zigzag = [0.5 * (-1) ** i for i in range(14)]
    assert flagged(zigzag, "N4") == [13]
    assert flagged(zigzag[:13], "N4") == []


def test_fifteen_points_hugging_the_centre_line() -> None:
    assert flagged([0.2, -0.3] * 7 + [0.1], "N7") == [14]
    assert flagged([0.2, -0.3] * 7 + [1.2], "N7") == []


def test_eight_points_avoiding_the_centre_zone_on_both_sides() -> None:
    assert flagged([1.5, -1.5] * 4, "N8") == [7]
    assert flagged([1.5, -1.5, 0.5, 1.5, -1.5, 1.5, -1.5, 1.5], "N8") == []


def test_excluded_points_are_neither_tested_nor_flagged_and_runs_look_through_them() -> None:
    assert flagged([0.0, 5.0, 0.0], "WE1", exclude=(1,)) == []
    assert flagged([0.1] * 4 + [-2.0] + [0.1] * 4, "WE4", exclude=(4,)) == [8]


def test_zone_rules_use_each_points_own_sigma_when_limits_vary() -> None:
    # p-bar 0.08: 11/100 is 1.11 sigma above it, but 3/25 = 0.12 only 0.74 sigma (a small sample).
    frozen = Limits("p", {"p_bar": 0.08}, 1)
    (chart,) = p_chart([11, 11, 3, 11, 3], [100, 100, 25, 100, 25], frozen=frozen)
    z = (chart.statistic - chart.center) / chart.sigma
    assert z[0] == pytest.approx((0.11 - 0.08) / np.sqrt(0.08 * 0.92 / 100))
    assert z[2] == pytest.approx((0.12 - 0.08) / np.sqrt(0.08 * 0.92 / 25))
    assert check(chart, ["WE3"]) == []
    (same,) = p_chart([11, 11, 12, 11, 12], 100, frozen=frozen)  # 0.12 of 100 is 1.47 sigma
    assert [v.index for v in check(same, ["WE3"])] == [3, 4]


def test_range_charts_are_tested_by_the_limits_only() -> None:
    groups = [[0.0, 1.0]] * 9 + [[0.0, 5.0]]
    _, r = xbar_r_chart(groups, frozen=Limits("xbar-r", {"mean": 0.5, "r_bar": 1.0, "n": 2}, 10))
    violations = check(r, [*RULES])
    assert [(v.rule, v.index) for v in violations] == [("N1", 9), ("WE1", 9)]


def test_rule_sets_are_named_and_unknown_rules_refused() -> None:
    assert parse_rules("western-electric") == DEFAULT_RULES
    assert parse_rules("nelson") == tuple(f"N{i}" for i in range(1, 9))
    assert parse_rules("WE1, n3") == ("WE1", "N3")
    assert parse_rules("none") == ()
    with pytest.raises(ChartError, match="unknown rule 'WE9'"):
        parse_rules("WE9")
