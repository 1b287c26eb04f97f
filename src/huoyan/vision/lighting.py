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

Measured on magnetic tile (docs/benchmarks.md): not for lines where a part's overall shade
is itself a defect (burn marks covering a part, a wrong colour), which these modes hide.
"""

from __future__ import annotations

import math

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
    """NCHW float32 input scaled to [-1, 1] -> the same, normalised as ``mode`` says."""

    taps: torch.Tensor

    def __init__(self, mode: str, image_size: int) -> None:
        super().__init__()
        if mode not in LIGHTINGS:
            raise ValueError(f"lighting must be one of {LIGHTINGS}, got {mode!r}")
        self.mode = mode
        # The shading's blur: an eighth of the image, in blocks of SHADING_BLOCK pixels.
        self.register_buffer("taps", gaussian_kernel(image_size / 8 / SHADING_BLOCK))

    def _shading(self, x: torch.Tensor) -> torch.Tensor:
        """Each channel divided by its blurred self (in grey levels + 1, never zero).

        The blur runs on a grid SHADING_BLOCK times coarser (same result for a blur this
        wide, a sixty-fourth of the work), with the taps cut to what a small grid allows."""
        levels = (x + 1.0) * 127.5
        n, c, h, w = levels.shape
        coarse = F.avg_pool2d(levels, SHADING_BLOCK, ceil_mode=True)
        radius = self.taps.shape[0] // 2
        flat = coarse.reshape(n * c, 1, coarse.shape[2], coarse.shape[3])
        pad_h, pad_w = min(radius, flat.shape[2] - 1), min(radius, flat.shape[3] - 1)
        # Mirrored borders, as far as the coarse grid allows. (Continuing the edge's slope
        # instead keeps a ramp of light straight, but cost magnetic tile 0.014 of pixel
        # AUROC: it overshoots at bright or dark rims; docs/benchmarks.md.)
        flat = F.pad(flat, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
        taps_h = self.taps[radius - pad_h : radius + pad_h + 1]
        taps_w = self.taps[radius - pad_w : radius + pad_w + 1]
        blurred = F.conv2d(flat, (taps_h / taps_h.sum()).view(1, 1, -1, 1))
        blurred = F.conv2d(blurred, (taps_w / taps_w.sum()).view(1, 1, 1, -1))
        background = F.interpolate(blurred.reshape(n, c, *blurred.shape[2:]), size=(h, w), mode="bilinear")
        # As a share of the shading, centred on 0: a mid-grey image's units stay the same.
        return levels / (background + 1.0) - 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "fixed":
            return x
        if self.mode == "shading":
            x = self._shading(x)
        flat = x.reshape(x.shape[0], -1)
        mean = flat.mean(1).view(-1, 1, 1, 1)
        spread = flat.std(1).clamp(min=MIN_SPREAD).view(-1, 1, 1, 1)
        return ((x - mean) * (TARGET_SPREAD / spread)).clamp(-1.0, 1.0)
