"""Patch features: local neighbourhood aggregation and multi-scale fusion (PatchCore).

Each tapped map is averaged over a 3x3 neighbourhood so a patch feature describes its
surroundings, not one receptive-field centre. Coarser maps are resized to the finest
map's grid and concatenated along channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchFeatures(nn.Module):
    """Fuse a list of NCHW maps (finest first) into one N x sum(C) x H x W map."""

    def __init__(self, neighbourhood: int = 3) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(neighbourhood, stride=1, padding=neighbourhood // 2)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        first = self.pool(maps[0])
        size = first.shape[-2:]
        fused = [first]
        for m in maps[1:]:
            fused.append(F.interpolate(self.pool(m), size=size, mode="bilinear", align_corners=False))
        return torch.cat(fused, dim=1)
