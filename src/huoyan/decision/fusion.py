"""Verdicts of several judgements made one: the channels of a part (two camera views, a
camera and a sensor), and the windows of a recording.

A part of several channels is judged by the recipe's ``fusion`` rule over its channels'
verdicts (``core.recipe.Fusion``: any NG, all NG, or a weighted mean of normalised
scores), each channel's outcome listed as a rule, so the record says which channel made
the part NG. A recording judged window by window is NG when any window is, its score
the highest window's, its diagnosis the family most often diagnosed in its NG windows
(in all windows if none is NG).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from huoyan.core.models import ChannelVerdict, RuleOutcome, Verdict
from huoyan.core.recipe import Fusion


@dataclass(frozen=True, slots=True)
class Fused:
    verdict: Verdict
    score: float | None  # normalised: 1.0 is the fused threshold
    rules: list[RuleOutcome]
    error: str | None


def fuse(channels: Sequence[ChannelVerdict], fusion: Fusion) -> Fused:
    """The part's verdict from its channels' (see the module's text)."""
    rules = [
        RuleOutcome(
            rule=f"channel {c.channel} NG",
            met=c.verdict == Verdict.NG,
            value=c.normalised_score,
            limit=1.0 if c.normalised_score is not None else None,
        )
        for c in channels
    ]
    failed = [c for c in channels if c.verdict == Verdict.ERROR]
    error = "; ".join(f"{c.channel}: {c.error or 'no verdict'}" for c in failed) or None
    scores = [c.normalised_score for c in channels if c.normalised_score is not None]
    top = max(scores, default=None)
    if fusion.rule == "weighted":
        if failed:
            return Fused(Verdict.ERROR, None, rules, error)
        weights = [fusion.weights.get(c.channel, 1.0) for c in channels]
        total = sum(weights)
        mean = sum(w * (c.normalised_score or 0.0) for w, c in zip(weights, channels, strict=True)) / (total or 1.0)
        score = mean / fusion.threshold
        rule = RuleOutcome(rule="weighted mean of the channels' normalised scores", met=mean > fusion.threshold,
                           value=mean, limit=fusion.threshold)  # fmt: skip
        return Fused(Verdict.NG if rule.met else Verdict.OK, score, [*rules, rule], None)
    ng = [c for c in channels if c.verdict == Verdict.NG]
    if fusion.rule == "all_ng":
        if failed:
            return Fused(Verdict.ERROR, top, rules, error)
        verdict = Verdict.NG if ng and len(ng) == len(channels) else Verdict.OK
        return Fused(verdict, top, rules, None)
    if ng:
        return Fused(Verdict.NG, top, rules, None)  # a channel that failed cannot clear a part another found NG
    if failed:
        return Fused(Verdict.ERROR, top, rules, error)
    return Fused(Verdict.OK, top, rules, None)


def worst_window(verdicts: Sequence[Verdict], scores: Sequence[float | None]) -> int:
    """The window that speaks for a recording: the highest-scoring NG window, else the
    highest-scoring one."""
    order = sorted(
        range(len(verdicts)),
        key=lambda i: (verdicts[i] == Verdict.NG, scores[i] if scores[i] is not None else float("-inf")),
    )
    return order[-1]


def recording_verdict(verdicts: Sequence[Verdict]) -> Verdict:
    if Verdict.NG in verdicts:
        return Verdict.NG
    return Verdict.OK if Verdict.OK in verdicts else Verdict.ERROR


def diagnosis_counts(verdicts: Sequence[Verdict], diagnoses: Sequence[str | None]) -> Counter[str]:
    """How often each family was diagnosed in the NG windows (in all windows if none is NG)."""
    ng = [d for v, d in zip(verdicts, diagnoses, strict=True) if v == Verdict.NG]
    return Counter(d for d in (ng if Verdict.NG in verdicts else diagnoses) if d is not None)


def recording_diagnosis(verdicts: Sequence[Verdict], diagnoses: Sequence[str | None]) -> str | None:
    """The family most often diagnosed in the NG windows (all windows if none is NG)."""
    counted = diagnosis_counts(verdicts, diagnoses)
    return counted.most_common(1)[0][0] if counted else None
