"""Helpers shared by the benchmark scripts. Imports nothing from Huoyan, so the anomalib
reference venv can use it too."""

from __future__ import annotations

import platform
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> np.ndarray:
    """Seconds per call of ``fn`` over ``repeats`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return np.array(out)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def vector_extensions() -> str:
    """The CPU's vector extensions that matter to these benchmarks, as /proc/cpuinfo names them."""
    flags: set[str] = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
    return " ".join(f for f in wanted if f in flags)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def speed_row(t1: np.ndarray, t8: np.ndarray) -> dict[str, float]:
    """Throughput at batch 1 and 8 and batch-1 latency from ``timed`` results."""
    return {
        "images_per_s_batch1": 1.0 / float(np.mean(t1)),
        "images_per_s_batch8": 8.0 / float(np.mean(t8)),
        "latency_ms_median": float(np.median(t1) * 1000),
        "latency_ms_p99": float(np.percentile(t1, 99) * 1000),
    }


@contextmanager
def private_postgres() -> Iterator[Any]:
    """A private PostgreSQL server started from the system's binaries (the tests' own,
    ``tests/`` on the path), removed on exit."""
    from conftest import PostgresServer, _postgres_bindir

    bindir = _postgres_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL binaries not found; --skip-postgres")
    server = PostgresServer(bindir)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()
