"""Synthetic printed boards for the template detector's tests: a golden template, and
tested images with known defects of DeepPCB's six types, a known motion and lighting.

Copper is dark on a bright laminate, as in DeepPCB. Each board has vertical traces,
pads, a few horizontal stubs and fiducial crosses in its corners, so registration has
structure in both directions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from huoyan.core.models import DefectBox, PairedImage

COPPER, LAMINATE = 40, 215
TYPES = ("open", "short", "mousebite", "spur", "copper", "pin-hole")
BOX_PAD = 8


@dataclass
class Board:
    image: np.ndarray
    traces: list[int] = field(default_factory=list)  # x of each vertical trace's left edge
    pads: list[tuple[int, int]] = field(default_factory=list)
    trace_width: int = 8
    pad_radius: int = 11


def board(seed: int, size: int = 192) -> Board:
    rng = np.random.default_rng(seed)
    img = np.full((size, size), LAMINATE, np.uint8)
    b = Board(img)
    x = 18 + int(rng.integers(0, 6))
    while x < size - 60:
        b.traces.append(x)
        cv2.rectangle(img, (x, 8), (x + b.trace_width - 1, size - 9), COPPER, -1)
        x += 22 + int(rng.integers(0, 5))
    # Each trace ends in a pad at one end or the other, at no fixed pitch.
    for i, x in enumerate(b.traces):
        end = 14 if (i + seed) % 2 else size - 15
        cv2.rectangle(img, (x - 3, end - 6), (x + b.trace_width + 2, end + 5), COPPER, -1)
    for _ in range(3):
        y = int(rng.integers(20, size - 20))
        cv2.rectangle(img, (size - 50, y), (size - 12, y + 5), COPPER, -1)
    # Fiducial marks in the corners, as real boards carry for alignment.
    for fx, fy in ((8, 8), (size - 9, 8), (8, size - 9), (size - 9, size - 9)):
        cv2.line(img, (fx - 5, fy), (fx + 5, fy), COPPER, 2)
        cv2.line(img, (fx, fy - 5), (fx, fy + 5), COPPER, 2)
    for cy in (30, size // 2, size - 34):
        cx = size - 30 + int(rng.integers(-3, 4))
        b.pads.append((cx, cy))
        cv2.circle(img, (cx, cy), b.pad_radius, COPPER, -1)
    return b


def add_defect(b: Board, image: np.ndarray, kind: str, rng: np.random.Generator) -> DefectBox:
    """Draw one defect of ``kind`` on ``image`` (a copy of ``b.image``); return its box."""
    w = b.trace_width
    h = image.shape[0]
    y = int(rng.integers(30, h - 40))
    if kind == "open":
        x = b.traces[int(rng.integers(0, len(b.traces)))]
        x0, y0, x1, y1 = x - 1, y, x + w, y + 4
        cv2.rectangle(image, (x0, y0), (x1, y1), LAMINATE, -1)
    elif kind == "short":
        i = int(rng.integers(0, len(b.traces) - 1))
        x0, y0, x1, y1 = b.traces[i] + w, y, b.traces[i + 1] - 1, y + 4
        cv2.rectangle(image, (x0, y0), (x1, y1), COPPER, -1)
    elif kind == "spur":
        x = b.traces[int(rng.integers(0, len(b.traces)))] + w
        x0, y0, x1, y1 = x, y, x + 5, y + 4
        cv2.rectangle(image, (x0, y0), (x1, y1), COPPER, -1)
    elif kind == "mousebite":
        x = b.traces[int(rng.integers(0, len(b.traces)))] + w - 1
        cv2.circle(image, (x, y), 4, LAMINATE, -1)
        x0, y0, x1, y1 = x - 4, y - 4, x + 1, y + 4
    elif kind == "copper":
        x = b.traces[-1] + w + 14
        cv2.circle(image, (x, y), 4, COPPER, -1)
        x0, y0, x1, y1 = x - 4, y - 4, x + 4, y + 4
    elif kind == "pin-hole":
        cx, cy = b.pads[int(rng.integers(0, len(b.pads)))]
        cv2.circle(image, (cx, cy), 4, LAMINATE, -1)
        x0, y0, x1, y1 = cx - 4, cy - 4, cx + 4, cy + 4
    else:
        raise ValueError(kind)
    return DefectBox(max(0, x0 - BOX_PAD), max(0, y0 - BOX_PAD), x1 + BOX_PAD, y1 + BOX_PAD, kind)


def move(image: np.ndarray, dx: float, dy: float, angle_deg: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """``image`` under a known similarity (about its centre), borders replicated."""
    h, w = image.shape[:2]
    m = forward(w, h, dx, dy, angle_deg, scale)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def forward(w: int, h: int, dx: float, dy: float, angle_deg: float, scale: float) -> np.ndarray:
    """The 2x3 matrix taking template pixels to tested-image pixels."""
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, scale)
    m[:, 2] += (dx, dy)
    return m


def relight(image: np.ndarray, gain: float, offset: float) -> np.ndarray:
    return np.clip(image.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)


def pair(
    seed: int,
    kinds: tuple[str, ...] = (),
    dx: float = 0.0,
    dy: float = 0.0,
    angle_deg: float = 0.0,
    gain: float = 1.0,
    offset: float = 0.0,
    size: int = 192,
) -> PairedImage:
    """A template and a tested image with ``kinds`` of defects; boxes are annotated only
    for an unmoved pair (a moved one's boxes would move too)."""
    b = board(seed, size)
    rng = np.random.default_rng(seed + 1000)
    tested = b.image.copy()
    boxes = tuple(add_defect(b, tested, k, rng) for k in kinds)
    moved = (dx, dy, angle_deg) != (0.0, 0.0, 0.0)
    if moved:
        tested = move(tested, dx, dy, angle_deg)
    tested = cv2.GaussianBlur(relight(tested, gain, offset), (3, 3), 0)
    template = cv2.GaussianBlur(b.image, (3, 3), 0)
    return PairedImage(tested, template, () if moved else boxes, name=f"board{seed}")


def training_pairs(n: int, start: int = 0) -> list[PairedImage]:
    """Annotated pairs with two defects each, every type equally often."""
    return [pair(start + i, (TYPES[i % 6], TYPES[(i + 3) % 6])) for i in range(n)]
