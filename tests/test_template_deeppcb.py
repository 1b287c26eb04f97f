"""The template detector on real boards: DeepPCB's development groups (../shared/data).

Trains on a sixth of the development split's training pairs and checks, on test pairs
it never saw, that every one of the six defect types is found and named. The full
split's numbers are bench/template.py's.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from huoyan.vision.detection_metrics import match
from huoyan.vision.template.detector import TemplateComparison
from huoyan.vision.template.evaluate import detected_boxes, truth_boxes
from huoyan.vision.template.pairs import DEEPPCB_TYPES, load_pair, read_split_list

DEEPPCB = Path(__file__).resolve().parents[2] / "shared" / "data" / "deeppcb" / "PCBData"

pytestmark = [
    pytest.mark.data,
    pytest.mark.slow,
    pytest.mark.skipif(not DEEPPCB.is_dir(), reason="needs ../shared/data/deeppcb"),
]


def test_every_deeppcb_defect_type_is_found_and_named_on_unseen_boards() -> None:
    train = [load_pair(f) for f in read_split_list(DEEPPCB / "trainval_subset.txt")[::6]]
    test = [load_pair(f) for f in read_split_list(DEEPPCB / "test_subset.txt")[::3]]
    model = TemplateComparison(n_trees=100, seed=0).fit(train)
    _, evidence = model.score(test)
    named, found, total = Counter[str](), Counter[str](), Counter[str]()
    for pair, comparison in zip(test, evidence, strict=True):
        assert comparison.error is None, f"{pair.name}: {comparison.error}"
        truth, detections = truth_boxes(pair.defects), detected_boxes(comparison.regions)
        right = match(truth, detections)
        anywhere = match(truth, detections, class_agnostic=True)
        for d, ok, hit in zip(detections, right, anywhere, strict=True):
            if hit:
                found[d.label] += 1
            named[d.label] += ok
        total.update(b.label for b in truth)
    assert set(total) == set(DEEPPCB_TYPES.values())
    for kind in DEEPPCB_TYPES.values():
        assert named[kind] >= 0.75 * total[kind], f"{kind}: {named[kind]} of {total[kind]} found and named"
    assert sum(named.values()) >= 0.85 * sum(total.values())
    assert sum(found.values()) >= 0.92 * sum(total.values())
