"""Training on Ray: many recipe models fitted at once, or a retraining moved off the server's CPU.

Each fit is a Ray task of one CPU that builds the detector from its kind and parameters,
fits it and returns the saved artifact's bytes, which the caller writes and checks: the
file ``huoyan fit`` writes for the same kind, parameters and images (the card names the
training images' digest, so the lineage is the same). ``fit_many`` reads each product's
training folder on the worker (shared storage, as for ``huoyan batch``); ``RayFitter``
ships a retraining's images through Ray's object store, so the server's disk need not be
shared. One failed fit (too few images) is reported; the others go on.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huoyan.core.detector import Detector
from huoyan.core.durable import write_durably
from huoyan.scale.cluster import connect

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FitJob:
    """One model to fit: its name (the file's stem) and its training folder."""

    name: str
    folder: Path


@dataclass(slots=True)
class FitResult:
    """A fitted model's file, digest and card, with the training files left out and why;
    or why it could not be fitted (``error``)."""

    name: str
    path: Path | None = None
    sha256: str | None = None
    card: dict[str, Any] | None = None
    skipped: list[str] = field(default_factory=list)
    error: str | None = None


def fitted_artifact(kind: str, params: dict[str, Any], samples: Sequence[Any]) -> bytes:
    """A detector of ``kind`` fitted on ``samples`` and saved: the artifact's bytes."""
    from huoyan.detectors import new_detector

    detector = new_detector(kind, **params).fit(samples)
    with tempfile.TemporaryDirectory(prefix="huoyan-fit-") as tmp:
        return detector.save(Path(tmp) / "model.safetensors").read_bytes()


def _fit_on_node(kind: str, params: dict[str, Any], samples: Sequence[Any]) -> tuple[bytes, str]:
    """On a worker: the fitted artifact, and the id of the Ray node that fitted it."""
    import ray

    return fitted_artifact(kind, params, samples), ray.get_runtime_context().get_node_id()


def _fit_folder(kind: str, params: dict[str, Any], folder: str) -> tuple[bytes, list[str]]:
    """On a worker: the folder's good images (as ``huoyan fit`` reads them), fitted."""
    from huoyan.vision.dataset import good_images, train_folder

    images, skipped = good_images(train_folder(Path(folder)))
    if not images:
        raise ValueError(f"{folder}: no images to fit on" + (f" ({'; '.join(skipped[:3])})" if skipped else ""))
    return fitted_artifact(kind, params, images), skipped


def fit_many(
    jobs: Sequence[FitJob],
    kind: str,
    params: dict[str, Any],
    out_dir: Path,
    *,
    address: str | None = None,
    workers: int = 2,
    on_done: Callable[[FitResult], None] | None = None,
) -> list[FitResult]:
    """Fit one model per job on Ray, as many at once as the cluster has CPUs, and write
    each to ``out_dir/<name>.safetensors`` as it finishes."""
    import ray

    out_dir.mkdir(parents=True, exist_ok=True)
    started = connect(address, workers)
    try:
        task = ray.remote(num_cpus=1, max_retries=1)(_fit_folder)
        pending = {task.remote(kind, params, str(job.folder)): job for job in jobs}
        results = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            result = FitResult(job.name)
            try:
                data, result.skipped = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:  # the fit's own error (too few images), said plainly
                cause = exc.cause if isinstance(exc.cause, Exception) else exc
                result.error = f"{type(cause).__name__}: {cause}"
            else:
                result.path = out_dir / f"{job.name}.safetensors"
                write_durably(result.path, data)
                result.sha256 = hashlib.sha256(data).hexdigest()
                result.card = _card(result.path)
            results.append(result)
            if on_done is not None:
                on_done(result)
        return results
    finally:
        if started:
            ray.shutdown()


def _card(path: Path) -> dict[str, Any]:
    import json

    from huoyan.core.artifact import read_metadata

    card: dict[str, Any] = json.loads(read_metadata(path)["card"])
    return card


class RayFitter:
    """A ``core.detector.Fitter`` whose fits run as Ray tasks on the cluster at ``address``
    (the server's retraining jobs with ``huoyan serve --ray-address``)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.last_node: str | None = None  # the Ray node of the last fit

    def __call__(self, parent: Detector, samples: Sequence[Any]) -> Detector:
        import ray

        from huoyan.detectors import load_detector

        connect(self.address)
        task = ray.remote(num_cpus=1, max_retries=1)(_fit_on_node)
        data, self.last_node = ray.get(task.remote(parent.kind, parent.get_params(), list(samples)))
        with tempfile.TemporaryDirectory(prefix="huoyan-fit-") as tmp:
            path = Path(tmp) / "model.safetensors"
            path.write_bytes(data)
            return load_detector(path)
