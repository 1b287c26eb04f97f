"""Nearest-neighbour search of patch features against the memory bank: exact in float32,
or in bfloat16 with the nearest candidates measured again in float32.

Search dominates inference time, and on a CPU it is bound by the products of the queries
with the bank. What keeps them small and fast (measured on the 2-core development
machines, docs/benchmarks.md):

- The coarse (stride-16) part of a patch feature is a bilinear resize of a grid 4x
  smaller than the patch grid. Resizing is linear, so its dot products with the bank are
  taken on that grid and then resized: the same numbers for a quarter of the work on
  112 of the 152 channels.
- The fused kernel (``fused_search``, C compiled at install for AVX-512 and AVX2) keeps
  each tile of products in registers, resizes the coarse ones there and reduces them to
  row minima at once: nothing but the minima is written, the bank is read once per image
  (1.6-1.8x the library path). Where it is not built, the library path takes the bank in
  ~1k-row chunks, each product reduced to its row minimum at once so the block stays in
  cache, its buffer reused (fresh multi-MB tensors cost page faults on every chunk).
- The bank is held once, in its own dtype: a float16 bank stays float16 in memory (half
  the bytes of a float32 bank), converted to float32 as it is searched.
- ``precision="bfloat16"`` (a model's ``search_precision``), on CPUs with AVX-512 BF16:
  products at twice the float32 rate, every candidate for the nearest row measured again
  in float32; a packed copy of the bank is held for it.

Both sides are centred on the bank mean, which keeps ||q||^2 + ||b||^2 - 2 q.b from
cancelling badly. Approximate searches (PCA projections, inverted lists) were measured
and rejected: each lost image AUROC or saved no time; so was pruning by the triangle
inequality, which skips almost nothing in 152 dimensions (docs/benchmarks.md, *Where a
part's time goes*).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from huoyan.vision import fused_search
from huoyan.vision.features import upsample
from huoyan.vision.fused_search import Query

CHUNK_ROWS = 1024
QUERY_ROWS = 1024

Kernel = Literal["auto", "fused", "library"]
Precision = Literal["float32", "bfloat16"]


class NearestNeighbourIndex:
    """Distance from query vectors to their nearest bank vector (Euclidean).

    ``bank`` is used in place (no copy): float32 or float16, N x D. Calls are thread-safe;
    each allocates its own work buffers. ``kernel``: the fused kernel (``fused_search``)
    where it is built and the CPU runs it ("auto"), or always one path. ``precision``
    "bfloat16": products in bfloat16 where the CPU has AVX-512 BF16 and the fused kernel,
    the candidates measured again in float32 (a packed copy of the bank is held for it);
    float32 elsewhere.
    """

    def __init__(self, bank: np.ndarray, kernel: Kernel = "auto", precision: Precision = "float32") -> None:
        if bank.ndim != 2 or bank.dtype not in (np.float32, np.float16):
            raise ValueError("the bank must be a 2-D float32 or float16 array")
        if kernel == "fused" and not fused_search.available():
            raise RuntimeError("the fused search kernel is not built or this CPU cannot run it")
        self.fused = kernel == "fused" or (kernel == "auto" and fused_search.available())
        self.bank = torch.from_numpy(np.ascontiguousarray(bank))
        total = torch.zeros(bank.shape[1], dtype=torch.float64)
        for chunk in torch.split(self.bank, CHUNK_ROWS):
            total += chunk.double().sum(0)
        self.mean = (total / max(1, bank.shape[0])).float()
        self.packed: fused_search.PackedBank | None = None
        if precision == "bfloat16" and self.fused and fused_search.bfloat16_available():
            self.packed = fused_search.pack_bfloat16(self.bank, self.mean)

    @property
    def nbytes(self) -> int:
        """Bytes held for the bank (the bank itself, its mean and any packed copy)."""
        packed = self.packed.nbytes if self.packed is not None else 0
        return int(self.bank.numel() * self.bank.element_size() + self.mean.numel() * 4 + packed)

    def distances(self, queries: np.ndarray) -> np.ndarray:
        """Nearest distance for each row of ``queries`` (n x D)."""
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)) - self.mean
        n, d = q.shape
        count = max(1, math.ceil(n / QUERY_ROWS))
        size = math.ceil(n / count) if n else 1
        blocks = [q[s : s + size] for s in range(0, n, size)]
        images = [[Query(b * -2.0, (b.shape[0], 1), slice(0, d))] for b in blocks]
        sq = [(b * b).sum(1) for b in blocks]
        return self._nearest(images, sq).numpy() if n else np.zeros(0, np.float32)

    def map_distances(self, maps: Sequence[np.ndarray]) -> np.ndarray:
        """Nearest distance of every patch, N x h x w, from the backbone's averaged maps.

        ``maps``: finest first, each N x C x h x w; the patch feature at a grid point is
        the maps resized to the finest grid and concatenated (``features.fuse``).
        """
        first = maps[0]
        n, h, w = first.shape[0], first.shape[2], first.shape[3]
        images: list[list[Query]] = [[] for _ in range(n)]
        sq = torch.zeros(n, h * w)
        start = 0
        for m in maps:
            c = m.shape[1]
            channels = slice(start, start + c)
            start += c
            centred = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)) - self.mean[channels, None, None]
            resized = centred if m.shape[2:] == (h, w) else upsample(centred, (h, w))
            sq += resized.square().sum(1).reshape(n, h * w)
            rows = centred.permute(0, 2, 3, 1).reshape(n, -1, c) * -2.0
            for i in range(n):
                images[i].append(Query(rows[i], (m.shape[2], m.shape[3]), channels))
        if start != self.bank.shape[1]:
            raise ValueError(f"features have {start} channels, the bank {self.bank.shape[1]}")
        return self._nearest(images, list(sq)).numpy().reshape(n, h, w)

    def _nearest(self, images: list[list[Query]], sq: list[torch.Tensor]) -> torch.Tensor:
        """Row minima of ||q - b|| over the bank for every image's queries, concatenated."""
        threads = torch.get_num_threads()
        out = None
        if self.packed is not None:  # None where the maps' channels cannot be taken in pairs
            out = fused_search.nearest_bfloat16(self.bank, self.mean, self.packed, images, threads)
        if out is None and self.fused:
            out = fused_search.nearest(self.bank, self.mean, images, threads)
        if out is None:
            out = self._library_minima(images, sq)
        out += torch.cat(sq)
        return out.clamp_(min=0).sqrt_()

    def _library_minima(self, images: list[list[Query]], sq: list[torch.Tensor]) -> torch.Tensor:
        """Row minima of ||b||^2 - 2 q.b by library matrix products, chunk by chunk."""
        best = [torch.full_like(s, float("inf")) for s in sq]
        chunk_buf = torch.empty(min(CHUNK_ROWS, self.bank.shape[0]), self.bank.shape[1])
        for chunk in torch.split(self.bank, CHUNK_ROWS):
            b = chunk_buf[: chunk.shape[0]]
            b.copy_(chunk)
            b.sub_(self.mean)
            b_sq = (b * b).sum(1)
            # Every image meets the chunk while it is hot in cache.
            for parts, s, row_best in zip(images, sq, best, strict=True):
                torch.minimum(row_best, self._chunk_products(parts, b, s.shape[0]).add_(b_sq).amin(1), out=row_best)
        return torch.cat(best)

    @staticmethod
    def _chunk_products(parts: list[Query], b: torch.Tensor, rows: int) -> torch.Tensor:
        """-2 q.b for one image's queries (rows x chunk), coarse parts resized from their grid."""
        fine = [p for p in parts if p.rows.shape[0] == rows]
        coarse = [p for p in parts if p.rows.shape[0] != rows]
        h, w = fine[0].grid
        out: torch.Tensor | None = None
        for p in coarse:
            g = torch.mm(p.rows, b[:, p.channels].t())
            gh, gw = p.grid
            up = upsample(g.view(1, gh, gw, -1).permute(0, 3, 1, 2), (h, w)).permute(0, 2, 3, 1).reshape(rows, -1)
            out = up if out is None else out.add_(up)
        for p in fine:
            if out is None:
                out = torch.mm(p.rows, b[:, p.channels].t())
            else:
                out.addmm_(p.rows, b[:, p.channels].t())
        assert out is not None
        return out
