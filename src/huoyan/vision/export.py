"""Edge export: the whole PatchCore model as one ONNX graph (or OpenVINO IR).

The exported graph runs what the station runs between the resized image and the result:
normalisation, the truncated backbone, patch features, the exact nearest-neighbour
search against the memory bank, and the smoothed anomaly map with its maximum as the
score. A camera PC or an edge box then scores parts without Python Huoyan, with ONNX
Runtime or OpenVINO alone (``edge_runner`` is the reference runner), and gets the scores
and maps the Python model gives (to 1e-4 of the score, ``EXPORT_RTOL``; measured 1.5e-5).

Input ``image``: N x S x S x 3 uint8 RGB, already resized to the model's input size as
``PatchCore.preprocess`` does (OpenCV, area when shrinking, bilinear when enlarging).
Outputs ``score`` (N) and ``anomaly_map`` (N x S x S float32, model resolution). The
calibrated threshold, the model card and the source model's digest travel in the
file's metadata (``huoyan.*`` keys), so the exported file judges on its own.

The arithmetic is the Python model's (``search``), term for term: features and bank
centred on the bank mean, ``||q||^2 + min(||b||^2 - 2 q.b)`` over the bank, then the
bilinear upsampling and the Gaussian blur with OpenCV's kernel and its mirrored border
(``BORDER_REFLECT``). The bank is stored centred in float32 (twice a float16 bank's
bytes), so nothing of it is recomputed per image. Only the order in which the matrix
products are summed differs (ONNX Runtime's kernels, not torch's): scores and maps agree
to float32 rounding at the features' scale, 1e-5 of the score (``EXPORT_RTOL``). Taking
the distance to the nearest row directly would make both exact, but finding that row's
index costs the station's search 15-30% (measured, docs/benchmarks.md), so neither does.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from huoyan.vision.anomaly_map import image_scores
from huoyan.vision.backbone import DEFAULT_STRIDES, build_backbone
from huoyan.vision.edge_runner import IMAGE_SIZE_KEY, THRESHOLD_KEY
from huoyan.vision.features import upsample
from huoyan.vision.patchcore import PatchCore
from huoyan.vision.runtime import onnx_graph

FORMATS = ("onnx", "openvino")
# Bank rows per matrix product in the exported graph (see ``WholePatchCore.forward``).
EXPORT_CHUNK_ROWS = 4096
# How far an export's scores and maps may lie from the Python model's, relative to the
# score; ``huoyan export --check`` and the tests hold exports to it.
EXPORT_RTOL = 1e-4
# Metadata keys of the exported file: the two the reference runner reads are its own.
META_THRESHOLD = THRESHOLD_KEY
META_IMAGE_SIZE = IMAGE_SIZE_KEY
META_SOURCE_SHA256 = "huoyan.source_sha256"
META_CARD = "huoyan.card"


class ExportError(ValueError):
    """The model cannot be exported in the asked format."""


def gaussian_taps(sigma: float) -> np.ndarray:
    """OpenCV's own 1-D kernel for ``GaussianBlur(ksize=(0, 0), sigma)`` on float32 maps."""
    size = round(sigma * 4 * 2 + 1) | 1  # OpenCV's size rule for float images
    taps: np.ndarray = cv2.getGaussianKernel(size, sigma, ktype=cv2.CV_32F).ravel()
    return taps


def mirrored_index(size: int, radius: int) -> np.ndarray:
    """Indices that pad a row of ``size`` by ``radius`` as OpenCV's BORDER_REFLECT (fedcba|abcdef)."""
    return np.pad(np.arange(size), radius, mode="symmetric")


class WholePatchCore(nn.Module):
    """Resized uint8 images -> (scores, anomaly maps), as ``PatchCore.score`` computes them."""

    mean: torch.Tensor
    bank: torch.Tensor
    bank_sq: torch.Tensor
    taps_h: torch.Tensor
    taps_w: torch.Tensor
    pad_index: torch.Tensor

    def __init__(self, model: PatchCore) -> None:
        super().__init__()
        index = model._index
        if index is None:
            raise ExportError("the model is not fitted")
        self.backbone = build_backbone(model.backbone, model.image_size, DEFAULT_STRIDES, model.lighting)
        self.image_size = model.image_size
        self.image_score = model.image_score
        self.map_scale = float(model.map_scale_)
        mean = index.mean.clone()
        centred = torch.from_numpy(np.ascontiguousarray(model.bank_)).float() - mean
        self.register_buffer("mean", mean.view(1, -1, 1, 1))
        self.register_buffer("bank", centred)
        self.register_buffer("bank_sq", (centred * centred).sum(1))
        self.blur = model.blur_sigma > 0
        if self.blur:
            taps = torch.from_numpy(gaussian_taps(model.blur_sigma))
            radius = taps.shape[0] // 2
            self.register_buffer("taps_h", taps.view(1, 1, -1, 1))
            self.register_buffer("taps_w", taps.view(1, 1, 1, -1))
            self.register_buffer("pad_index", torch.from_numpy(mirrored_index(model.image_size, radius)))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).float()
        x = x * (1.0 / 127.5) - 1.0
        maps = self.backbone(x)
        fine = maps[0]
        n, h, w = fine.shape[0], fine.shape[2], fine.shape[3]
        parts = [m if m.shape[2] == h else upsample(m, (h, w)) for m in maps]
        q = torch.cat(parts, dim=1) - self.mean
        q = q.permute(0, 2, 3, 1).reshape(n, h * w, -1)
        # The bank in chunks, each product reduced to its row minima at once: one product
        # against the whole bank is batch x patches x rows floats (measured: 3.8 GB against
        # 1.0 GB at batch 8 and 60k rows, and no faster; docs/benchmarks.md).
        nearest: torch.Tensor | None = None
        for start in range(0, self.bank.shape[0], EXPORT_CHUNK_ROWS):
            rows = slice(start, start + EXPORT_CHUNK_ROWS)
            chunk = torch.matmul(q * -2.0, self.bank[rows].t()).add(self.bank_sq[rows]).amin(2)
            nearest = chunk if nearest is None else torch.minimum(nearest, chunk)
        assert nearest is not None
        distances = (nearest + q.square().sum(2)).clamp(min=0).sqrt()
        grid = distances.view(n, 1, h, w)
        s = self.image_size
        heat = F.interpolate(grid, size=(s, s), mode="bilinear", align_corners=False)
        if self.blur:
            heat = heat.index_select(2, self.pad_index)
            heat = F.conv2d(heat, self.taps_h)
            heat = heat.index_select(3, self.pad_index)
            heat = F.conv2d(heat, self.taps_w)
        heat = heat.view(n, s, s)
        score = image_scores(heat, self.image_score)
        return score, heat if self.map_scale == 1.0 else heat * self.map_scale


def onnx_bytes(model: PatchCore) -> bytes:
    """The whole model as a serialised ONNX graph (no metadata)."""
    dummy = torch.zeros(1, model.image_size, model.image_size, 3, dtype=torch.uint8)
    return onnx_graph(WholePatchCore(model).eval(), dummy, ["score", "anomaly_map"])


def metadata(model: PatchCore, source_sha256: str) -> dict[str, str]:
    """What the exported file carries besides the graph: enough to judge and to trace."""
    return {
        META_THRESHOLD: repr(float(model.threshold)),
        META_IMAGE_SIZE: str(model.image_size),
        META_SOURCE_SHA256: source_sha256,
        META_CARD: json.dumps(model.card_.model_dump(mode="json"), ensure_ascii=False),
    }


def export_onnx(model: PatchCore, out: Path, source_sha256: str) -> list[Path]:
    import onnx

    graph = onnx.load_from_string(onnx_bytes(model))
    for key, value in metadata(model, source_sha256).items():
        graph.metadata_props.add(key=key, value=value)
    graph.doc_string = "Huoyan PatchCore: resized uint8 RGB images -> score, anomaly_map"
    onnx.checker.check_model(graph)
    tmp = out.with_name(out.name + ".tmp")
    onnx.save_model(graph, str(tmp))
    tmp.replace(out)
    return [out]


def export_openvino(model: PatchCore, out: Path, source_sha256: str) -> list[Path]:
    """OpenVINO IR: ``out`` (.xml, the graph and metadata) with its weights in ``out``.bin."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise ExportError("OpenVINO is not installed: run `pip install 'huoyan[edge]'`") from exc
    converted = ov.convert_model(io.BytesIO(onnx_bytes(model)))
    for key, value in metadata(model, source_sha256).items():
        converted.set_rt_info(value, key.split("."))
    # float32 weights: compressed to float16 the bank's distances would no longer be the model's.
    ov.save_model(converted, str(out), compress_to_fp16=False)
    return [out, out.with_suffix(".bin")]


def export(model: object, out: str | Path, fmt: str, source_sha256: str) -> list[Path]:
    """Write ``model`` as ``fmt`` to ``out``; returns the files written."""
    if not isinstance(model, PatchCore):
        raise ExportError(f"only memory-bank (patchcore) models can be exported, not {getattr(model, 'kind', model)!r}")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        return export_onnx(model, path.with_suffix(".onnx") if path.suffix != ".onnx" else path, source_sha256)
    if fmt == "openvino":
        return export_openvino(model, path.with_suffix(".xml") if path.suffix != ".xml" else path, source_sha256)
    raise ExportError(f"unknown format {fmt!r}; choose one of {FORMATS}")
