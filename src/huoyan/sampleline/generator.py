"""Synthetic "sample line": textured parts with realistic defects and pixel masks.

Three products stand in for common inspection tasks: brushed ``metal`` sheet, woven
``fabric`` and a turned ``washer`` (a round part on a dark fixture). Each good part
varies in illumination, brightness, texture phase and (for the washer) position, so the
set is not separable by mean brightness: defects change a few percent of the pixels,
while part-to-part brightness varies by about 10%. Defects are scratches, dents, holes,
contamination and missing pieces, each drawn with its exact mask.

Output is an MVTec-AD layout folder per product, so the same code path that reads real
data reads the demo: ``<product>/train/good``, ``test/<type>``,
``ground_truth/<type>/<stem>_mask.png``. Everything is reproducible from ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

PRODUCTS = ("metal", "fabric", "washer")
DEFECTS = ("scratch", "dent", "hole", "contamination", "missing")


def _lighting(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    gx, gy = rng.uniform(-0.12, 0.12, 2)
    return 1.0 + gx * (xx - 0.5) + gy * (yy - 0.5)


def _metal(size: int, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0, 1, (size, size)).astype(np.float32)
    streaks = cv2.GaussianBlur(noise, (0, 0), sigmaX=12, sigmaY=0.6)
    grain = cv2.GaussianBlur(noise, (0, 0), 1.0)
    base = rng.uniform(130, 170)
    gray = base + 28 * streaks / (streaks.std() + 1e-6) + 4 * grain
    tint = np.array([1.0, 1.0, 1.04], dtype=np.float32)
    return gray[..., None] * tint


def _fabric(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(7.5, 8.5)
    phase = rng.uniform(0, 2 * np.pi, 2)
    warp = np.sin(2 * np.pi * xx / period + phase[0])
    weft = np.sin(2 * np.pi * yy / period + phase[1])
    checker = np.sign(np.sin(np.pi * xx / period + phase[0]) * np.sin(np.pi * yy / period + phase[1]))
    weave = np.where(checker > 0, warp, weft)
    fuzz = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 0.8)
    base = rng.uniform(110, 150)
    gray = base + 30 * weave + 8 * fuzz
    colour = np.array([0.75, 0.9, 1.15], dtype=np.float32)
    return gray[..., None] * colour


def _washer_geometry(size: int, rng: np.random.Generator) -> tuple[tuple[int, int], int, int]:
    cx, cy = (size // 2 + int(v) for v in rng.integers(-6, 7, 2))
    return (cx, cy), int(size * 0.42), int(size * 0.16)


def _washer(size: int, rng: np.random.Generator, geometry: tuple[tuple[int, int], int, int]) -> np.ndarray:
    (cx, cy), outer, inner = geometry
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.hypot(xx - cx, yy - cy)
    theta = np.arctan2(yy - cy, xx - cx)
    rings = np.sin(r * rng.uniform(1.4, 1.6) + rng.uniform(0, 2 * np.pi))
    sheen = np.cos(theta - rng.uniform(0, 2 * np.pi))
    fixture = 35 + 6 * cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 2)
    base = rng.uniform(150, 190)
    part = base + 14 * rings + 18 * sheen
    ring = (r <= outer) & (r >= inner)
    gray = np.where(ring, part, fixture)
    return np.repeat(gray[..., None], 3, axis=2)


def _random_polyline(size: int, rng: np.random.Generator, inside: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(inside)
    i = rng.integers(len(xs))
    p = np.array([xs[i], ys[i]], dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    pts = [p.copy()]
    for _ in range(int(rng.integers(3, 6))):
        angle += rng.normal(0, 0.25)
        p = p + rng.uniform(10, 22) * np.array([np.cos(angle), np.sin(angle)], dtype=np.float32)
        pts.append(p.copy())
    return np.clip(np.array(pts), 0, size - 1).astype(np.int32)


def _blob_mask(size: int, rng: np.random.Generator, inside: np.ndarray, radius: tuple[int, int]) -> np.ndarray:
    ys, xs = np.nonzero(inside)
    i = rng.integers(len(xs))
    centre = np.array([xs[i], ys[i]], dtype=np.float32)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
    radii = rng.uniform(*radius, 9)
    pts = centre + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    return (mask.astype(bool)) & inside


@dataclass
class Part:
    image: np.ndarray  # float32 HxWx3, before clipping
    inside: np.ndarray  # bool mask of where the part is (defects go here)
    background: np.ndarray  # what shows through where material is missing


def _draw_defect(part: Part, kind: str, rng: np.random.Generator) -> np.ndarray:
    size = part.image.shape[0]
    img = part.image
    if kind == "scratch":
        mask8 = np.zeros((size, size), np.uint8)
        cv2.polylines(mask8, [_random_polyline(size, rng, part.inside)], False, 1, int(rng.integers(2, 4)))
        mask = mask8.astype(bool) & part.inside
        img[mask] += rng.choice([-1, 1]) * rng.uniform(45, 70)
    elif kind == "dent":
        mask = _blob_mask(size, rng, part.inside, (9, 15))
        ys, xs = np.nonzero(mask)
        cy, cx = ys.mean(), xs.mean()
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        a = rng.uniform(0, 2 * np.pi)
        # A dent catches the light on one flank and shades the other: no net brightening.
        shade = ((xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)) / 10.0
        img[mask] += (55 * np.clip(shade[mask], -1.5, 1.5))[:, None]
    elif kind == "hole":
        mask = _blob_mask(size, rng, part.inside, (4, 8))
        img[mask] = rng.uniform(10, 30)
    elif kind == "contamination":
        mask = _blob_mask(size, rng, part.inside, (6, 12))
        stain = np.array([rng.uniform(0.55, 0.8), rng.uniform(0.45, 0.65), rng.uniform(0.25, 0.45)], np.float32)
        img[mask] = img[mask] * stain + 25
    elif kind == "missing":
        mask = _blob_mask(size, rng, part.inside, (12, 20))
        img[mask] = part.background[mask]
    else:
        raise ValueError(f"unknown defect {kind!r}; choose one of {DEFECTS}")
    return mask


def render_part(product: str, size: int, rng: np.random.Generator) -> Part:
    """One good part of ``product`` as a float image with its placement masks."""
    renderers: dict[str, Callable[[], np.ndarray]] = {
        "metal": lambda: _metal(size, rng),
        "fabric": lambda: _fabric(size, rng),
    }
    if product == "washer":
        geometry = _washer_geometry(size, rng)
        (cx, cy), outer, inner = geometry
        img = _washer(size, rng, geometry)
        yy, xx = np.mgrid[0:size, 0:size]
        r = np.hypot(xx - cx, yy - cy)
        inside = (r <= outer - 3) & (r >= inner + 3)
        background = np.full_like(img, 35.0)
    elif product in renderers:
        img = renderers[product]()
        inside = np.zeros((size, size), bool)
        inside[12:-12, 12:-12] = True
        background = np.full_like(img, 20.0)
    else:
        raise ValueError(f"unknown product {product!r}; choose one of {PRODUCTS}")
    img *= _lighting(size, rng)[..., None]
    return Part(img, inside, background)


def make_sample(product: str, defect: str | None, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 RGB image, bool mask) of one part, with ``defect`` or good if None."""
    part = render_part(product, size, rng)
    mask = np.zeros((size, size), bool) if defect is None else _draw_defect(part, defect, rng)
    sensor_noise = rng.normal(0, 2.0, part.image.shape).astype(np.float32)
    image = np.clip(part.image + sensor_noise, 0, 255).astype(np.uint8)
    return image, mask


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    if not cv2.imwrite(str(path), bgr):
        raise OSError(f"cannot write {path}")


def generate_line(
    out_dir: str | Path,
    products: tuple[str, ...] = PRODUCTS,
    n_train: int = 60,
    n_test_good: int = 20,
    n_test_defect: int = 6,
    size: int = 256,
    seed: int = 0,
    progress: Callable[[int], object] | None = None,
) -> list[Path]:
    """Write one MVTec-layout folder per product; return their paths. ``progress`` is told
    of each image written."""
    tick = progress or (lambda n: None)
    roots = []
    for p_index, product in enumerate(products):
        root = Path(out_dir) / product
        rng = np.random.default_rng([seed, p_index])
        for i in range(n_train):
            _write_png(root / "train" / "good" / f"{i:03d}.png", make_sample(product, None, size, rng)[0])
            tick(1)
        for i in range(n_test_good):
            _write_png(root / "test" / "good" / f"{i:03d}.png", make_sample(product, None, size, rng)[0])
            tick(1)
        for defect in DEFECTS:
            for i in range(n_test_defect):
                image, mask = make_sample(product, defect, size, rng)
                _write_png(root / "test" / defect / f"{i:03d}.png", image)
                _write_png(root / "ground_truth" / defect / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255)
                tick(1)
        roots.append(root)
    return roots
