"""Reference runner for an exported Huoyan model, without Python Huoyan.

``huoyan export`` writes this file beside the exported model. It needs only NumPy,
OpenCV and ONNX Runtime (for ``.onnx``) or OpenVINO (for ``.xml``), and it imports
nothing of Huoyan, so it runs on an edge box that has only those::

    python huoyan_edge_runner.py MODEL.onnx IMAGE... [--maps DIR] [--threshold T]

It prints one JSON line per image: ``path``, ``score``, ``threshold``, ``verdict``
(``NG`` above the threshold, ``OK`` otherwise, ``ERROR`` with ``error`` for a file that
is not an image) and ``map`` where ``--maps`` asked for the anomaly maps (``.npy``,
model resolution, numbered in the order given). Decoding and resizing repeat Huoyan's own (``huoyan.vision.imageio``
and ``PatchCore.preprocess``) for 8- and 16-bit gray, RGB and RGBA images; they are
repeated here, not imported, because this file must run where Huoyan is not installed.
The defect regions and per-recipe rules of a station are Huoyan's decision stage and
are not repeated: this runner gives the model's score, map and the calibrated verdict.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

THRESHOLD_KEY = "huoyan.threshold"
IMAGE_SIZE_KEY = "huoyan.image_size"

Scorer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def read_rgb8(path: Path) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB, as Huoyan decodes it."""
    raw = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.size == 0:
        raise ValueError(f"{path}: not a readable image")
    if raw.dtype == np.uint16:
        raw = np.right_shift(raw, 8).astype(np.uint8)
    elif raw.dtype != np.uint8:
        raise ValueError(f"{path}: unsupported pixel type {raw.dtype}")
    if raw.ndim == 2 or raw.shape[2] == 1:
        return cv2.cvtColor(raw.reshape(raw.shape[0], raw.shape[1]), cv2.COLOR_GRAY2RGB)
    if raw.shape[2] == 4:
        return cv2.cvtColor(raw, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(raw, cv2.COLOR_BGR2RGB)


def resize_to(image: np.ndarray, size: int) -> np.ndarray:
    """The model's input: area averaging when shrinking, bilinear when enlarging."""
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if h > size or w > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def open_onnx(path: Path) -> tuple[Scorer, dict[str, str]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    meta = dict(session.get_modelmeta().custom_metadata_map)

    def score(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, maps = session.run(["score", "anomaly_map"], {"image": batch})
        return scores, maps

    return score, meta


def open_openvino(path: Path) -> tuple[Scorer, dict[str, str]]:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    meta = {
        key: model.get_rt_info(key.split(".")).astype(str)
        for key in (THRESHOLD_KEY, IMAGE_SIZE_KEY)
        if model.has_rt_info(key.split("."))
    }
    # float32 arithmetic: on CPUs with bf16 or AMX, OpenVINO would otherwise round to bf16.
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    def score(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = compiled(batch)
        return out[compiled.output("score")], out[compiled.output("anomaly_map")]

    return score, meta


def open_model(path: Path) -> tuple[Scorer, float, int]:
    """(scorer, calibrated threshold, input size) of an exported model file."""
    scorer, meta = open_openvino(path) if path.suffix == ".xml" else open_onnx(path)
    if THRESHOLD_KEY not in meta or IMAGE_SIZE_KEY not in meta:
        raise ValueError(f"{path}: not a Huoyan export (no {THRESHOLD_KEY} in its metadata)")
    return scorer, float(meta[THRESHOLD_KEY]), int(meta[IMAGE_SIZE_KEY])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="score images with a model exported by `huoyan export`")
    parser.add_argument("model", type=Path, help="the exported model (.onnx, or OpenVINO's .xml)")
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--threshold", type=float, help="judge against this score instead of the calibrated one")
    parser.add_argument("--maps", type=Path, help="write each anomaly map here as <number>_<name>.npy")
    args = parser.parse_args(argv)
    scorer, threshold, size = open_model(args.model)
    if args.threshold is not None:
        threshold = args.threshold
    if args.maps:
        args.maps.mkdir(parents=True, exist_ok=True)
    failed = 0
    for number, path in enumerate(args.images):
        row: dict[str, object] = {"path": str(path)}
        try:
            image = resize_to(read_rgb8(path), size)
        except (ValueError, OSError, cv2.error) as exc:
            failed += 1
            print(json.dumps(row | {"verdict": "ERROR", "error": str(exc)}, ensure_ascii=False), flush=True)
            continue
        scores, maps = scorer(image[None])
        score = float(scores[0])
        row |= {"score": score, "threshold": threshold, "verdict": "NG" if score > threshold else "OK"}
        if args.maps:
            target = args.maps / f"{number:05d}_{path.stem}.npy"  # numbered: names repeat across folders
            np.save(target, maps[0])
            row["map"] = str(target)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    return 1 if failed == len(args.images) else 0


if __name__ == "__main__":
    sys.exit(main())
