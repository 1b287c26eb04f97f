import numpy as np
import pytest

from huoyan.vision.coreset import coreset_size, greedy_coreset
from huoyan.vision.search import NearestNeighbourIndex


def test_coreset_size() -> None:
    assert coreset_size(1000, 0.1, None) == 100
    assert coreset_size(1000, 0.1, 50) == 50
    assert coreset_size(10, None, None) == 10
    assert coreset_size(10, 0.0001, None) == 1
    with pytest.raises(ValueError):
        coreset_size(10, 1.5, None)


def test_greedy_covers_every_cluster_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 50, (6, 64))
    labels = rng.integers(0, 6, 3000)
    x = (centres[labels] + rng.normal(0, 1, (3000, 64))).astype(np.float32)
    idx = greedy_coreset(x, 6, seed=1)
    assert len(set(labels[idx])) == 6
    assert np.array_equal(idx, greedy_coreset(x, 6, seed=1))
    assert len(np.unique(greedy_coreset(x, 200, seed=2))) == 200


def test_greedy_reduces_covering_radius_versus_random() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (4000, 32)).astype(np.float32) * rng.uniform(0.2, 3, 32).astype(np.float32)

    def radius(sel: np.ndarray) -> float:
        return float(NearestNeighbourIndex(x[sel]).distances(x).max())

    greedy = radius(greedy_coreset(x, 100, seed=0, projection_dim=32))
    random = radius(rng.choice(4000, 100, replace=False))
    assert greedy < random


def test_search_matches_brute_force() -> None:
    rng = np.random.default_rng(4)
    bank = rng.normal(0, 1, (5000, 40)).astype(np.float32) + 7  # offset: tests the centring
    q = rng.normal(0, 1, (300, 40)).astype(np.float32) + 7
    brute = np.sqrt(((q[:, None, :] - bank[None]) ** 2).sum(-1))
    got = NearestNeighbourIndex(bank).distances(q)
    np.testing.assert_allclose(got, brute.min(1), rtol=1e-4, atol=1e-3)
    small = NearestNeighbourIndex(bank[:7]).distances(q)  # a bank smaller than one chunk
    np.testing.assert_allclose(small, brute[:, :7].min(1), rtol=1e-4, atol=1e-3)
