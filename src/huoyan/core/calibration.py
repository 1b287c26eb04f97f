"""NG threshold from good parts only, for a stated false-reject rate.

Statistical basis (split conformal prediction, Vovk et al.; Angelopoulos & Bates 2021).
Let s_1..s_n be anomaly scores of n good parts that the model did not learn from
(held out of the memory bank, see ``PatchCore.fit``; the vibration detector holds out the last
healthy windows of each recording), and let a new good part's
score be exchangeable with them. For a target false-reject rate a, take

    k = ceil((n + 1) (1 - a)),   threshold = s_(k)   (the k-th smallest score),

and call a part NG when its score is above the threshold. Then:

* marginally, P(new good part is rejected) = (n + 1 - k) / (n + 1) <= a (with equality up
  to rounding for continuous scores): this is the *expected* false-reject rate reported;
* conditionally on the calibration set, the realised false-reject rate follows
  Beta(n + 1 - k, k), so its upper ``confidence`` quantile is reported as the bound a
  plant can plan with.

The guarantee needs k <= n, i.e. n >= 1/a - 1 (199 parts for 0.5%). With fewer good parts
the threshold is extrapolated from a Gumbel fit to the scores (they are maxima of a map,
the Gumbel's domain), never below the largest calibration score, and the method is
recorded as ``parametric-tail``: the expected rate is then a model-based estimate, and
the bound is the distribution-free one for thresholding at the maximum, Beta(1, n).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from sklearn.metrics import precision_recall_curve

from huoyan.core.models import Calibration

#: The quantile levels of the calibration scores a model card keeps (0%, 1%, ..., 100%).
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 101)


def score_quantiles(scores: np.ndarray) -> list[float]:
    return [float(q) for q in np.quantile(np.asarray(scores, dtype=np.float64), QUANTILE_LEVELS)]


def conformal_rank(n: int, rate: float) -> int:
    """1-based rank k of the calibration score used as threshold."""
    return math.ceil((n + 1) * (1 - rate))


def calibrate(
    good_scores: np.ndarray,
    false_reject_rate: float = 0.005,
    confidence: float = 0.95,
    defect_scores: np.ndarray | None = None,
) -> Calibration:
    """Threshold for ``false_reject_rate`` from good-part scores (see module docstring)."""
    scores = np.sort(np.asarray(good_scores, dtype=np.float64))
    n = scores.size
    if n < 2:
        raise ValueError("calibration needs at least 2 good-part scores")
    if not 0 < false_reject_rate < 1:
        raise ValueError("false_reject_rate must be in (0, 1)")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    k = conformal_rank(n, false_reject_rate)
    if k <= n:
        threshold = float(scores[k - 1])
        expected = (n + 1 - k) / (n + 1)
        upper = float(stats.beta.ppf(confidence, n + 1 - k, k))
        method = "conformal"
    else:
        loc, scale = stats.gumbel_r.fit(scores)
        threshold = max(float(stats.gumbel_r.ppf(1 - false_reject_rate, loc, scale)), float(scores[-1]))
        expected = float(stats.gumbel_r.sf(threshold, loc, scale))
        upper = float(stats.beta.ppf(confidence, 1, n))
        method = "parametric-tail"
    cal = Calibration(
        method=method,
        threshold=threshold,
        target_false_reject_rate=false_reject_rate,
        expected_false_reject_rate=expected,
        false_reject_rate_upper=upper,
        confidence=confidence,
        n_calibration=n,
        region_threshold=threshold,
        score_quantiles=score_quantiles(scores),
    )
    if defect_scores is not None and len(defect_scores) > 0:
        f1_thr, f1_metrics = f1_optimal(scores, np.asarray(defect_scores, dtype=np.float64))
        cal = cal.model_copy(update={"f1_threshold": f1_thr, "f1_metrics": f1_metrics})
    return cal


def f1_optimal(good_scores: np.ndarray, defect_scores: np.ndarray) -> tuple[float, dict[str, float]]:
    """Threshold maximising F1 for 'defect' as the positive class, with its rates."""
    y = np.r_[np.zeros(good_scores.size), np.ones(defect_scores.size)]
    s = np.r_[good_scores, defect_scores]
    precision, recall, thresholds = precision_recall_curve(y, s)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1])) if thresholds.size else 0
    # precision_recall_curve counts score >= t as positive; NG is score > threshold, so
    # the threshold sits just below the chosen score.
    thr = float(np.nextafter(thresholds[best], -np.inf))
    metrics = {
        "f1": float(f1[best]),
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "false_reject_rate": float(np.mean(good_scores > thr)),
        "miss_rate": float(np.mean(defect_scores <= thr)),
    }
    return thr, metrics


def rates_at(threshold: float, good_scores: np.ndarray, defect_scores: np.ndarray) -> dict[str, float]:
    """False-reject and miss rates of a threshold on labelled scores."""
    out = {"false_reject_rate": float(np.mean(np.asarray(good_scores) > threshold))}
    if len(defect_scores):
        out["miss_rate"] = float(np.mean(np.asarray(defect_scores) <= threshold))
    return out
