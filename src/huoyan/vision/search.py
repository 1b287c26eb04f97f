"""Exact nearest-neighbour search of patch features against the memory bank.

Search dominates inference time. Measured on the 2-core CPU (docs/benchmarks.md):
one large matmul against a 16k bank writes a 784 x 16k distance matrix that spills out
of cache and runs at ~65 GFLOP/s, while matmuls over 2k-row chunks, each reduced to its
row minimum at once, run at ~150-190 GFLOP/s and stay exact. Both sides are centred on
the bank mean first, which keeps ||q||^2 + ||b||^2 - 2 q.b from cancelling badly.
A bf16 candidate pass with fp32 re-ranking was only 1.5x faster here and found the true
neighbour for 93-96% of patches, so the exact chunked fp32 search is the one used.
"""

from __future__ import annotations

import numpy as np
import torch

CHUNK_ROWS = 2048


class NearestNeighbourIndex:
    """Distance from query vectors to their nearest bank vector (Euclidean)."""

    def __init__(self, bank: np.ndarray) -> None:
        bank_t = torch.from_numpy(np.ascontiguousarray(bank, dtype=np.float32))
        self.mean = bank_t.mean(0)
        centred = bank_t - self.mean
        self.chunks = [c.t().contiguous() for c in torch.split(centred, CHUNK_ROWS)]
        self.sq_chunks = [(c * c).sum(0) for c in self.chunks]

    def distances(self, queries: np.ndarray) -> np.ndarray:
        """Nearest distance for each row of ``queries``."""
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)) - self.mean
        best = torch.full((q.shape[0],), float("inf"))
        for chunk, sq in zip(self.chunks, self.sq_chunks, strict=True):
            d = torch.addmm(sq, q, chunk, alpha=-2.0)
            torch.minimum(best, d.amin(1), out=best)
        best += (q * q).sum(1)
        out: np.ndarray = best.clamp_(min=0).sqrt_().numpy()
        return out
