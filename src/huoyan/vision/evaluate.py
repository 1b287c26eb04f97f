"""Evaluate a fitted model on an MVTec-layout category with the standard metrics.

Pixel metrics are computed at the model's input resolution, with masks resized the same
way as images (as anomalib does); maps at original resolution come from ``predict``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from huoyan.core.calibration import rates_at
from huoyan.core.detector import ImageDetector
from huoyan.vision.dataset import Category, read_mask
from huoyan.vision.imageio import read_image
from huoyan.vision.metrics import aupro, f1_max, image_auroc, pixel_auroc


def evaluate(
    model: ImageDetector, category: Category, batch_size: int = 8, progress: Callable[[int], object] | None = None
) -> dict[str, Any]:
    """Image AUROC, pixel AUROC, AUPRO, F1-max, rates at the threshold, throughput;
    ``progress`` is told how many test images each scored batch held."""
    images = [read_image(s.path) for s in category.test]
    labels = np.array([s.is_defect for s in category.test], dtype=int)
    start = time.perf_counter()
    scores_list, maps_list = [], []
    for i in range(0, len(images), batch_size):
        s, m = model.score(images[i : i + batch_size])
        scores_list.append(s)
        maps_list.append(np.asarray(m))
        if progress is not None:
            progress(len(s))
    elapsed = time.perf_counter() - start
    scores = np.concatenate(scores_list)
    maps = list(np.concatenate(maps_list))
    height, width = maps[0].shape  # masks are compared at the maps' (model) resolution
    masks = [read_mask(s.mask_path, width, height) for s in category.test]
    result: dict[str, Any] = {
        "category": str(category.root),
        "test_images": len(images),
        "defect_images": int(labels.sum()),
        "image_auroc": image_auroc(labels, scores) if 0 < labels.sum() < len(labels) else float("nan"),
        "pixel_auroc": pixel_auroc(masks, maps),
        "aupro": aupro(masks, maps),
        "f1_max": f1_max(labels, scores) if labels.sum() else float("nan"),
        "threshold": model.threshold,
        "images_per_second": len(images) / elapsed,
    }
    result.update(rates_at(model.threshold, scores[labels == 0], scores[labels == 1]))
    return result
