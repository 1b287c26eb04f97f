"""DeepPCB's official protocol, checked against cases worked by hand."""

from __future__ import annotations

import pytest

from huoyan.vision.detection_metrics import Box, average_precision, evaluate_detections, iou, match


def test_iou_must_be_above_the_limit_not_at_it() -> None:
    truth = Box(0, 0, 10, 10, "open")
    at_limit = Box(0, 0, 10, 3.3, "open")  # 33 / 100
    above = Box(0, 0, 10, 3.4, "open")  # 34 / 100
    assert iou(truth, at_limit) == pytest.approx(0.33)
    assert match([truth], [at_limit]) == [False]
    assert match([truth], [above]) == [True]


def test_a_perfect_detection_scores_one() -> None:
    s = evaluate_detections([([Box(5, 5, 20, 30, "short")], [Box(5, 5, 20, 30, "short", 0.9)])])
    assert (s.precision, s.recall, s.fscore, s.average_precision) == (1.0, 1.0, 1.0, 1.0)


def test_a_wrong_class_match_uses_up_both_boxes() -> None:
    truth = [Box(0, 0, 10, 10, "open")]
    detections = [Box(0, 0, 10, 10, "short", 0.9), Box(1, 1, 10, 10, "open", 0.8)]
    # The first detection takes the defect (IoU 1) but names it wrongly; the second,
    # right class and IoU 0.81, finds it already taken.
    assert match(truth, detections) == [False, False]
    s = evaluate_detections([(truth, detections)])
    assert (s.n_correct, s.precision, s.recall, s.fscore, s.average_precision) == (0, 0.0, 0.0, 0.0, 0.0)
    agnostic = evaluate_detections([(truth, detections)], class_agnostic=True)
    assert agnostic.precision == 0.5 and agnostic.recall == 1.0
    assert agnostic.fscore == pytest.approx(2 / 3) and agnostic.average_precision == 1.0


def test_matching_is_greedy_in_listed_order_not_by_best_overlap() -> None:
    truth = [Box(0, 0, 10, 10, "spur")]
    detections = [Box(0, 0, 10, 5, "spur", 0.5), Box(0, 0, 10, 10, "spur", 0.9)]  # IoU 0.5, then 1.0
    assert match(truth, detections) == [True, False]
    s = evaluate_detections([(truth, detections)])
    assert s.precision == 0.5 and s.recall == 1.0 and s.fscore == pytest.approx(2 / 3)
    # Ranked by confidence the unmatched one comes first: precision 1/2 at the only hit.
    assert s.average_precision == pytest.approx(0.5)


def test_scores_pool_every_image_and_ap_divides_by_all_defects() -> None:
    first = ([Box(0, 0, 10, 10, "open"), Box(50, 50, 60, 60, "copper")], [Box(0, 0, 10, 10, "open", 0.8)])
    second = (
        [Box(0, 0, 10, 10, "pin-hole")],
        [Box(100, 100, 110, 110, "pin-hole", 0.9), Box(0, 0, 10, 10, "pin-hole", 0.7)],
    )
    s = evaluate_detections([first, second])
    assert (s.n_truth, s.n_detections, s.n_correct) == (3, 3, 2)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)
    assert s.fscore == pytest.approx(2 / 3)
    # 0.9 wrong, 0.8 right (precision 1/2), 0.7 right (2/3): (1/2 + 2/3) / 3 defects.
    assert s.average_precision == pytest.approx((1 / 2 + 2 / 3) / 3)


def test_nothing_detected_scores_zero_not_an_error() -> None:
    s = evaluate_detections([([Box(0, 0, 5, 5, "open")], [])])
    assert (s.precision, s.recall, s.fscore, s.average_precision) == (0.0, 0.0, 0.0, 0.0)
    assert average_precision([], [], 0) == 0.0
