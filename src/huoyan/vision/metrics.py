"""The field's standard anomaly-detection metrics: image/pixel AUROC, AUPRO, F1-max.

AUPRO follows Bergmann et al. (MVTec AD, 2021): the per-region overlap (PRO), averaged
over ground-truth connected components, integrated over the pixel false-positive rate
from 0 to ``fpr_limit`` (0.3) and divided by ``fpr_limit`` so a perfect map scores 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score


def image_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores))


def f1_max(labels: np.ndarray, scores: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(f1.max())


def pixel_auroc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> float:
    y = np.concatenate([m.ravel() for m in masks]).astype(bool)
    s = np.concatenate([a.ravel() for a in maps])
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, s))


def aupro(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], fpr_limit: float = 0.3, steps: int = 300) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` false-positive rate."""
    normal = np.concatenate([a[~m.astype(bool)].ravel() for m, a in zip(masks, maps, strict=True)])
    regions = []
    for m, a in zip(masks, maps, strict=True):
        mb = m.astype(np.uint8)
        if not mb.any():
            continue
        n, labels = cv2.connectedComponents(mb, connectivity=8)
        for lab in range(1, n):
            regions.append(np.sort(a[labels == lab]))
    if not regions or normal.size == 0:
        return float("nan")
    normal.sort()
    # Thresholds at FPR grid points: the (1 - fpr) quantiles of normal pixels, and one step
    # past the limit. A quantile's realised FPR falls short of its grid point (or rounds
    # past it), so the curve is interpolated at the limit itself, as MVTec AD's evaluation
    # does: cut at the last point below it, the area lost up to 1/steps of the curve and
    # moved with the map's float rounding (a map times 0.7 scored 0.0034 apart).
    step = fpr_limit / (steps - 1)
    fprs = np.append(np.linspace(0, fpr_limit, steps), min(1.0, fpr_limit + step))
    idx = np.clip(np.ceil((1 - fprs) * normal.size).astype(int) - 1, 0, normal.size - 1)
    thresholds = normal[idx]
    real_fpr = 1 - np.searchsorted(normal, thresholds, side="right") / normal.size
    pro = np.zeros_like(thresholds, dtype=np.float64)
    for r in regions:
        pro += 1 - np.searchsorted(r, thresholds, side="right") / r.size
    pro /= len(regions)
    order = np.argsort(real_fpr, kind="stable")
    x, y = real_fpr[order], pro[order]
    at_limit = float(np.interp(fpr_limit, x, y))
    keep = x < fpr_limit
    x, y = np.append(x[keep], fpr_limit), np.append(y[keep], at_limit)
    if x.size < 2:
        return float("nan")
    return float(np.trapezoid(y, x) / fpr_limit)
