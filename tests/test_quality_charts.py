"""Control charts reproduce published worked examples.

Textbooks print their results rounded (and often round p-bar or c-bar before computing the
limits), so each value is held to half a unit of the last digit printed, plus that
intermediate rounding where the book did it; exact values computed from the definitions
are held to 1e-9.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from huoyan.quality import constants as K
from huoyan.quality.charts import (
    ChartError,
    Limits,
    c_chart,
    cusum_chart,
    ewma_chart,
    imr_chart,
    laney_p_chart,
    np_chart,
    p_chart,
    u_chart,
    xbar_r_chart,
    xbar_s_chart,
)
from huoyan.quality.rules import check

# Montgomery, Introduction to SQC, Example 7.1: orange juice cans, 30 samples of 50.
ORANGE_JUICE = [
    12,
    15,
    8,
    10,
    4,
    7,
    16,
    9,
    14,
    10,
    5,
    6,
    17,
    12,
    22,
    8,
    10,
    5,
    13,
    11,
    20,
    18,
    24,
    15,
    9,
    12,
    7,
    13,
    9,
    6,
]
# Montgomery, Example 7.3: nonconformities in 26 samples of 100 printed circuit boards.
CIRCUIT = [21, 24, 16, 12, 15, 5, 28, 20, 31, 25, 20, 24, 16, 19, 10, 17, 13, 22, 18, 39, 30, 24, 16, 19, 17, 15]
# Montgomery, Example 7.5: nonconformities in 20 samples of 5 personal computers.
COMPUTERS = [10, 12, 8, 14, 10, 16, 11, 7, 10, 15, 9, 5, 7, 11, 12, 6, 8, 10, 7, 5]
# Montgomery, Table 6.3: piston ring inside diameters (mm), 25 samples of 5.
PISTON_RINGS = [
    [74.030, 74.002, 74.019, 73.992, 74.008],
    [73.995, 73.992, 74.001, 74.011, 74.004],
    [73.988, 74.024, 74.021, 74.005, 74.002],
    [74.002, 73.996, 73.993, 74.015, 74.009],
    [73.992, 74.007, 74.015, 73.989, 74.014],
    [74.009, 73.994, 73.997, 73.985, 73.993],
    [73.995, 74.006, 73.994, 74.000, 74.005],
    [73.985, 74.003, 73.993, 74.015, 73.988],
    [74.008, 73.995, 74.009, 74.005, 74.004],
    [73.998, 74.000, 73.990, 74.007, 73.995],
    [73.994, 73.998, 73.994, 73.995, 73.990],
    [74.004, 74.000, 74.007, 74.000, 73.996],
    [73.983, 74.002, 73.998, 73.997, 74.012],
    [74.006, 73.967, 73.994, 74.000, 73.984],
    [74.012, 74.014, 73.998, 73.999, 74.007],
    [74.000, 73.984, 74.005, 73.998, 73.996],
    [73.994, 74.012, 73.986, 74.005, 74.007],
    [74.006, 74.010, 74.018, 74.003, 74.000],
    [73.984, 74.002, 74.003, 74.005, 73.997],
    [74.000, 74.010, 74.013, 74.020, 74.003],
    [73.982, 74.001, 74.015, 74.005, 73.996],
    [74.004, 73.999, 73.990, 74.006, 74.009],
    [74.010, 73.989, 73.990, 74.009, 74.014],
    [74.015, 74.008, 73.993, 74.000, 74.010],
    [73.982, 73.984, 73.995, 74.017, 74.013],
]
# NIST/SEMATECH e-Handbook 6.3.2.4: EWMA example, target 50, s = 2.0539, lambda = 0.3.
NIST_EWMA = [
    52.0,
    47.0,
    53.0,
    49.3,
    50.1,
    47.0,
    51.0,
    50.1,
    51.2,
    50.5,
    49.6,
    47.6,
    49.9,
    51.3,
    47.8,
    51.2,
    52.6,
    52.4,
    53.6,
    52.1,
]
NIST_EWMA_Z = [
    50.60,
    49.52,
    50.56,
    50.18,
    50.16,
    49.21,
    49.75,
    49.85,
    50.26,
    50.33,
    50.11,
    49.36,
    49.52,
    50.05,
    49.38,
    49.92,
    50.73,
    51.23,
    51.94,
    51.99,
]
# Montgomery, Table 9.1: 30 observations, the first 20 from N(10, 1), the last 10 from N(11, 1).
MONTGOMERY_CUSUM = [
    9.45,
    7.99,
    9.29,
    11.66,
    12.16,
    10.18,
    8.04,
    11.46,
    9.20,
    10.34,
    9.03,
    11.47,
    10.51,
    9.40,
    10.08,
    9.37,
    10.62,
    10.31,
    8.52,
    10.84,
    10.90,
    9.33,
    12.29,
    11.50,
    10.60,
    11.08,
    10.38,
    11.62,
    11.31,
    10.52,
]


def test_constants_match_the_published_table() -> None:
    # Montgomery, Appendix VI (to the table's digits).
    table = {
        2: (0.7979, 1.128, 0.853, 1.880, 0, 3.267, 2.659, 0, 3.267),
        5: (0.9400, 2.326, 0.864, 0.577, 0, 2.114, 1.427, 0, 2.089),
        7: (0.9594, 2.704, 0.833, 0.419, 0.076, 1.924, 1.182, 0.118, 1.882),
        10: (0.9727, 3.078, 0.797, 0.308, 0.223, 1.777, 0.975, 0.284, 1.716),
        25: (0.9896, 3.931, 0.708, 0.153, 0.459, 1.541, 0.606, 0.565, 1.435),
    }
    for n, row in table.items():
        got = (K.c4(n), K.d2(n), K.d3(n), K.a2(n), K.d3_factor(n), K.d4_factor(n), K.a3(n), K.b3(n), K.b4(n))
        for name, want, value in zip(("c4", "d2", "d3", "A2", "D3", "D4", "A3", "B3", "B4"), row, got, strict=True):
            digits = 4 if name == "c4" else 3
            assert abs(value - want) <= 0.5 * 10**-digits + 1e-12, (n, name, value, want)
    # exact values: d2(2) = 2/sqrt(pi), c4(2) = sqrt(2/pi)
    assert K.d2(2) == pytest.approx(2 / math.sqrt(math.pi), abs=1e-9)
    assert K.c4(2) == pytest.approx(math.sqrt(2 / math.pi), abs=1e-12)


def test_p_chart_reproduces_the_orange_juice_example_and_its_revision() -> None:
    (chart,) = p_chart(ORANGE_JUICE, 50)
    assert chart.center[0] == pytest.approx(347 / 1500, abs=1e-12)
    assert abs(chart.center[0] - 0.2313) < 5e-5
    assert abs(chart.ucl[0] - 0.4102) < 5e-5 and abs(chart.lcl[0] - 0.0524) < 5e-5
    assert [v.index + 1 for v in check(chart, ["WE1"])] == [15, 23]
    # Phase I: samples 15 and 23 had assignable causes; the revised limits leave them out.
    (revised,) = p_chart(ORANGE_JUICE, 50, exclude=[14, 22])
    assert abs(revised.center[0] - 0.2150) < 5e-5
    assert abs(revised.ucl[0] - 0.3893) < 5e-5 and abs(revised.lcl[0] - 0.0407) < 5e-5
    assert revised.limits.points == 28
    # Excluded points are still charted, never flagged; sample 21 is now out.
    assert revised.statistic[14] == pytest.approx(22 / 50)
    assert [v.index + 1 for v in check(revised, ["WE1"])] == [21]


def test_p_chart_limits_vary_with_sample_size() -> None:
    defectives, sizes = [5, 8, 3], [50, 80, 40]
    (chart,) = p_chart(defectives, sizes)
    p_bar = 16 / 170
    for i, n in enumerate(sizes):
        assert chart.ucl[i] == pytest.approx(p_bar + 3 * math.sqrt(p_bar * (1 - p_bar) / n), abs=1e-12)
        assert chart.lcl[i] == max(0.0, p_bar - 3 * math.sqrt(p_bar * (1 - p_bar) / n))


def test_np_chart_is_the_p_chart_times_n() -> None:
    (np_c,) = np_chart(ORANGE_JUICE, 50)
    (p_c,) = p_chart(ORANGE_JUICE, 50)
    assert np.allclose(np_c.ucl, 50 * p_c.ucl) and np.allclose(np_c.center, 50 * p_c.center)
    assert np_c.center[0] == pytest.approx(347 / 30)
    with pytest.raises(ChartError, match="same for every point"):
        np_chart([1, 2], [10, 20])  # type: ignore[arg-type]


def test_c_chart_reproduces_the_circuit_board_example() -> None:
    (chart,) = c_chart(CIRCUIT)
    assert abs(chart.center[0] - 19.85) < 0.005
    # the book rounds c-bar to 19.85 before taking the limits
    assert abs(chart.ucl[0] - 33.22) < 0.01 and abs(chart.lcl[0] - 6.48) < 0.01
    assert [v.index + 1 for v in check(chart, ["WE1"])] == [6, 20]
    (revised,) = c_chart(CIRCUIT, exclude=[5, 19])
    assert abs(revised.center[0] - 19.67) < 0.005
    assert abs(revised.ucl[0] - 32.97) < 0.01 and abs(revised.lcl[0] - 6.36) < 0.01


def test_u_chart_reproduces_the_personal_computer_example() -> None:
    (chart,) = u_chart(COMPUTERS, 5)
    assert chart.center[0] == pytest.approx(1.93, abs=1e-12)
    assert abs(chart.ucl[0] - 3.79) < 0.005 and abs(chart.lcl[0] - 0.07) < 0.005
    assert check(chart, ["WE1"]) == []


def test_laney_p_widens_the_p_limits_by_the_between_sample_variation() -> None:
    # Hand-made: large lots whose proportions vary more than binomially.
    defectives, size = [1200, 950, 1400, 1010, 1330, 880, 1260, 1100], 100_000
    (laney,) = laney_p_chart(defectives, size)
    (plain,) = p_chart(defectives, size)
    p_bar = sum(defectives) / (8 * size)
    z = (np.array(defectives) / size - p_bar) / math.sqrt(p_bar * (1 - p_bar) / size)
    sigma_z = np.abs(np.diff(z)).mean() / (2 / math.sqrt(math.pi))
    assert laney.limits.params["sigma_z"] == pytest.approx(sigma_z, abs=1e-9)
    assert laney.ucl[0] == pytest.approx(p_bar + 3 * sigma_z * math.sqrt(p_bar * (1 - p_bar) / size), abs=1e-12)
    assert sigma_z > 1.5
    assert len(check(plain, ["WE1"])) > 0 and check(laney, ["WE1"]) == []


def test_individuals_and_moving_range_from_the_definitions() -> None:
    x = [2.0, 4.0, 6.0, 4.0, 2.0, 4.0, 6.0, 4.0]
    i_chart, mr_chart = imr_chart(x)
    sigma = 2.0 / K.d2(2)
    assert i_chart.center[0] == 4.0
    assert i_chart.ucl[0] == pytest.approx(4 + 3 * sigma, abs=1e-9)
    assert i_chart.ucl[0] == pytest.approx(9.3174, abs=5e-5)
    assert math.isnan(mr_chart.statistic[0]) and mr_chart.statistic[1] == 2.0
    assert mr_chart.ucl[1] == pytest.approx(3.267 * 2.0, abs=1e-3) and mr_chart.lcl[1] == 0.0
    # Excluding a point drops the two moving ranges that touch it.
    i2, _ = imr_chart([10.0, 11.0, 30.0, 10.5, 11.5], exclude=[2])
    assert i2.limits.params["mr_bar"] == pytest.approx(1.0) and i2.limits.params["mean"] == pytest.approx(10.75)


def test_xbar_r_reproduces_the_piston_ring_example() -> None:
    xbar, r = xbar_r_chart(PISTON_RINGS)
    assert abs(xbar.center[0] - 74.001) < 5e-4 and abs(r.center[0] - 0.023) < 5e-4
    assert r.center[0] == pytest.approx(0.02324, abs=5e-6)
    # the book rounds X-bar-bar and R-bar to 0.001 before taking the limits
    assert abs(xbar.ucl[0] - 74.014) < 1e-3 and abs(xbar.lcl[0] - 73.988) < 1e-3
    frozen = Limits("xbar-r", {"mean": 74.001, "r_bar": 0.023, "n": 5}, points=25)
    rounded, _ = xbar_r_chart(PISTON_RINGS, frozen=frozen)
    assert abs(rounded.ucl[0] - 74.014) < 5e-4 and abs(rounded.lcl[0] - 73.988) < 5e-4
    assert abs(r.ucl[0] - 0.049) < 5e-4 and r.lcl[0] == 0.0
    assert check(xbar) == [] and check(r) == []


def test_xbar_s_reproduces_the_piston_ring_example() -> None:
    xbar, s = xbar_s_chart(PISTON_RINGS)
    assert abs(s.center[0] - 0.0094) < 5e-5
    # the book rounds X-bar-bar to 0.001 and s-bar to 0.0001 before taking the limits
    assert abs(xbar.ucl[0] - 74.014) < 1e-3 and abs(xbar.lcl[0] - 73.988) < 1e-3
    assert xbar.ucl[0] - xbar.center[0] == pytest.approx(K.a3(5) * s.center[0], abs=1e-12)
    assert abs(s.ucl[0] - 0.0196) < 5e-5 and s.lcl[0] == 0.0


def test_xbar_s_with_varying_subgroup_sizes_pools_the_variance() -> None:
    groups = [[1.0, 2.0, 3.0], [2.0, 4.0], [1.0, 1.5, 2.5, 3.0]]
    xbar, s = xbar_s_chart(groups)
    sds = [np.std(g, ddof=1) for g in groups]
    pooled = math.sqrt(sum((len(g) - 1) * sd**2 for g, sd in zip(groups, sds, strict=True)) / 6)
    assert xbar.limits.params["sigma"] == pytest.approx(pooled, abs=1e-12)
    assert xbar.ucl[1] - xbar.center[1] == pytest.approx(3 * pooled / math.sqrt(2), abs=1e-12)
    assert s.center[0] == pytest.approx(K.c4(3) * pooled, abs=1e-12)
    with pytest.raises(ChartError, match="one size"):
        xbar_r_chart(groups)


def test_ewma_reproduces_the_nist_example() -> None:
    (chart,) = ewma_chart(NIST_EWMA, lam=0.3, width=3.0, target=50.0, sigma=2.0539)
    assert np.all(np.abs(chart.statistic - NIST_EWMA_Z) < 0.005 + 1e-9)
    # the handbook's steady-state limits; the exact limits reach them within 1e-6 by point 20
    assert abs(chart.ucl[-1] - 52.5884) < 5e-5 and abs(chart.lcl[-1] - 47.4115) < 1e-4
    assert check(chart, ["WE1"]) == []


def test_ewma_reproduces_montgomerys_first_points() -> None:
    (chart,) = ewma_chart(MONTGOMERY_CUSUM, lam=0.1, width=2.7, target=10.0, sigma=1.0)
    assert chart.statistic[0] == pytest.approx(9.945, abs=1e-12)
    assert chart.statistic[1] == pytest.approx(9.7495, abs=1e-12)
    assert abs(chart.ucl[0] - 10.27) < 5e-3 and abs(chart.lcl[0] - 9.73) < 5e-3
    assert chart.ucl[0] == pytest.approx(10 + 2.7 * math.sqrt(0.1 / 1.9 * (1 - 0.81)), abs=1e-12)


def test_cusum_reproduces_montgomerys_tabular_example() -> None:
    (chart,) = cusum_chart(MONTGOMERY_CUSUM, k=0.5, h=5.0, target=10.0, sigma=1.0)
    upper, lower = chart.statistic, -chart.lower_statistic  # type: ignore[operator]
    assert upper[28] == pytest.approx(5.28, abs=5e-3) and upper[29] == pytest.approx(5.30, abs=5e-3)
    assert lower[:3] == pytest.approx([0.05, 1.56, 1.77], abs=5e-3)
    assert chart.ucl[0] == 5.0 and chart.lcl[0] == -5.0
    # The first signal is at sample 29 (the shift began at 21).
    assert [v.index + 1 for v in check(chart, ["WE1"])] == [29, 30]


def test_frozen_limits_are_used_as_they_are_in_phase_two() -> None:
    from datetime import UTC, datetime

    (phase1,) = p_chart(ORANGE_JUICE, 50, exclude=[14, 22])
    frozen = phase1.limits.freeze(1, "engineer", datetime(2026, 12, 1, tzinfo=UTC))
    (phase2,) = p_chart([30, 5, 6], 50, frozen=frozen)
    assert phase2.center[0] == pytest.approx(phase1.center[0]) and phase2.ucl[0] == pytest.approx(phase1.ucl[0])
    assert phase2.limits.version == 1 and phase2.limits.frozen_by == "engineer"
    assert [v.index for v in check(phase2, ["WE1"])] == [0]
    with pytest.raises(ChartError, match="for a p chart, not c"):
        c_chart([1, 2], frozen=frozen)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: p_chart([3, 60], 50), "point 1: 60 nonconforming in a sample of 50"),
        (lambda: p_chart([3, float("nan")], 50), "point 1 is not a finite number"),
        (lambda: c_chart([-1, 2]), "point 0 is negative"),
        (lambda: u_chart([1, 2], [5, 0]), "point 1 has size 0"),
        (lambda: p_chart([1, 2], 10, exclude=[5]), "point 5 does not exist"),
        (lambda: c_chart([1, 2], exclude=[0, 1]), "every point is excluded"),
        (lambda: xbar_r_chart([[1.0], [2.0, 3.0]]), "subgroup 0 has 1 value"),
        (lambda: ewma_chart([1.0, 2.0], lam=0), "lambda must be in"),
    ],
)
def test_bad_data_is_refused_with_a_message_naming_the_point(call: object, message: str) -> None:
    with pytest.raises(ChartError, match=message):
        call()  # type: ignore[operator]
