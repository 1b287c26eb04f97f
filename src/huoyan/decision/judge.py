"""Why a part is OK or NG: the threshold, the regions that count, and the recipe's rules.

A part is NG when its score is above the threshold, at least one region of the map
above the threshold is as large as ``min_region_area_px`` (when that is set), and, when
the recipe gives region rules ("NG only if a region is larger than 2 mm²"), some
counted region meets one. Anything else is OK. The normalised score is score /
threshold, so 1.0 is the threshold for every model and recipe. Each judgement lists
these conditions with the part's values (``RuleOutcome``), and its record keeps them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from huoyan.core.detector import Comparison, Condition, Decider
from huoyan.core.models import InspectionResult, Measurement, Region, RuleOutcome, Verdict
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
    return any(_above(getattr(region, rule.field), rule.above) for rule in rules)


def _above(value: float | None, limit: float) -> bool:
    return value is not None and value > limit


def rule_outcomes(score: float, regions: Sequence[Region], policy: Policy) -> list[RuleOutcome]:
    """Each condition of the policy with this part's value: the part is NG when all are met.

    The region rules count as one condition (any rule met by any region), each listed
    with the largest value a region had for its field."""
    met = _above(score, policy.threshold)
    out = [RuleOutcome(rule="score above threshold", met=met, value=score, limit=policy.threshold)]
    if policy.min_region_area_px > 0:
        largest = max((r.area_px for r in regions), default=0)
        out.append(
            RuleOutcome(
                rule="a region at least min_region_area_px",
                met=bool(regions),
                value=float(largest),
                limit=float(policy.min_region_area_px),
            )
        )
    for rule in policy.region_rules:
        values = [v for r in regions if (v := getattr(r, rule.field)) is not None]
        top = max(values, default=None)
        out.append(
            RuleOutcome(
                rule=f"a region {rule.field} above {rule.above:g}",
                met=_above(top, rule.above),
                value=None if top is None else float(top),
                limit=rule.above,
            )
        )
    return out


def verdict_of(outcomes: Sequence[RuleOutcome], policy: Policy) -> Verdict:
    """NG when the score and region-size conditions are met and, if there are region
    rules, at least one of them is."""
    region_rules = len(policy.region_rules)
    required = outcomes[: len(outcomes) - region_rules] if region_rules else outcomes
    if not all(o.met for o in required):
        return Verdict.OK
    if region_rules and not any(o.met for o in outcomes[-region_rules:]):
        return Verdict.OK
    return Verdict.NG


def verdict(score: float, regions: Sequence[Region], policy: Policy) -> Verdict:
    """The verdict for a score and the regions found above the threshold (see the module's text)."""
    return verdict_of(rule_outcomes(score, regions, policy), policy)


def judged(
    name: str,
    score: float,
    regions: list[Region],
    policy: Policy,
    size: tuple[int | None, int | None],
    anomaly_map: np.ndarray | None = None,
    reference: np.ndarray | None = None,
) -> InspectionResult:
    """The result for a part: its counted regions and the policy's rule outcomes and
    verdict; the anomaly map and the reference travel with it unstored."""
    rules = rule_outcomes(score, regions, policy)
    width, height = size
    return InspectionResult(
        source_name=name,
        verdict=verdict_of(rules, policy),
        rules=rules,
        score=score,
        normalised_score=score / policy.threshold,
        regions=regions,
        width=width,
        height=height,
        anomaly_map=anomaly_map,
        reference=reference,
    )


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
        above = _above(score, p.threshold)
        regions = find_regions(raw_map / p.threshold, 1.0, p.min_region_area_px, p.mm_per_px) if above else []
        return judged(name, score, regions, p, (width, height), anomaly_map=raw_map)

    def judge_batch(
        self, images: Sequence[np.ndarray], scores: Sequence[float], maps: Sequence[np.ndarray], names: Sequence[str]
    ) -> list[InspectionResult]:
        return [self.judge(img, float(s), m, n) for img, s, m, n in zip(images, scores, maps, names, strict=True)]


class DefectDecider:
    """Judges images whose detector found and named the defects itself (template
    comparison): its regions are the candidates, the same policy decides. A comparison
    that could not be made (registration failed) is an ERROR with its reason."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    @property
    def threshold(self) -> float:
        return self.policy.threshold

    def judge(self, image: np.ndarray, score: float, evidence: Comparison, name: str) -> InspectionResult:
        height, width = image.shape[:2]
        if evidence.error is not None or not math.isfinite(score):
            return InspectionResult(
                source_name=name,
                verdict=Verdict.ERROR,
                error=evidence.error or "no comparison",
                width=width,
                height=height,
            )
        p = self.policy
        regions = [
            r if p.mm_per_px is None else r.model_copy(update={"area_mm2": r.area_px * p.mm_per_px**2})
            for r in evidence.regions
            if r.max_score > p.threshold and r.area_px >= p.min_region_area_px
        ]
        return judged(name, score, regions, p, (width, height), evidence.anomaly_map, evidence.reference)


class SignalDecider:
    """Judges windows of a sensor channel from their score alone (a window has no
    regions); a window that could not be analysed is an ERROR with its reason."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    @property
    def threshold(self) -> float:
        return self.policy.threshold

    def judge(self, window: Any, score: float, evidence: Condition, name: str) -> InspectionResult:
        if evidence.error is not None or not math.isfinite(score):
            return InspectionResult(source_name=name, verdict=Verdict.ERROR, error=evidence.error or "no score")
        result = judged(name, score, [], self.policy, (None, None))
        channel = getattr(window, "channel", "") or "main"
        return result.model_copy(
            update={
                "diagnosis": evidence.diagnosis.family if evidence.diagnosis else None,
                "measurements": [
                    Measurement(channel=channel, name=name, value=value)
                    for name, value in evidence.measurements.items()
                    if math.isfinite(value)
                ],
            }
        )


def decider_for(detector: Any, policy: Policy) -> Decider:
    """The decision stage for ``detector``: windows of a sensor channel, its own named
    defects (``names_defects``), or regions cut from its anomaly map."""
    if getattr(detector, "judges_signals", False):
        return SignalDecider(policy)
    if getattr(detector, "names_defects", False):
        return DefectDecider(policy)
    return ImageDecider(policy)


@dataclass(frozen=True)
class ThresholdPreview:
    """What a new threshold would have done to recent parts, judged by their score alone
    (a part whose score passes may still be kept OK by the region rules)."""

    threshold: float
    parts: int
    ng_now: int
    ng_then: int
    ok_to_ng: int
    ng_to_ok: int


def preview_threshold(scored: Sequence[tuple[float, str]], threshold: float) -> ThresholdPreview:
    """``scored``: (raw score, verdict) of recent OK and NG parts."""
    ok_to_ng = sum(1 for score, verdict in scored if verdict == "OK" and _above(score, threshold))
    ng_to_ok = sum(1 for score, verdict in scored if verdict == "NG" and not _above(score, threshold))
    ng_now = sum(1 for _, verdict in scored if verdict == "NG")
    return ThresholdPreview(threshold, len(scored), ng_now, ng_now + ok_to_ng - ng_to_ok, ok_to_ng, ng_to_ok)
