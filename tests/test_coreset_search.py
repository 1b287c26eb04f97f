import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from huoyan.vision import fused_search
from huoyan.vision.coreset import coreset_size, greedy_coreset
from huoyan.vision.features import fuse
from huoyan.vision.fused_search import Query
from huoyan.vision.search import NearestNeighbourIndex

KERNELS = ["library", "fused"] if fused_search.available() else ["library"]
COPIES = [lanes for lanes in (16, 8) if fused_search.lanes() >= lanes]


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}


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


@pytest.mark.parametrize("kernel", KERNELS)
def test_search_matches_brute_force(kernel: str) -> None:
    rng = np.random.default_rng(4)
    bank = rng.normal(0, 1, (5000, 40)).astype(np.float32) + 7  # offset: tests the centring
    q = rng.normal(0, 1, (300, 40)).astype(np.float32) + 7
    brute = np.sqrt(((q[:, None, :] - bank[None]) ** 2).sum(-1))
    got = NearestNeighbourIndex(bank, kernel=kernel).distances(q)  # type: ignore[arg-type]
    np.testing.assert_allclose(got, brute.min(1), rtol=1e-4, atol=1e-3)
    small = NearestNeighbourIndex(bank[:7], kernel=kernel).distances(q)  # type: ignore[arg-type]
    np.testing.assert_allclose(small, brute[:, :7].min(1), rtol=1e-4, atol=1e-3)


def test_the_fused_kernel_is_built_wherever_the_cpu_can_run_it() -> None:
    # The build is optional (a machine without a compiler still installs); on the x86-64
    # machines Huoyan runs on, a kernel that failed to build would silently halve the speed.
    flags = _cpu_flags()
    if platform.machine() != "x86_64" or not {"avx2", "fma", "f16c"} <= flags:
        pytest.skip("not an x86-64 CPU with AVX2, FMA and F16C")
    assert fused_search.lanes() == (16 if "avx512f" in flags else 8)
    assert NearestNeighbourIndex(np.zeros((4, 3), np.float32)).fused


@pytest.mark.skipif(not COPIES, reason="the fused kernel is not built for this CPU")
@pytest.mark.parametrize("lanes", COPIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_every_copy_of_the_fused_kernel_gives_the_library_distances(lanes: int, dtype: type) -> None:
    # Sizes that fill no block or tile evenly: bank rows, output rows, grids, channels.
    rng = np.random.default_rng(11)
    bank = rng.normal(1, 2, (1013, 31)).astype(dtype)
    index = NearestNeighbourIndex(bank, kernel="library")
    images = [
        [
            Query(torch.randn(13 * 11, 9) * -2, (13, 11), slice(0, 9)),
            Query(torch.randn(7 * 6, 15) * -2, (7, 6), slice(9, 24)),
            Query(torch.randn(3 * 3, 7) * -2, (3, 3), slice(24, 31)),
        ]
        for _ in range(3)
    ]
    want = index._library_minima(images, [torch.zeros(13 * 11)] * 3)
    for threads in (1, 2, 5):
        got = fused_search.nearest(index.bank, index.mean, images, threads, lanes=lanes)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-3)
    lone = [[Query(torch.randn(5, 31), (5, 1), slice(0, 31))]]  # fewer rows than a tile, no coarse maps
    torch.testing.assert_close(
        fused_search.nearest(index.bank, index.mean, lone, 2, lanes=lanes),
        index._library_minima(lone, [torch.zeros(5)]),
        rtol=1e-5,
        atol=1e-3,
    )


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_search_from_feature_maps_matches_search_of_fused_features(kernel: str, dtype: type) -> None:
    # The coarse map's products are taken on its own grid and resized: same distances.
    rng = np.random.default_rng(6)
    fine = rng.normal(2, 1, (3, 8, 12, 12)).astype(np.float32)
    coarse = rng.normal(-1, 1, (3, 20, 6, 6)).astype(np.float32)
    fused = fuse([fine, coarse])
    bank = (fused.reshape(-1, 28)[::3] + rng.normal(0, 0.3, (144, 28))).astype(dtype)
    index = NearestNeighbourIndex(bank, kernel=kernel)  # type: ignore[arg-type]
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


@pytest.mark.skipif(not fused_search.bfloat16_available(), reason="this CPU has no AVX-512 BF16")
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_a_bfloat16_search_gives_real_rows_float32_distances_and_nearly_always_the_nearest(dtype: type) -> None:
    # Clustered features, as patch features are: near ties between rows are common.
    rng = np.random.default_rng(21)
    centres = rng.normal(0, 3, (40, 56)).astype(np.float32)
    fused = (centres[rng.integers(0, 40, (2, 16, 16))] + rng.normal(0, 1, (2, 16, 16, 56))).astype(np.float32)
    fine = np.ascontiguousarray(fused[..., :24].transpose(0, 3, 1, 2))
    coarse = np.ascontiguousarray(fused[:, ::2, ::2, 24:].transpose(0, 3, 1, 2))
    bank = (centres[rng.integers(0, 40, 3001)] + rng.normal(0, 1, (3001, 56))).astype(dtype)
    exact = NearestNeighbourIndex(bank, kernel="library").map_distances([fine, coarse])
    index = NearestNeighbourIndex(bank, precision="bfloat16")
    assert index.packed is not None and index.nbytes > bank.nbytes + index.packed.words.nbytes
    got = index.map_distances([fine, coarse])
    # Never below the exact minimum (each is a real row's distance), never above its bound,
    # and the exact minimum itself for nearly every patch.
    assert np.all(got >= exact * (1 - 1e-5))
    same = np.isclose(got, exact, rtol=1e-5)
    assert same.mean() >= 0.95, same.mean()
    rounding = 2.0**-7 + 2.0**-16 + 56 * 2.0**-23
    centred = bank.astype(np.float32) - bank.astype(np.float32).mean(0)
    bound = 2 * rounding * 2 * np.abs(fused).sum(-1).max() * np.linalg.norm(centred, axis=1).max()
    assert np.all(got**2 - exact**2 <= bound)
    # Where the channels cannot be packed in pairs (a map starting on an odd channel), the
    # search is float32 and exact.
    odd = NearestNeighbourIndex(bank[:, 1:], precision="bfloat16")
    shifted = [np.ascontiguousarray(fine[:, 1:]), coarse]
    np.testing.assert_allclose(
        odd.map_distances(shifted),
        NearestNeighbourIndex(bank[:, 1:], kernel="library").map_distances(shifted),
        rtol=1e-5,
    )
