"""Recipe preprocessing applied before the model: crop to the region of interest, rotate, resize."""

from __future__ import annotations

import cv2
import numpy as np

from huoyan.core.recipe import Preprocess

_ROTATIONS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


class PreprocessError(ValueError):
    """The image does not fit the recipe (for example the ROI lies outside it)."""


def apply(image: np.ndarray, cfg: Preprocess) -> np.ndarray:
    """Crop, then rotate clockwise, then resize. Regions are reported in this output's pixels."""
    out = image
    if cfg.roi is not None:
        x, y, w, h = cfg.roi
        height, width = image.shape[:2]
        if x + w > width or y + h > height:
            raise PreprocessError(f"roi {cfg.roi} lies outside the {width}x{height} image")
        out = out[y : y + h, x : x + w]
    if cfg.rotate:
        out = cv2.rotate(out, _ROTATIONS[cfg.rotate])
    if cfg.resize is not None:
        w, h = cfg.resize
        interp = cv2.INTER_AREA if w < out.shape[1] else cv2.INTER_LINEAR
        out = cv2.resize(out, (w, h), interpolation=interp)
    return np.ascontiguousarray(out)
