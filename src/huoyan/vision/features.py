"""Patch features: local neighbourhood aggregation and multi-scale fusion (PatchCore).

Each tapped map is averaged over a 3x3 neighbourhood so a patch feature describes its
surroundings, not one receptive-field centre. The backbone returns the averaged maps at
their own resolutions; ``fuse`` resizes the coarser ones to the finest grid and
concatenates them along channels. Keeping the coarse maps apart until then lets the
search take their dot products with the bank on their own, 4x smaller, grid and resize
those instead (``search``): resizing is linear, so the distances are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class PatchFeatures(nn.Module):
    """Average each NCHW map over its 3x3 neighbourhood, keeping each map's resolution."""

    def __init__(self, neighbourhood: int = 3) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(neighbourhood, stride=1, padding=neighbourhood // 2)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.pool(m) for m in maps]


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with half-pixel centres: the one resize used for features and distances."""
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def fuse(maps: Sequence[np.ndarray]) -> np.ndarray:
    """Averaged maps (finest first, each N x C x h x w) -> N x H x W x sum(C) patch features."""
    first = torch.from_numpy(maps[0])
    size = (first.shape[-2], first.shape[-1])
    parts = [first] + [upsample(torch.from_numpy(m), size) for m in maps[1:]]
    out: np.ndarray = torch.cat(parts, dim=1).permute(0, 2, 3, 1).contiguous().numpy()
    return out
