"""Greedy k-center coreset selection of the memory bank (PatchCore, Roth et al. 2022).

Selecting centres greedily (each new centre is the point farthest from those chosen)
keeps the bank's coverage of normal variation while shrinking it 10-100x. As in the
paper, distances are computed after a random Gaussian projection to a few dimensions:
the ordering of far points survives the projection, and each iteration then touches a
N x d array small enough to stay in cache (d=32: ~0.7 ms/iteration for 157k points).
"""

from __future__ import annotations

import numpy as np
import torch


def coreset_size(n: int, ratio: float | None, size: int | None) -> int:
    """Number of centres for a bank of ``n`` patches, from an explicit size or a ratio."""
    if size is not None:
        if size < 1:
            raise ValueError("coreset size must be >= 1")
        return min(size, n)
    if ratio is None:
        return n
    if not 0 < ratio <= 1:
        raise ValueError("coreset ratio must be in (0, 1]")
    return max(1, min(n, round(n * ratio)))


def greedy_coreset(features: np.ndarray, k: int, seed: int = 0, projection_dim: int = 32) -> np.ndarray:
    """Indices of ``k`` rows of ``features`` chosen by greedy k-center selection.

    Deterministic for a given ``seed``: it fixes both the projection and the first centre.
    """
    n, d = features.shape
    if k >= n:
        return np.arange(n)
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    if projection_dim < d:
        proj = torch.randn(d, projection_dim, generator=gen) / projection_dim**0.5
        x = x @ proj
    x = x.contiguous()
    sq = (x * x).sum(1)
    selected = np.empty(k, dtype=np.int64)
    idx = int(torch.randint(n, (1,), generator=gen))
    min_dist = torch.full((n,), float("inf"))
    for i in range(k):
        selected[i] = idx
        # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; the constant ||c||^2 is added once.
        dist = torch.addmv(sq, x, x[idx], alpha=-2.0).add_(sq[idx])
        torch.minimum(min_dist, dist, out=min_dist)
        idx = int(torch.argmax(min_dist))
    return selected
