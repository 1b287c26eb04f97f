"""Score-and-decide throughput over a fixed time, for comparing two builds of Huoyan.

Fits PatchCore once on the synthetic metal line (60 images, 224 px), then runs batch-8
scoring and the decision for ``--seconds`` and prints images/s. Run it alternately with
each build on ``PYTHONPATH`` (old, new, old, new …): a fixed duration per run and many
short alternations cope with a host whose speed drifts better than a few long runs.
Builds from before the decision stage (``PatchCore.predict`` judged) are timed through
``predict``.

    PYTHONPATH=/path/to/build/src python bench/decision_path.py --label new [--seconds 15]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from huoyan.sampleline.generator import make_sample
from huoyan.vision.patchcore import PatchCore


def decide_batch(model: PatchCore) -> Callable[[list[np.ndarray]], None]:
    try:
        from huoyan.decision.judge import ImageDecider, Policy
    except ImportError:  # a build from before the decision stage
        return lambda images: model.predict(images)  # type: ignore[attr-defined]
    decider = ImageDecider(Policy.of(model.threshold))

    def run(images: list[np.ndarray]) -> None:
        scores, maps = model.score(images)
        decider.judge_batch(images, scores, maps, ["part"] * len(images))

    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", default="build")
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    train = [make_sample("metal", None, 256, rng)[0] for _ in range(60)]
    test = [make_sample("metal", "scratch" if i % 2 else None, 256, rng)[0] for i in range(8)]
    model = PatchCore(image_size=224).prepare().fit(train)
    run = decide_batch(model)
    run(test)  # warm-up
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        run(test)
        n += len(test)
    print(f"{args.label}: {n / (time.perf_counter() - start):.1f} images/s (batch 8, score and decide)")


if __name__ == "__main__":
    main()
