"""DeepPCB's official detection protocol, ported to Python 3 (Tang et al., 2019).

DeepPCB scores detectors with a modified ICDAR 2015 evaluation script:

- a detection counts only when its IoU with a ground-truth box is above 0.33 *and* it
  names the right class;
- matching is greedy and one-to-one, in the order the boxes are listed: for each
  ground-truth box in turn, the first detection not yet used whose IoU is above the
  limit takes it. A detection of the wrong class that overlaps enough still uses up
  both boxes; it just does not count as a match;
- areas are those of continuous rectangles, ``(x2 - x1) * (y2 - y1)``, as the
  script's polygons measure them;
- precision, recall and the F-score (their harmonic mean) pool every image's boxes:
  precision over every detection submitted, recall over every ground-truth box;
- the AP pools all classes and images: detections sorted by confidence (highest
  first), precision summed at each correct one, divided by the number of ground-truth
  boxes (so detections never made count as zero precision).

``class_agnostic=True`` drops the class condition: the same protocol for finding
defects alone, which shows whether errors come from finding or from naming.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

IOU_LIMIT = 0.33


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box (pixel corners, ``x2``/``y2`` exclusive as in DeepPCB's files)
    with its class and, for a detection, its confidence."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    confidence: float = 1.0

    @property
    def area(self) -> float:
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when the union is empty)."""
    w = min(a.x2, b.x2) - max(a.x1, b.x1)
    h = min(a.y2, b.y2) - max(a.y1, b.y1)
    inter = max(0.0, w) * max(0.0, h)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def match(
    truth: Sequence[Box], detections: Sequence[Box], iou_limit: float = IOU_LIMIT, class_agnostic: bool = False
) -> list[bool]:
    """For each detection, in order: whether it is a correct match under the protocol."""
    truth_used = [False] * len(truth)
    det_used = [False] * len(detections)
    correct = [False] * len(detections)
    for g, gt in enumerate(truth):
        for d, det in enumerate(detections):
            if truth_used[g] or det_used[d]:
                continue
            if iou(gt, det) > iou_limit:
                truth_used[g] = det_used[d] = True
                correct[d] = class_agnostic or gt.label == det.label
    return correct


def average_precision(confidences: Sequence[float], correct: Sequence[bool], n_truth: int) -> float:
    """The ICDAR/DeepPCB AP: precision at each correct detection, highest confidence first,
    summed and divided by the number of ground-truth boxes. Ties keep submission order."""
    if not confidences or n_truth == 0:
        return 0.0
    order = np.argsort(-np.asarray(confidences, dtype=np.float64), kind="stable")
    hits = np.asarray(correct, dtype=bool)[order]
    ranks = np.arange(1, len(hits) + 1)
    cumulative = np.cumsum(hits)
    return float((cumulative[hits] / ranks[hits]).sum() / n_truth)


@dataclass(frozen=True)
class DetectionScores:
    precision: float
    recall: float
    fscore: float
    average_precision: float
    n_truth: int
    n_detections: int
    n_correct: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "fscore": self.fscore,
            "ap": self.average_precision,
            "n_truth": self.n_truth,
            "n_detections": self.n_detections,
            "n_correct": self.n_correct,
        }


def evaluate_detections(
    images: Iterable[tuple[Sequence[Box], Sequence[Box]]],
    iou_limit: float = IOU_LIMIT,
    class_agnostic: bool = False,
) -> DetectionScores:
    """The protocol over ``(truth, detections)`` per image, pooled over all images."""
    confidences: list[float] = []
    correct: list[bool] = []
    n_truth = 0
    for truth, detections in images:
        n_truth += len(truth)
        correct += match(truth, detections, iou_limit, class_agnostic)
        confidences += [d.confidence for d in detections]
    n_correct = sum(correct)
    recall = n_correct / n_truth if n_truth else 0.0
    precision = n_correct / len(correct) if correct else 0.0
    fscore = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return DetectionScores(
        precision=precision,
        recall=recall,
        fscore=fscore,
        average_precision=average_precision(confidences, correct, n_truth),
        n_truth=n_truth,
        n_detections=len(correct),
        n_correct=n_correct,
    )
