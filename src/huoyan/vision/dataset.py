"""MVTec-AD folder layout: train/good, test/<type>, ground_truth/<type>/<stem>_mask.png; and the
good images a model is fitted on (what ``huoyan fit`` and the fits on Ray read alike)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from huoyan.core.models import IMAGE_SUFFIXES
from huoyan.vision.imageio import ImageError, list_images, read_image


@dataclass(frozen=True)
class TestSample:
    path: Path
    defect_type: str
    mask_path: Path | None

    @property
    def is_defect(self) -> bool:
        return self.defect_type != "good"


@dataclass(frozen=True)
class Category:
    root: Path
    train: list[Path]
    test: list[TestSample]


def train_folder(path: Path) -> Path:
    """An image folder as it is, or an MVTec-layout category's train/good."""
    nested = path / "train" / "good"
    return nested if nested.is_dir() else path


def good_images(folder: Path, on_file: Callable[[], None] | None = None) -> tuple[list[np.ndarray], list[str]]:
    """The folder's images, and why each other file in it was left out: what `predict`
    would call an ERROR (a file that is no image) is said here too, not passed over.
    ``on_file`` is called after each file (a progress bar)."""
    images, errors = [], []
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
    for p in files:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            errors.append(f"{p}: not an image file ({', '.join(sorted(IMAGE_SUFFIXES))})")
        else:
            try:
                images.append(read_image(p))
            except ImageError as exc:
                errors.append(str(exc))
        if on_file is not None:
            on_file()
    return images, errors


def load_category(root: str | Path) -> Category:
    """Index an MVTec-layout category folder; raise ``ValueError`` if it is not one."""
    r = Path(root)
    train_dir, test_dir = r / "train" / "good", r / "test"
    if not train_dir.is_dir() or not test_dir.is_dir():
        raise ValueError(f"{r}: not an MVTec-layout folder (needs train/good and test/)")
    test = []
    for type_dir in sorted(d for d in test_dir.iterdir() if d.is_dir()):
        for img in list_images(type_dir):
            mask = None
            if type_dir.name != "good":
                mask = r / "ground_truth" / type_dir.name / f"{img.stem}_mask.png"
                if not mask.is_file():
                    raise ValueError(f"{img}: ground-truth mask {mask} is missing")
            test.append(TestSample(img, type_dir.name, mask))
    train = list_images(train_dir)
    if not train or not test:
        raise ValueError(f"{r}: train/good or test/ holds no images")
    return Category(r, train, test)


def read_mask(path: Path | None, width: int, height: int) -> np.ndarray:
    """Binary mask (mask > 127) at the given size; all-zero for good samples."""
    if path is None:
        return np.zeros((height, width), dtype=bool)
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ImageError(f"{path}: unreadable mask")
    if mask.shape != (height, width):
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    return mask > 127
