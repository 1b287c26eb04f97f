"""Lighting normalisation: what the backbone sees of a part's brightness, contrast and shading.

A station's lighting drifts, and parts of one kind differ in shade; a model fitted on
good parts takes both for anomalies unless the input is normalised first. This module
is the first layer of the feature network (``backbone.build_backbone``), so the Python
model, its ONNX or OpenVINO export and their standalone runner all normalise alike.

Modes (a PatchCore's ``lighting`` parameter):

- ``fixed``: the pixels' fixed scaling only (mean = std = 0.5), as the backbone was trained.
- ``image``: each image is shifted and scaled to a common mean and spread over all its
  pixels and channels (one gain and offset, so colours keep their relations), then kept
  in the input's range.
- ``shading``: first each channel is divided by its slow shading across the image (the
  image blurred over an eighth of its size), then as ``image``: for uneven lighting
  across a part, e.g. curved or large surfaces.

What each mode buys and costs is measured on magnetic tile and the sample line in
docs/benchmarks.md. Neither normalising mode is for lines where a part's overall shade is
itself a defect (burn marks covering a part, a wrong colour): that is what they hide.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LIGHTINGS = ("fixed", "image", "shading")
# Spread of a normalised image: 50 grey levels of 255 (magnetic tile's good images have 10
# to 50, median 28); values beyond the input's range are clipped, as in an 8-bit image.
TARGET_SPREAD = 50 / 127.5
# The least spread divided by: a flat image is left flat rather than amplified noise.
MIN_SPREAD = 2 / 127.5
# Shading is estimated on the image averaged over blocks of this many pixels.
SHADING_BLOCK = 8


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian taps over +-3 sigma."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


class LightingNormalisation(nn.Module):
    """NCHW float32 input scaled to [-1, 1] -> the same, normalised as ``mode`` says.

    Written so its ONNX graph has no shape arithmetic (every size is fixed here from
    ``image_size``): a dozen small operators at full resolution with shape arithmetic
    between them cost the backbone 1.27x at batch 1 (docs/benchmarks.md)."""

    taps_h: torch.Tensor
    taps_w: torch.Tensor
    mirrored: torch.Tensor

    def __init__(self, mode: str, image_size: int, channels: int = 3) -> None:
        super().__init__()
        if mode not in LIGHTINGS:
            raise ValueError(f"lighting must be one of {LIGHTINGS}, got {mode!r}")
        self.mode = mode
        # The shading's blur: an eighth of the image, on the grid of SHADING_BLOCK-pixel
        # blocks (the same result for a blur this wide, a sixty-fourth of the work), its
        # taps cut to the mirrored border a small grid allows and normalised again.
        if image_size % SHADING_BLOCK:
            raise ValueError(f"image_size must be a multiple of {SHADING_BLOCK}")
        grid = image_size // SHADING_BLOCK
        taps = gaussian_kernel(image_size / 8 / SHADING_BLOCK)
        radius = taps.shape[0] // 2
        pad = min(radius, grid - 1)
        cut = taps[radius - pad : radius + pad + 1]
        cut = (cut / cut.sum()).repeat(channels, 1)
        self.register_buffer("taps_h", cut.view(channels, 1, -1, 1))
        self.register_buffer("taps_w", cut.view(channels, 1, 1, -1))
        # The grid's mirrored border (edge not repeated: torch's "reflect") as fixed indices.
        self.register_buffer("mirrored", torch.from_numpy(np.pad(np.arange(grid), pad, mode="reflect")))

    def _shading(self, x: torch.Tensor) -> torch.Tensor:
        """Each channel divided by its blurred self, both in grey levels (the blurred one + 1,
        never zero): levels / (background + 1) with levels = 127.5 (x + 1), the blur being
        linear, is (x + 1) / (blurred x + 1 + 1 / 127.5). (Less 1, the share of the shading
        centred on 0; the standardisation that follows takes any offset away.)"""
        coarse = F.avg_pool2d(x, SHADING_BLOCK)
        # Mirrored borders. (Continuing the edge's slope instead keeps a ramp of light
        # straight, but cost magnetic tile 0.014 of pixel AUROC: it overshoots at bright or
        # dark rims; docs/benchmarks.md.)
        coarse = coarse.index_select(2, self.mirrored).index_select(3, self.mirrored)
        blurred = F.conv2d(F.conv2d(coarse, self.taps_h, groups=x.shape[1]), self.taps_w, groups=x.shape[1])
        background = F.interpolate(blurred + (1.0 + 1.0 / 127.5), scale_factor=SHADING_BLOCK, mode="bilinear")
        return (x + 1.0) / background

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "fixed":
            return x
        if self.mode == "shading":
            x = self._shading(x)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        centred = x - mean
        spread = centred.square().mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp(min=MIN_SPREAD)
        return (centred * (TARGET_SPREAD / spread)).clamp(-1.0, 1.0)
