from pathlib import Path

import numpy as np
import pytest

from huoyan.vision.coreset import coreset_size, greedy_coreset
from huoyan.vision.features import fuse
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
    idx = greedy_coreset(x, 6, seed=1).indices
    assert len(set(labels[idx])) == 6
    assert np.array_equal(idx, greedy_coreset(x, 6, seed=1).indices)
    assert len(np.unique(greedy_coreset(x, 200, seed=2).indices)) == 200


def test_continued_selection_takes_only_what_the_bank_leaves_uncovered() -> None:
    rng = np.random.default_rng(5)
    old = rng.normal(0, 1, (2000, 48)).astype(np.float32)
    first = greedy_coreset(old, 200, seed=3)
    assert first.radius > 0
    bank = old[first.indices]
    # New rows like the old ones are already covered: at most a few join.
    similar = greedy_coreset(old[:500] + 0.01, 50, seed=3, covered_by=bank, radius=first.radius)
    assert len(similar.indices) <= 5
    # A cluster far from the bank is not: it joins, and is then covered as densely.
    far = rng.normal(0, 1, (500, 48)).astype(np.float32) + 40
    new = greedy_coreset(far, 200, seed=3, covered_by=bank, radius=first.radius)
    assert 0 < len(new.indices) <= 200
    assert new.radius <= first.radius or len(new.indices) == 200
    # The same seed gives the same projection, so the continuation is reproducible.
    again = greedy_coreset(far, 200, seed=3, covered_by=bank, radius=first.radius)
    assert np.array_equal(new.indices, again.indices)


def test_greedy_reduces_covering_radius_versus_random() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (4000, 32)).astype(np.float32) * rng.uniform(0.2, 3, 32).astype(np.float32)

    def radius(sel: np.ndarray) -> float:
        return float(NearestNeighbourIndex(x[sel]).distances(x).max())

    greedy = radius(greedy_coreset(x, 100, seed=0, projection_dim=32).indices)
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


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_search_from_feature_maps_matches_search_of_fused_features(dtype: type) -> None:
    # The coarse map's products are taken on its own grid and resized: same distances.
    rng = np.random.default_rng(6)
    fine = rng.normal(2, 1, (3, 8, 12, 12)).astype(np.float32)
    coarse = rng.normal(-1, 1, (3, 20, 6, 6)).astype(np.float32)
    fused = fuse([fine, coarse])
    bank = (fused.reshape(-1, 28)[::3] + rng.normal(0, 0.3, (144, 28))).astype(dtype)
    index = NearestNeighbourIndex(bank)
    got = index.map_distances([fine, coarse])
    assert got.shape == (3, 12, 12)
    brute = np.sqrt(((fused.reshape(-1, 1, 28) - bank.astype(np.float32)[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(got.reshape(-1), brute, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(index.distances(fused.reshape(-1, 28)), brute, rtol=1e-4, atol=1e-4)
    # A float16 bank is searched in place: no float32 copy is held.
    assert index.nbytes == bank.nbytes + 28 * 4
    with pytest.raises(ValueError, match="channels"):
        index.map_distances([fine])


def test_long_work_reports_its_progress_to_a_listener_and_to_nobody_otherwise(fitted: object, line_dir: Path) -> None:
    """The CLI's fit bar listens to these reports (huoyan.core.progress): the coreset's
    selection and the backbone's feature extraction, each up to its total."""
    import threading

    from huoyan.core import progress
    from huoyan.vision.imageio import list_images, read_image

    heard: list[tuple[str, int, int]] = []
    rows = np.random.default_rng(0).standard_normal((2000, 16)).astype(np.float32)
    greedy_coreset(rows, 200)  # nobody listens: nothing to report to, nothing breaks
    images = [read_image(p) for p in list_images(line_dir / "train" / "good")[:5]]
    with progress.listening(lambda *args: heard.append(args)):
        greedy_coreset(rows, 200)
        fitted.feature_maps(images)  # type: ignore[attr-defined]
        other = threading.Thread(target=greedy_coreset, args=(rows, 50))  # another thread: not this listener's
        other.start()
        other.join()
    coreset = [h for h in heard if h[0] == "coreset"]
    features = [h for h in heard if h[0] == "features"]
    assert coreset[-1] == ("coreset", 200, 200) and len(coreset) == 100 and all(h[2] == 200 for h in coreset)
    assert features[-1] == ("features", 5, 5) and [h[1] for h in features] == sorted(h[1] for h in features)
