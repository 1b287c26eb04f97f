import numpy as np
import pytest
from scipy import stats

from huoyan.core.calibration import calibrate, conformal_rank, f1_optimal


def test_conformal_rank() -> None:
    assert conformal_rank(199, 0.005) == 199
    assert conformal_rank(99, 0.05) == 95
    assert conformal_rank(50, 0.005) == 51  # more than n: no finite-sample guarantee


def test_realised_false_reject_rate_within_bound() -> None:
    """Fresh good parts are rejected at the target rate, inside the stated bound."""
    rng = np.random.default_rng(0)
    good = stats.lognorm(s=0.4, scale=10.0)
    cal = calibrate(good.rvs(999, random_state=rng), false_reject_rate=0.01, confidence=0.95)
    assert cal.method == "conformal"
    assert cal.expected_false_reject_rate <= 0.01
    realised = float(np.mean(good.rvs(400_000, random_state=rng) > cal.threshold))
    lower = stats.beta.ppf(0.001, 10, 990)
    assert lower <= realised <= cal.false_reject_rate_upper


def test_false_reject_rate_matches_target_on_average() -> None:
    """Over many calibration sets the marginal rate equals (n+1-k)/(n+1)."""
    rng = np.random.default_rng(1)
    rates = []
    for _ in range(300):
        cal = calibrate(rng.gumbel(5, 1, 199), false_reject_rate=0.05)
        rates.append(stats.gumbel_r.sf(cal.threshold, 5, 1))
    expected = cal.expected_false_reject_rate
    assert abs(np.mean(rates) - expected) < 3 * np.std(rates) / np.sqrt(len(rates)) + 1e-3
    # And the reported upper bound holds in about 95% of calibrations.
    assert np.mean(np.array(rates) <= cal.false_reject_rate_upper) > 0.9


def test_few_scores_use_parametric_tail_above_max() -> None:
    rng = np.random.default_rng(2)
    scores = rng.gumbel(3, 0.5, 40)
    cal = calibrate(scores, false_reject_rate=0.005)
    assert cal.method == "parametric-tail"
    assert cal.threshold >= scores.max()
    assert cal.false_reject_rate_upper == pytest.approx(stats.beta.ppf(0.95, 1, 40))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        calibrate(np.array([1.0]))
    with pytest.raises(ValueError):
        calibrate(np.arange(10.0), false_reject_rate=0)


def test_f1_optimal_separates() -> None:
    good = np.array([1.0, 1.2, 1.1, 0.9])
    bad = np.array([3.0, 2.5, 1.15])
    thr, m = f1_optimal(good, bad)
    # Best cut is just below 1.15: precision 3/4, recall 1 -> F1 6/7; one good part rejected.
    assert m["f1"] == pytest.approx(6 / 7)
    assert thr < 1.15 and thr > 1.1
    assert m["false_reject_rate"] == 0.25 and m["miss_rate"] == 0.0
    assert np.mean(good > thr) == m["false_reject_rate"]
    assert np.mean(bad <= thr) == m["miss_rate"]


def test_defect_scores_add_f1_report() -> None:
    cal = calibrate(np.linspace(1, 2, 300), 0.01, defect_scores=np.linspace(2.5, 4, 20))
    assert cal.f1_metrics is not None and cal.f1_metrics["f1"] == 1.0
    assert cal.f1_threshold is not None and 2.0 <= cal.f1_threshold < 2.5
