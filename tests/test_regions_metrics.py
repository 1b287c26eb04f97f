import numpy as np
import pytest

from huoyan.decision.regions import find_regions
from huoyan.vision.metrics import aupro, f1_max, image_auroc, pixel_auroc


def test_regions_boxes_areas_and_scores() -> None:
    m = np.zeros((60, 80), np.float32)
    m[10:20, 5:25] = 2.0  # 200 px
    m[40:43, 70:73] = 1.5  # 9 px
    regions = find_regions(m, level=1.0, mm_per_px=0.1)
    assert [(r.x, r.y, r.width, r.height, r.area_px) for r in regions] == [(5, 10, 20, 10, 200), (70, 40, 3, 3, 9)]
    assert regions[0].area_mm2 == pytest.approx(2.0)
    assert regions[0].max_score == 2.0 and regions[1].mean_score == 1.5
    assert len(find_regions(m, level=1.0, min_area_px=10)) == 1
    assert find_regions(np.zeros((5, 5)), level=1.0) == []


def test_metrics_perfect_and_inverted() -> None:
    rng = np.random.default_rng(0)
    masks = [np.zeros((32, 32), bool) for _ in range(4)]
    masks[1][5:10, 5:10] = True
    masks[2][20:30, 2:6] = True
    perfect = [m.astype(np.float32) + rng.uniform(0, 0.1, m.shape) for m in masks]
    assert pixel_auroc(masks, perfect) == 1.0
    assert aupro(masks, perfect) == pytest.approx(1.0, abs=1e-3)
    inverted = [1 - p for p in perfect]
    assert pixel_auroc(masks, inverted) == 0.0
    assert aupro(masks, inverted) < 0.05
    noise = [rng.uniform(0, 1, m.shape) for m in masks]
    assert 0.4 < pixel_auroc(masks, noise) < 0.6
    # AUPRO of a random map is about the mean FPR over [0, 0.3], i.e. 0.15.
    assert aupro(masks, noise) == pytest.approx(0.15, abs=0.05)


@pytest.mark.parametrize("side", [17, 64, 224])
def test_aupro_integrates_up_to_the_fpr_limit_itself(side: int) -> None:
    """The curve's last quantile step falls short of (or rounds past) 0.3 false-positive
    rate on most grids: the area is taken up to exactly 0.3, so a perfect map scores 1 and
    a map multiplied by a constant scores as before."""
    rng = np.random.default_rng(side)
    mask = np.zeros((side, side), bool)
    mask[2:7, 3:9] = True
    perfect = rng.uniform(0, 1, mask.shape).astype(np.float32) + 2 * mask
    assert aupro([mask], [perfect]) == pytest.approx(1.0, abs=1e-12)
    noisy = [rng.uniform(0, 1, mask.shape).astype(np.float32) + 0.3 * mask for _ in range(3)]
    for scale in (0.7, 0.7321, 3.0):
        scaled = [m * np.float32(scale) for m in noisy]
        assert aupro([mask] * 3, scaled) == pytest.approx(aupro([mask] * 3, noisy), abs=1e-12)


def test_image_metrics() -> None:
    y = np.array([0, 0, 1, 1])
    assert image_auroc(y, np.array([0.1, 0.2, 0.3, 0.9])) == 1.0
    assert f1_max(y, np.array([0.1, 0.5, 0.3, 0.9])) == pytest.approx(0.8)
