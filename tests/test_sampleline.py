import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from huoyan.sampleline.generator import DEFECTS, PRODUCTS, generate_line, make_sample
from huoyan.vision.dataset import load_category


@pytest.mark.parametrize("product", PRODUCTS)
def test_same_seed_same_part(product: str) -> None:
    a, ma = make_sample(product, "scratch", 96, np.random.default_rng(5))
    b, mb = make_sample(product, "scratch", 96, np.random.default_rng(5))
    c, _ = make_sample(product, "scratch", 96, np.random.default_rng(6))
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("product", PRODUCTS)
@pytest.mark.parametrize("defect", DEFECTS)
def test_defect_has_mask_and_changes_pixels(product: str, defect: str) -> None:
    rng_state = 11
    good, gmask = make_sample(product, None, 128, np.random.default_rng(rng_state))
    bad, mask = make_sample(product, defect, 128, np.random.default_rng(rng_state))
    assert not gmask.any()
    assert mask.dtype == bool and 5 <= mask.sum() < 0.2 * mask.size
    # The defect changes the image where the mask is.
    assert np.abs(bad.astype(int) - good.astype(int))[mask].mean() > 5


@pytest.mark.parametrize("product", PRODUCTS)
def test_not_separable_by_mean_brightness(product: str) -> None:
    rng = np.random.default_rng(0)
    good = [make_sample(product, None, 96, rng)[0].mean() for _ in range(40)]
    bad = [make_sample(product, DEFECTS[i % len(DEFECTS)], 96, rng)[0].mean() for i in range(40)]
    auroc = roc_auc_score([0] * 40 + [1] * 40, good + bad)
    assert 0.25 < auroc < 0.75


def test_generate_line_is_mvtec_layout(tmp_path) -> None:
    roots = generate_line(tmp_path, products=("metal",), n_train=3, n_test_good=2, n_test_defect=1, size=64)
    cat = load_category(roots[0])
    assert len(cat.train) == 3
    assert sum(not s.is_defect for s in cat.test) == 2
    assert sorted({s.defect_type for s in cat.test if s.is_defect}) == sorted(DEFECTS)
    assert all(s.mask_path is not None and s.mask_path.is_file() for s in cat.test if s.is_defect)
