"""Defect regions: an anomaly map brought to the image's resolution, binarised at the
threshold, and each blob described (box, area, mm², scores)."""

from __future__ import annotations

import cv2
import numpy as np

from huoyan.core.models import Region


def resize_map(anomaly_map: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resample a model-resolution map to an image's original width and height."""
    if anomaly_map.shape == (height, width):
        return anomaly_map
    return cv2.resize(anomaly_map, (width, height), interpolation=cv2.INTER_LINEAR)


def find_regions(
    normalised_map: np.ndarray,
    level: float = 1.0,
    min_area_px: int = 0,
    mm_per_px: float | None = None,
) -> list[Region]:
    """Connected regions where ``normalised_map >= level``, largest first.

    ``normalised_map`` is the anomaly map divided by the NG threshold, so ``level=1``
    marks exactly the pixels that are anomalous by the calibrated threshold.
    """
    mask = (normalised_map >= level).astype(np.uint8)
    if not mask.any():
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    inside = mask.ravel().astype(bool)
    flat_labels = labels.ravel()[inside]
    values = normalised_map.ravel()[inside].astype(np.float64)
    sums = np.bincount(flat_labels, weights=values, minlength=n)
    maxima = np.full(n, -np.inf)
    np.maximum.at(maxima, flat_labels, values)
    regions = []
    for lab in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[lab])
        if area < min_area_px:
            continue
        regions.append(
            Region(
                x=x,
                y=y,
                width=w,
                height=h,
                area_px=area,
                area_mm2=None if mm_per_px is None else area * mm_per_px**2,
                max_score=float(maxima[lab]),
                mean_score=float(sums[lab] / area),
            )
        )
    regions.sort(key=lambda r: r.area_px, reverse=True)
    return regions
