"""The fused search kernel (``_nearest.c``) seen from Python: loading it and calling it.

The kernel does the same arithmetic as the library path in ``search.py`` (float32 products
of centred features, the coarse maps' products resized bilinearly, the bank norms, row
minima) without writing the products out: measured side by side in docs/benchmarks.md.
It is compiled when the package is installed, for AVX-512 and for AVX2 + FMA; where it was
not built or the CPU has neither, :func:`available` is false and the library path serves.
A third copy (:func:`nearest_bfloat16`, CPUs with AVX-512 BF16) takes the products in
bfloat16 on a packed copy of the bank and measures the nearest candidates again in float32.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from huoyan.vision.features import upsample

TAPS = 4  # bilinear: at most 2 x 2 grid points per output row (HY_TAPS in the kernel)


class _Map(ctypes.Structure):
    _fields_ = [
        ("rows", ctypes.c_void_p),
        ("n", ctypes.c_int32),
        ("c", ctypes.c_int32),
        ("offset", ctypes.c_int32),
        ("unused", ctypes.c_int32),
        ("taps", ctypes.c_void_p),
        ("weights", ctypes.c_void_p),
    ]


class _Job(ctypes.Structure):
    _fields_ = [
        ("bank", ctypes.c_void_p),
        ("half", ctypes.c_int32),
        ("dim", ctypes.c_int32),
        ("rows", ctypes.c_int64),
        ("mean", ctypes.c_void_p),
        ("maps", ctypes.POINTER(_Map)),
        ("nmaps", ctypes.c_int32),
        ("nimages", ctypes.c_int32),
    ]


@dataclass(frozen=True)
class Query:
    """One feature map's queries of one image: rows x channels on its own grid.

    ``rows`` is centred on the bank mean and scaled by -2; the first
    map of an image is on the output grid, the others are resized to it bilinearly.
    """

    rows: torch.Tensor
    grid: tuple[int, int]
    channels: slice


@functools.cache
def _library() -> ctypes.CDLL | None:
    try:
        from huoyan.vision import _nearest  # type: ignore[attr-defined]
    except ImportError:
        return None
    lib = ctypes.CDLL(_nearest.__file__)
    lib.hy_lanes.restype = ctypes.c_int
    lib.hy_bf16.restype = ctypes.c_int
    lib.hy_nearest.restype = ctypes.c_int
    lib.hy_nearest.argtypes = [ctypes.POINTER(_Job), ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p]
    lib.hy_pack_bf16.restype = None
    lib.hy_pack_bf16.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int32,
        ctypes.c_int64,
        ctypes.c_int32,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.hy_nearest_bf16.restype = ctypes.c_int
    lib.hy_nearest_bf16.argtypes = [
        ctypes.POINTER(_Job),
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int32,
        ctypes.c_void_p,
    ]
    return lib


def lanes() -> int:
    """Floats per vector of the copy this CPU runs: 16 (AVX-512), 8 (AVX2) or 0 (none)."""
    lib = _library()
    return int(lib.hy_lanes()) if lib is not None else 0


def available() -> bool:
    """Whether the kernel was built and this CPU can run it."""
    return lanes() > 0


def bfloat16_available() -> bool:
    """Whether this CPU runs the bfloat16 copy (AVX-512 with BF16)."""
    lib = _library()
    return lib is not None and bool(lib.hy_bf16())


@dataclass(frozen=True)
class PackedBank:
    """The bank as the bfloat16 copy reads it: blocks of 32 rows, channel pairs interleaved."""

    words: np.ndarray  # uint32: blocks x pairs x 32
    norms: np.ndarray  # float32 squared norms of the centred rows, blocks x 32 (inf past the end)

    @property
    def nbytes(self) -> int:
        return int(self.words.nbytes + self.norms.nbytes)


def pack_bfloat16(bank: torch.Tensor, mean: torch.Tensor) -> PackedBank:
    """Centre and pack ``bank`` (float32 or float16, rows x D) for :func:`nearest_bfloat16`."""
    lib = _library()
    if lib is None or not lib.hy_bf16():
        raise RuntimeError("this CPU has no bfloat16 copy of the kernel")
    bank = bank.contiguous()
    mean = mean.float().contiguous()
    rows, dim = bank.shape
    blocks = -(-rows // 32)
    words = np.empty(blocks * ((dim + 1) // 2) * 32, np.uint32)
    norms = np.empty(blocks * 32, np.float32)
    half = int(bank.dtype == torch.float16)
    lib.hy_pack_bf16(bank.data_ptr(), half, rows, dim, mean.data_ptr(), words.ctypes.data, norms.ctypes.data)
    return PackedBank(words, norms)


@functools.cache
def bilinear_taps(grid: tuple[int, int], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """For each point of ``size``, the grid points and weights ``features.upsample`` mixes.

    Taken from the resize itself (each grid point's one-hot image resized), so the kernel
    mixes exactly what the library path's resize mixes.
    """
    gh, gw = grid
    one_hot = torch.eye(gh * gw).view(gh * gw, 1, gh, gw)
    mix = upsample(one_hot, size).reshape(gh * gw, -1).t()  # output points x grid points
    weights, taps = torch.topk(mix, min(TAPS, gh * gw), dim=1)
    if not torch.allclose(weights.sum(1), mix.sum(1), atol=1e-6):
        raise ValueError(f"resizing {grid} to {size} mixes more than {TAPS} points")
    if weights.shape[1] < TAPS:
        pad = TAPS - weights.shape[1]
        weights = torch.nn.functional.pad(weights, (0, pad))
        taps = torch.nn.functional.pad(taps, (0, pad))
    return taps.to(torch.int32).contiguous().numpy(), weights.contiguous().numpy()


def nearest(
    bank: torch.Tensor, mean: torch.Tensor, images: Sequence[Sequence[Query]], threads: int, lanes: int = 0
) -> torch.Tensor:
    """min over bank rows of ||b - mean||^2 - 2 q.b for every image's output rows, concatenated.

    ``bank`` is float32 or float16, rows x D; every image has the same number of maps, its
    first on the output grid. ``lanes`` forces a copy of the kernel (tests).
    """
    lib = _library()
    if lib is None:
        raise RuntimeError("the fused search kernel is not built")
    if not images:
        return torch.zeros(0)
    job, out, keep = _job(bank, mean, images)
    status = lib.hy_nearest(ctypes.byref(job), threads, lanes, out.data_ptr())
    del keep
    if status == -1:
        raise RuntimeError(f"this CPU cannot run the kernel's {lanes or 'best'}-lane copy")
    if status != 0:
        raise ValueError("the fused search kernel refused its arguments or ran out of memory")
    return out


def nearest_bfloat16(
    bank: torch.Tensor, mean: torch.Tensor, packed: PackedBank, images: Sequence[Sequence[Query]], threads: int
) -> torch.Tensor | None:
    """As :func:`nearest`, products in bfloat16 and the candidates measured again in float32.

    Each result is the float32 value for a real bank row, the exact minimum unless that row
    lost a near tie in bfloat16 (``_nearest_bf16.h``). None where a map's channels do not
    start on an even channel: the caller searches in float32.
    """
    lib = _library()
    if lib is None:
        raise RuntimeError("the fused search kernel is not built")
    if not images:
        return torch.zeros(0)
    job, out, keep = _job(bank, mean, images)
    status = lib.hy_nearest_bf16(
        ctypes.byref(job),
        packed.words.ctypes.data,
        packed.norms.ctypes.data,
        threads,
        out.data_ptr(),
    )
    del keep
    if status == -3:
        return None
    if status == -1:
        raise RuntimeError("this CPU has no bfloat16 copy of the kernel")
    if status != 0:
        raise ValueError("the fused search kernel refused its arguments or ran out of memory")
    return out


def _job(
    bank: torch.Tensor, mean: torch.Tensor, images: Sequence[Sequence[Query]]
) -> tuple[_Job, torch.Tensor, list[object]]:
    """The kernel's view of one call, its output and what must stay alive until it returns."""
    nmaps = len(images[0])
    maps = (_Map * (len(images) * nmaps))()
    keep: list[object] = []
    for i, parts in enumerate(images):
        if len(parts) != nmaps:
            raise ValueError("every image needs the same feature maps")
        out_grid = parts[0].grid
        for m, part in enumerate(parts):
            rows = part.rows.float().contiguous()
            keep.append(rows)
            entry = maps[i * nmaps + m]
            entry.rows = rows.data_ptr()
            entry.n = rows.shape[0]
            entry.c = part.channels.stop - part.channels.start
            entry.offset = part.channels.start
            if m > 0:
                taps, weights = bilinear_taps(part.grid, out_grid)
                entry.taps = taps.ctypes.data
                entry.weights = weights.ctypes.data
                keep += [taps, weights]
    bank = bank.contiguous()
    mean = mean.float().contiguous()
    keep += [bank, mean, maps]
    job = _Job(
        bank=bank.data_ptr(),
        half=int(bank.dtype == torch.float16),
        dim=bank.shape[1],
        rows=bank.shape[0],
        mean=mean.data_ptr(),
        maps=maps,
        nmaps=nmaps,
        nimages=len(images),
    )
    out = torch.empty(sum(parts[0].rows.shape[0] for parts in images))
    return job, out, keep
