"""Why a part is OK or NG: the threshold, the regions that count, and the recipe's rules.

A part is NG when its score is above the threshold, at least one region of the map
above the threshold is as large as ``min_region_area_px`` (when that is set), and, when
the recipe gives region rules ("NG only if a region is larger than 2 mm²"), some
counted region meets one. Anything else is OK. The normalised score is score /
threshold, so 1.0 is the threshold for every model and recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from huoyan.core.models import InspectionResult, Region, Verdict
from huoyan.core.recipe import Decision, RegionRule
from huoyan.decision.regions import find_regions, resize_map


@dataclass(frozen=True)
class Policy:
    """Everything a verdict depends on besides the part itself."""

    threshold: float  # raw score
    min_region_area_px: int = 0
    mm_per_px: float | None = None
    region_rules: tuple[RegionRule, ...] = ()

    @classmethod
    def of(cls, calibrated: float, decision: Decision | None = None, mm_per_px: float | None = None) -> Policy:
        """The model's calibrated threshold unless the recipe's ``decision`` overrides it."""
        d = decision or Decision()
        threshold = calibrated if isinstance(d.threshold, str) else float(d.threshold)
        return cls(threshold, d.min_region_area_px, mm_per_px, tuple(d.ng_if_any_region))


def meets_a_rule(region: Region, rules: Sequence[RegionRule]) -> bool:
    for rule in rules:
        value = getattr(region, rule.field)
        if value is not None and value > rule.above:
            return True
    return False


def verdict(score: float, regions: Sequence[Region], policy: Policy) -> Verdict:
    """The verdict for a score and the regions found above the threshold (see the module's text)."""
    if score <= policy.threshold:
        return Verdict.OK
    if policy.min_region_area_px > 0 and not regions:
        return Verdict.OK  # only blobs smaller than what counts
    if policy.region_rules and not any(meets_a_rule(r, policy.region_rules) for r in regions):
        return Verdict.OK
    return Verdict.NG


class ImageDecider:
    """Judges images from their score and model-resolution anomaly map."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    @property
    def threshold(self) -> float:
        return self.policy.threshold

    def judge(self, image: np.ndarray, score: float, model_map: np.ndarray, name: str) -> InspectionResult:
        p = self.policy
        height, width = image.shape[:2]
        raw_map = resize_map(model_map, width, height)
        above = score > p.threshold
        regions = find_regions(raw_map / p.threshold, 1.0, p.min_region_area_px, p.mm_per_px) if above else []
        return InspectionResult(
            source_name=name,
            verdict=verdict(score, regions, p),
            score=score,
            normalised_score=score / p.threshold,
            regions=regions,
            width=width,
            height=height,
            anomaly_map=raw_map,
        )

    def judge_batch(
        self, images: Sequence[np.ndarray], scores: Sequence[float], maps: Sequence[np.ndarray], names: Sequence[str]
    ) -> list[InspectionResult]:
        return [self.judge(img, float(s), m, n) for img, s, m, n in zip(images, scores, maps, names, strict=True)]
