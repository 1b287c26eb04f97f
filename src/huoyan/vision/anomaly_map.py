"""Anomaly maps: patch distances -> smoothed map at model resolution (the decision stage
brings it to the image's resolution).

The patch grid (stride 8) is upsampled bilinearly to the model input size and smoothed
with a Gaussian (sigma 4 px, as in PatchCore), which removes the blockiness of the grid
and makes the map's maximum a stable image score.
"""

from __future__ import annotations

import cv2
import numpy as np


def patch_grid_to_map(patch_scores: np.ndarray, size: int, sigma: float = 4.0) -> np.ndarray:
    """h x w patch distances -> size x size smoothed float32 map."""
    up = cv2.resize(patch_scores.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    if sigma > 0:
        up = cv2.GaussianBlur(up, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    return up
