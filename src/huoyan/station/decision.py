"""From the engine's result to the station's verdict: threshold override and per-region rules."""

from __future__ import annotations

from huoyan.core.models import InspectionResult, Region, Verdict
from huoyan.core.recipe import Decision


def region_matches(region: Region, cfg: Decision) -> bool:
    for rule in cfg.ng_if_any_region:
        value = getattr(region, rule.field)
        if value is not None and value > rule.above:
            return True
    return False


def decide(result: InspectionResult, cfg: Decision) -> Verdict:
    """The engine's NG stands unless the recipe has region rules and no region meets one.

    Rules let a product tolerate small blemishes: "NG only if a region is larger than
    2 mm²". A rule on ``area_mm2`` needs ``preprocess.mm_per_px``, which the recipe
    validation enforces.
    """
    if result.verdict != Verdict.NG or not cfg.ng_if_any_region:
        return result.verdict
    return Verdict.NG if any(region_matches(r, cfg) for r in result.regions) else Verdict.OK
