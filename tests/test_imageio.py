from pathlib import Path

import cv2
import numpy as np
import pytest

from huoyan.vision.imageio import ImageError, decode_image, list_inputs, read_image, to_rgb8


def _png(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    assert ok
    return buf.tobytes()


def test_grayscale_rgba_and_16_bit_become_rgb8() -> None:
    gray = np.full((10, 12), 77, np.uint8)
    out = decode_image(_png(gray))
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8 and (out == 77).all()
    deep = np.full((5, 6), 65535, np.uint16)
    assert (decode_image(_png(deep)) == 255).all()
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 0] = 200  # blue in OpenCV's order
    rgb = decode_image(_png(bgra))
    assert rgb.shape == (4, 4, 3) and (rgb[..., 2] == 200).all() and (rgb[..., 0] == 0).all()


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"")
    with pytest.raises(ImageError, match="not a readable image"):
        decode_image(b"\x89PNG\r\n\x1a\n garbage")
    good = _png(np.zeros((20, 20, 3), np.uint8))
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageError, match=r"cut\.png"):
        read_image(truncated)
    with pytest.raises(ImageError, match="cannot read"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="shape"):
        to_rgb8(np.zeros((2, 2, 2, 2), np.uint8))
    with pytest.raises(ImageError, match="pixel type"):
        to_rgb8(np.zeros((2, 2), np.int64))


def test_list_inputs_keeps_non_images_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / ".hidden").write_text("x")
    listed = [p.relative_to(tmp_path).as_posix() for p in list_inputs([tmp_path])]
    assert listed == ["b/x.png", "notes.txt"]
