"""Evaluate a template model on annotated pairs with DeepPCB's official protocol.

Every pair counts: one that cannot be read or registered contributes its annotated
defects as misses, so a model that errors more never scores better. The throughput is
pairs compared per second, from decoded pairs to results (decoding is reported apart).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from huoyan.core.detector import Comparison, ImageDetector
from huoyan.core.models import DefectBox, Region
from huoyan.vision.detection_metrics import Box, evaluate_detections
from huoyan.vision.imageio import ImageError
from huoyan.vision.template.pairs import PairFiles, PairsError, load_pair, read_annotation


def truth_boxes(defects: Sequence[DefectBox]) -> list[Box]:
    return [Box(d.x1, d.y1, d.x2, d.y2, d.label) for d in defects]


def detected_boxes(regions: Sequence[Region]) -> list[Box]:
    """A comparison's regions as the protocol's detections, most confident first."""
    return [
        Box(r.x, r.y, r.x + r.width, r.y + r.height, r.label or "defect", r.confidence or 0.0)
        for r in sorted(regions, key=lambda r: r.confidence or 0.0, reverse=True)
    ]


def evaluate_pairs(model: ImageDetector, files: Sequence[PairFiles], batch_size: int = 8) -> dict[str, Any]:
    """F-score, AP, precision and recall, with classes and class-agnostic; throughput."""
    images: list[tuple[list[Box], list[Box]]] = []
    errors = 0
    decode_s = score_s = 0.0
    for start in range(0, len(files), batch_size):
        batch, truths = [], []
        for f in files[start : start + batch_size]:
            t0 = time.perf_counter()
            try:
                pair = load_pair(f)
            except (ImageError, PairsError):
                errors += 1
                noted = read_annotation(f.annotation) if f.annotation is not None and f.annotation.is_file() else ()
                images.append((truth_boxes(noted), []))
                continue
            finally:
                decode_s += time.perf_counter() - t0
            batch.append(pair)
            truths.append(truth_boxes(pair.defects))
        if not batch:
            continue
        t0 = time.perf_counter()
        _, evidence = model.score(batch)
        score_s += time.perf_counter() - t0
        for truth, comparison in zip(truths, evidence, strict=True):
            assert isinstance(comparison, Comparison)
            errors += comparison.error is not None
            images.append((truth, detected_boxes(comparison.regions)))
    n = len(files)
    return {
        "with_classes": evaluate_detections(images).as_dict(),
        "class_agnostic": evaluate_detections(images, class_agnostic=True).as_dict(),
        "pairs": n,
        "errors": errors,
        "pairs_per_second": (n - errors) / score_s if score_s > 0 else 0.0,
        "decode_ms_per_pair": 1000 * decode_s / n if n else 0.0,
    }
