"""Guarded bank updates: reviewed good parts join a model's memory bank only when that
is shown not to cost what the model promises.

False alarms a reviewer has marked good are the cheapest lesson a memory-bank model can
get: their patches join the bank (``PatchCore.partial_fit``) in seconds, without a refit.
Two things can go wrong, and both are checked on images that did not join the bank:

- **Good parts.** The updated model's rejections among held-out good images must not
  contradict the false-reject bound its card states: refused when, were the bound
  true, that many rejections would happen with probability below 1 - confidence (a
  one-sided binomial test at the card's own confidence). Too few held-out images to
  test at all is a refusal too.
- **Defects.** Every confirmed defect the model caught before must still score above
  the threshold. A part wrongly reviewed as good takes its defect's look into the bank
  and lets its kind through; this check is what catches that.

The threshold is not changed: a bank that only grows can only lower scores, so good
parts keep their bound and the question is only whether defects still stand out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field
from scipy.stats import binom

from huoyan.vision.patchcore import PatchCore

# Fewer held-out good images than this cannot test a false-reject bound of a few percent.
MIN_HELD_OUT = 10


class UpdateCheck(BaseModel):
    """What a guarded update found, accepted or not, as kept with the new version."""

    added_images: int
    bank_rows_before: int
    bank_rows_after: int
    threshold: float
    held_out_good: int
    held_out_rejected: int
    false_reject_bound: float = Field(description="the card's upper bound of the false-reject rate")
    confidence: float
    bound_p_value: float | None = Field(
        description="chance of this many rejections or more among the held-out good images were the bound true"
    )
    bound_holds: bool
    defects: int = Field(description="confirmed defects checked")
    defects_caught_before: int
    defects_let_through: list[int] = Field(
        description="positions (in the order given) of confirmed defects the model caught before and passes after"
    )
    accepted: bool
    reasons: list[str] = Field(default_factory=list, description="why the update was refused")


def guarded_update(
    model: PatchCore,
    additions: Sequence[np.ndarray],
    held_out_good: Sequence[np.ndarray],
    defects: Sequence[np.ndarray] = (),
) -> UpdateCheck:
    """Add ``additions`` to ``model``'s bank in place and check the result.

    ``model`` is changed whatever the outcome (load a fresh copy of the parent); save it
    as a new version only when the check says ``accepted``.
    """
    threshold = model.threshold
    calibration = model.card_.calibration
    caught_before = model.score(list(defects)).raw > threshold if len(defects) else np.zeros(0, bool)
    rows_before = int(model.bank_.shape[0])
    model.partial_fit(additions)
    reasons: list[str] = []
    rejected = 0
    p_value: float | None = None
    if len(held_out_good) < MIN_HELD_OUT:
        reasons.append(
            f"only {len(held_out_good)} held-out good images; at least {MIN_HELD_OUT} are needed to check the "
            "false-reject bound"
        )
    else:
        rejected = int((model.score(list(held_out_good)).raw > threshold).sum())
        # P(X >= rejected) for X ~ Binomial(n, bound): small means the bound no longer holds.
        p_value = float(binom.sf(rejected - 1, len(held_out_good), calibration.false_reject_rate_upper))
        if p_value < 1 - calibration.confidence:
            reasons.append(
                f"{rejected} of {len(held_out_good)} held-out good images are still rejected: more than a "
                f"false-reject rate of {calibration.false_reject_rate_upper:.2%} allows at "
                f"{calibration.confidence:.0%} confidence (the model needs a refit, not an update)"
            )
    after = model.score(list(defects)).raw > threshold if len(defects) else np.zeros(0, bool)
    let_through = [int(i) for i in np.flatnonzero(caught_before & ~after)]
    if let_through:
        reasons.append(
            f"{len(let_through)} confirmed defect(s) caught before would pass after the update: an added image "
            "probably shows a defect"
        )
    return UpdateCheck(
        added_images=len(additions),
        bank_rows_before=rows_before,
        bank_rows_after=int(model.bank_.shape[0]),
        threshold=threshold,
        held_out_good=len(held_out_good),
        held_out_rejected=rejected,
        false_reject_bound=calibration.false_reject_rate_upper,
        confidence=calibration.confidence,
        bound_p_value=p_value,
        bound_holds=p_value is not None and p_value >= 1 - calibration.confidence,
        defects=len(defects),
        defects_caught_before=int(caught_before.sum()),
        defects_let_through=let_through,
        accepted=not reasons,
        reasons=reasons,
    )
