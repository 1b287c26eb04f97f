"""Comparison: the aligned template against the tested image, within a learned tolerance.

1. Photometric normalisation: the tested image's dark and bright levels (2nd and 98th
   percentiles, from a 256-bin histogram) are mapped onto the template's, so a re-lit
   part compares as the original.
2. The difference to a band: the template's darkest and brightest value within
   ``search_px`` of each pixel (grey erosion and dilation), so a pixel that matches the
   template anywhere within that distance does not differ at all. This absorbs the
   local misregistration a global warp leaves (boards and prints are not perfectly
   rigid), as PCB AOI's dilate/erode comparison does, and keeps the sign (material added
   or missing).
3. That difference divided by a per-pixel tolerance: a lookup table over the template's
   local edge strength (the 3x3 morphological gradient), learned as a high quantile of
   the difference on good pixels of the training pairs; with a fixed template, at least
   the pixel's own variation over the good training parts. The result, the *ratio
   map*, is the anomaly map: 1.0 is the tolerance everywhere.
4. A grey opening (2x2 by default), so only a patch of pixels out of tolerance counts
   (isolated pixels and one-pixel seams do not; thin diagonal cracks still do), a
   closing that joins a defect's fragments, and connected components: the candidate
   defects.
5. A local re-alignment of each candidate (``LocalShift``): the template
   around it moved by the few pixels that best match the tested image there. Boards
   stretch and etch unevenly, so a global warp leaves edges a few pixels off in
   places; a candidate that such a shift explains is misregistration, while a defect
   stays (moving the whole neighbourhood cannot add or remove a spur or a bite).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

EDGE_LEVELS = 256  # the lookup table's index: edge strength 0-255
_K3 = np.ones((3, 3), np.uint8)


@dataclass(frozen=True, slots=True)
class Levels:
    """Dark and bright levels of an image (its 2nd and 98th percentiles)."""

    dark: float
    bright: float

    @property
    def contrast(self) -> float:
        return self.bright - self.dark


def levels(image: np.ndarray, mask: np.ndarray | None = None) -> Levels:
    hist = np.asarray(cv2.calcHist([image], [0], mask, [256], [0, 256]), dtype=np.float64).ravel()
    cdf = np.cumsum(hist)
    if cdf[-1] == 0:
        return Levels(0.0, 0.0)
    cdf = cdf / cdf[-1]
    return Levels(float(np.searchsorted(cdf, 0.02)), float(np.searchsorted(cdf, 0.98)))


def normalise(image: np.ndarray, to: Levels, mask: np.ndarray | None = None) -> np.ndarray:
    """``image`` (uint8) with its levels mapped linearly onto ``to``'s (uint8, through a
    256-entry table: one pass over the pixels)."""
    own = levels(image, mask)
    if own.contrast < 1 or to.contrast < 1:
        return image
    gain = to.contrast / own.contrast
    table = np.clip(np.arange(256, dtype=np.float32) * gain + (to.dark - own.dark * gain), 0, 255)
    return np.asarray(cv2.LUT(image, np.round(table).astype(np.uint8)))


def edge_strength(template: np.ndarray) -> np.ndarray:
    """How much a pixel can change under a one-pixel misregistration (uint8)."""
    return cv2.morphologyEx(template, cv2.MORPH_GRADIENT, _K3)


@dataclass(frozen=True, slots=True)
class Difference:
    """A tested image against its aligned template."""

    signed: np.ndarray  # how far the normalised test lies outside the template's band (+ brighter), float32
    normalised: np.ndarray  # the tested image on the template's levels, uint8
    levels: Levels  # the template's dark and bright levels
    edges: np.ndarray  # the template's edge strength, uint8
    valid: np.ndarray  # uint8 0/1: pixels both images cover


def band_difference(normalised: np.ndarray, aligned: np.ndarray, search_px: int) -> np.ndarray:
    """How far each pixel of ``normalised`` lies outside the template's band within
    ``search_px`` (+ brighter, - darker; float32)."""
    low, high = aligned, aligned
    if search_px > 0:
        kernel = np.ones((2 * search_px + 1, 2 * search_px + 1), np.uint8)
        low, high = cv2.erode(aligned, kernel), cv2.dilate(aligned, kernel)
    # Saturating uint8 arithmetic: above the band, below it; one of the two is zero.
    above = cv2.subtract(normalised, high)
    below = cv2.subtract(low, normalised)
    return np.asarray(cv2.subtract(above, below, dtype=cv2.CV_32F))


def difference(image: np.ndarray, aligned: np.ndarray, valid: np.ndarray, search_px: int) -> Difference:
    mask = None if valid.all() else valid
    template_levels = levels(aligned, mask)
    normalised = normalise(image, template_levels, mask)
    signed = band_difference(normalised, aligned, search_px)
    return Difference(signed, normalised, template_levels, edge_strength(aligned), valid)


def tolerance_map(lut: np.ndarray, edges: np.ndarray, variation: np.ndarray | None) -> np.ndarray:
    """Per-pixel tolerance: the edge-strength table, at least the pixel's own learned variation."""
    tol = cv2.LUT(edges, lut.astype(np.float32).reshape(1, EDGE_LEVELS))
    if tol.ndim == 3:
        tol = tol[..., 0]
    if variation is not None:
        tol = np.maximum(tol, variation)
    return tol


def ratio_map(diff: Difference, tolerance: np.ndarray, opening_px: int) -> tuple[np.ndarray, np.ndarray]:
    """|difference| / tolerance, zero where the template does not cover: grey-opened
    (``opening_px`` square), the anomaly map; and as it is, whose pixels above 1 keep a
    defect's one-pixel lines (what the classifier looks at)."""
    raw = cv2.divide(np.abs(diff.signed), tolerance)
    raw[diff.valid == 0] = 0
    if opening_px <= 1:
        return raw, raw
    return cv2.morphologyEx(raw, cv2.MORPH_OPEN, np.ones((opening_px, opening_px), np.uint8)), raw


@dataclass(frozen=True, slots=True)
class Candidates:
    """Connected components of the out-of-tolerance mask (after closing)."""

    labels: np.ndarray  # int32, 0 = background
    stats: np.ndarray  # x, y, w, h, area per label as cv2 gives them (row 0: the whole image, background area)

    def __len__(self) -> int:
        return len(self.stats) - 1


def candidates(ratio: np.ndarray, merge_px: int) -> Candidates:
    mask: np.ndarray = (ratio > 1.0).astype(np.uint8)
    if not cv2.countNonZero(mask):  # most parts on a line: nothing to close or label
        empty = np.zeros(mask.shape, np.int32)
        return Candidates(empty, component_stats(mask, empty, 1))
    if merge_px > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (merge_px, merge_px))
        mask = np.asarray(cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel))
    count, labels = cv2.connectedComponents(mask, connectivity=8, ltype=cv2.CV_32S)
    return Candidates(labels, component_stats(mask, labels, count))


def component_stats(mask: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """``cv2.connectedComponentsWithStats``'s stats (x, y, w, h, area per label; row 0
    the whole image with the background's area) from the few foreground pixels: OpenCV's
    own pass over every pixel of a 640 px image costs four times the labelling itself."""
    height, width = mask.shape
    stats = np.zeros((count, 5), np.int32)
    points = cv2.findNonZero(mask)
    foreground = 0 if points is None else len(points)
    stats[0] = (0, 0, width, height, height * width - foreground)
    if count <= 1 or points is None:
        return stats
    xy = np.asarray(points).reshape(-1, 2)
    xs, ys = xy[:, 0], xy[:, 1]
    owner = labels[ys, xs]
    low_x = np.full(count, width, np.int32)
    low_y = np.full(count, height, np.int32)
    high_x = np.full(count, -1, np.int32)
    high_y = np.full(count, -1, np.int32)
    np.minimum.at(low_x, owner, xs)
    np.minimum.at(low_y, owner, ys)
    np.maximum.at(high_x, owner, xs)
    np.maximum.at(high_y, owner, ys)
    stats[1:, 0] = low_x[1:]
    stats[1:, 1] = low_y[1:]
    stats[1:, 2] = high_x[1:] - low_x[1:] + 1
    stats[1:, 3] = high_y[1:] - low_y[1:] + 1
    stats[1:, 4] = np.bincount(owner, minlength=count)[1:]
    return stats


@dataclass(slots=True)
class LocalShift:
    """Re-aligns candidates of one image locally (step 5 of the module docstring).

    The tested image and the template (and its variation) are padded once per image,
    by replication, so candidates at the border get a full neighbourhood."""

    normalised: np.ndarray
    aligned: np.ndarray
    variation: np.ndarray | None
    lut: np.ndarray
    search_px: int
    shift_px: int
    context_px: int = 12  # the neighbourhood around a candidate that must match
    _padded: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = field(default=None, init=False, repr=False)

    def _images(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if self._padded is None:
            b = self.context_px + self.shift_px

            def pad(a: np.ndarray) -> np.ndarray:
                return np.asarray(cv2.copyMakeBorder(a, b, b, b, b, cv2.BORDER_REPLICATE))

            self._padded = (
                pad(self.normalised),
                pad(self.aligned),
                None if self.variation is None else pad(self.variation),
            )
        return self._padded

    def residual(self, box: tuple[int, int, int, int], pixels: np.ndarray) -> float:
        """Out-of-tolerance pixels left in a candidate's neighbourhood once the template
        there is moved by the shift, within ``shift_px``, that best matches the tested
        image (least squared difference over the candidate and ``context_px`` around
        it), per out-of-tolerance pixel of the candidate (``pixels``, a bool mask over
        its ``box``: x, y, w, h). Infinite when no shift matches better than none.

        Counting the whole neighbourhood, not the candidate alone, is what tells a
        defect from misregistration: a shift can swallow a thin spur or bite into the
        search band, but then the edges around it stand out instead."""
        if self.shift_px == 0:
            return float("inf")
        count = int(pixels.sum())
        if count == 0:
            return float("inf")
        image, template, variation = self._images()
        x, y, w, h = box
        c, s = self.context_px, self.shift_px
        # Padded coordinates: the candidate's box starts at (x + c + s, y + c + s).
        tested = image[y + s : y + s + h + 2 * c, x + s : x + s + w + 2 * c]
        around = template[y : y + h + 2 * (c + s), x : x + w + 2 * (c + s)]
        ssd = cv2.matchTemplate(around, tested, cv2.TM_SQDIFF)
        dy, dx = np.unravel_index(int(np.argmin(ssd)), ssd.shape)
        if ssd[dy, dx] >= ssd[s, s]:
            return float("inf")
        moved = around[dy : dy + h + 2 * c, dx : dx + w + 2 * c]
        own = None if variation is None else variation[y + dy : y + dy + h + 2 * c, x + dx : x + dx + w + 2 * c]
        signed = band_difference(tested, moved, self.search_px)
        tolerance = tolerance_map(self.lut, edge_strength(moved), own)
        return int((np.abs(signed) > tolerance).sum()) / count


class ToleranceLearner:
    """Accumulates good pixels' differences by edge strength; ``table`` gives the
    tolerance per edge strength: the ``quantile`` of |difference|, times ``margin``,
    at least ``floor``, and never lower for a stronger edge."""

    def __init__(self, quantile: float, margin: float, floor: float) -> None:
        self.quantile = quantile
        self.margin = margin
        self.floor = floor
        self._counts = np.zeros((EDGE_LEVELS, 256), np.float64)

    def add(self, diff: Difference, good: np.ndarray) -> None:
        """``good``: uint8 0/1, the pixels known to be good (annotated defects left out)."""
        keep = (good > 0) & (diff.valid > 0)
        magnitude = np.minimum(np.abs(diff.signed[keep]), 255).astype(np.int64)
        index = diff.edges[keep].astype(np.int64) * 256 + magnitude
        self._counts += np.bincount(index, minlength=EDGE_LEVELS * 256).reshape(EDGE_LEVELS, 256)

    @property
    def pixels(self) -> int:
        return int(self._counts.sum())

    def table(self) -> np.ndarray:
        # Edge strengths with few pixels borrow from their neighbours: pool in bands of 8.
        bands = self._counts.reshape(EDGE_LEVELS // 8, 8, 256).sum(1)
        cdf = np.cumsum(bands, axis=1)
        totals = cdf[:, -1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            cdf = cdf / totals
        q = np.array(
            [np.searchsorted(row, self.quantile) if t > 0 else 0 for row, t in zip(cdf, totals[:, 0], strict=True)]
        )
        per_band = np.maximum(q.astype(np.float32) * self.margin, self.floor)
        per_band = np.maximum.accumulate(per_band)
        return np.repeat(per_band, 8).astype(np.float32)
