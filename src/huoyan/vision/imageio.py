"""Reading images from disk into the one layout the engine uses: HxWx3 uint8 RGB.

Every failure is an ``ImageError`` with a message naming the file and the reason, so
callers can record it per image and go on with the batch.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from huoyan.core.models import IMAGE_SUFFIXES
from huoyan.core.text import Message


class ImageError(ValueError):
    """An input could not be turned into an image."""


class ImageTooLarge(ImageError):
    """The header announces more pixels than the caller allows (a decompression bomb)."""


# Pillow only reads headers here (OpenCV decodes), and the pixel limit is the caller's.
Image.MAX_IMAGE_PIXELS = None


def image_size(data: bytes, name: str = "image") -> tuple[int, int]:
    """(width, height) from the file's header, without decoding its pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on odd but readable headers
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{name}: not a readable image (corrupt, truncated or unknown format: {exc})") from exc
    return int(width), int(height)


def check_pixels(data: bytes, max_pixels: int, name: str = "image") -> tuple[int, int]:
    """The header's (width, height), or ``ImageTooLarge`` when they exceed ``max_pixels``."""
    width, height = image_size(data, name)
    if width * height > max_pixels:
        raise ImageTooLarge(
            Message(
                "{name}: image is {width}x{height} ({pixels} pixels); at most {most} are accepted",
                name=name,
                width=width,
                height=height,
                pixels=width * height,
                most=max_pixels,
            )
        )
    return width, height


def to_rgb8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Normalise any decoded array (gray, RGB, RGBA, 8/16-bit, float) to HxWx3 uint8."""
    if image.ndim not in (2, 3) or image.size == 0:
        raise ImageError(f"{name}: unsupported array shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"{name}: empty image")
    if image.dtype == np.uint16:
        # Full 16-bit range to 8 bits; keeps absolute brightness comparable between parts.
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(f"{name}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return image
    if channels == 4:
        return image[:, :, :3].copy()
    raise ImageError(f"{name}: unsupported channel count {channels}")


def decode_image(data: bytes, name: str = "image", max_pixels: int | None = None, gray: bool = False) -> np.ndarray:
    """Decode encoded bytes (PNG, JPEG, TIFF, ...) to HxWx3 uint8 RGB (HxW uint8 with
    ``gray``: half the work for detectors that compare gray levels); with ``max_pixels``
    the header's dimensions are checked first, so an oversized image is never decoded."""
    if not data:
        raise ImageError(f"{name}: file is empty")
    if max_pixels is not None:
        check_pixels(data, max_pixels, name)
    if gray:
        plane = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
        if plane is None or plane.size == 0:
            raise ImageError(f"{name}: not a readable image (corrupt, truncated or unknown format)")
        return plane
    raw = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ImageError(f"{name}: not a readable image (corrupt, truncated or unknown format)")
    if raw.ndim == 3 and raw.shape[2] >= 3:
        code = cv2.COLOR_BGRA2RGBA if raw.shape[2] == 4 else cv2.COLOR_BGR2RGB
        raw = cv2.cvtColor(raw, code)
    return to_rgb8(raw, name)


def read_image(path: str | Path, gray: bool = False) -> np.ndarray:
    """Read one image file to HxWx3 uint8 RGB (HxW with ``gray``), or raise ``ImageError``."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageError(f"{p}: cannot read file ({exc.strerror or exc})") from exc
    return decode_image(data, str(p), gray=gray)


def list_inputs(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and folders (recursively, sorted) into file paths.

    Every file in a folder is listed, images or not, so a stray file becomes a visible
    error entry rather than silently vanishing. Hidden files are skipped.
    """
    for item in paths:
        p = Path(item)
        if p.is_dir():
            yield from sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        else:
            yield p


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Image files (by suffix) inside ``folder`` (and its subfolders if ``recursive``), sorted."""
    files = Path(folder).rglob("*") if recursive else Path(folder).iterdir()
    return sorted(f for f in files if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
