"""Bulk re-inspection on Ray Data: an archive scored again with a given model, resumably.

The items (a folder's images, or the kept images of selected records) become a Ray
dataset; ``map_batches`` runs them through a fixed pool of ``Scorer`` actors, each of
which loads the model once and judges with the station's own inspector
(``runner.recipes.make_inspector``), so a score here is the score the station gives.
The driver stores each finished batch in one transaction (``store.reinspections``);
a run started again under its name leaves out what is stored and writes each image
once. Locally Ray starts with the job; ``address`` joins a running cluster, whose
workers must reach the archive's files at the same paths (shared storage).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from huoyan.core.recipe import Recipe
from huoyan.core.records import Arrival, utcnow
from huoyan.core.text import safe_text
from huoyan.scale.cluster import connect
from huoyan.station.inspect import Prepared
from huoyan.store.blobs import file_sha256

log = logging.getLogger(__name__)

ITEM_CHARS = 400  # reinspection_results.item


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One image to re-inspect: its unique name in the run, its file, and the original
    record's verdict and score where it came from one."""

    item: str
    path: str
    source_name: str
    inspection_id: int | None = None
    original_verdict: str | None = None
    original_score: float | None = None


@dataclass(slots=True)
class BatchReport:
    """What a run did: items selected, stored before this start, scored now, and the
    verdicts of those scored now."""

    run_id: int
    selected: int
    already: int
    scored: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)


def folder_items(folder: Path) -> list[BatchItem]:
    """Every file under ``folder`` (hidden ones left out), named by its path in the folder."""
    from huoyan.vision.imageio import list_inputs

    files = list(list_inputs([folder]))  # as predict: a stray file is an ERROR result, not left out
    return [
        BatchItem(safe_text(f.relative_to(folder).as_posix(), ITEM_CHARS), str(f.resolve()), safe_text(f.name, 1000))
        for f in files
    ]


class Scorer:
    """A Ray actor of the pool: the model, loaded once and checked against the run's
    SHA-256, judging batches with the station's inspector."""

    def __init__(self, model: str, sha256: str, recipe: Recipe) -> None:
        from huoyan.detectors import load_station_detector
        from huoyan.runner.recipes import make_inspector

        data = Path(model).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"{model}: not the model this run scores with (its SHA-256 differs)")
        with tempfile.TemporaryDirectory(prefix="huoyan-batch-") as tmp:
            path = Path(tmp) / "model.safetensors"  # the checked bytes, not a file that may change meanwhile
            path.write_bytes(data)
            detector = load_station_detector(path, recipe.detector)
        self.inspector = make_inspector(detector, recipe, sha256)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return score_batch(self.inspector, batch)


def score_batch(inspector: Any, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One batch of items judged by ``inspector``: the columns the store keeps."""
    prepared = [_prepared(inspector, str(item), str(path), str(name)) for item, path, name in zip(
        batch["item"], batch["path"], batch["source_name"], strict=True)]  # fmt: skip
    records = inspector.run(prepared)
    out = {k: batch[k] for k in ("item", "source_name", "inspection_id", "original_verdict", "original_score")}
    out["verdict"] = np.array([r.record.verdict.value for r in records], dtype=object)
    out["score"] = np.array([np.nan if r.record.score is None else r.record.score for r in records])
    out["normalised_score"] = np.array(
        [np.nan if r.record.normalised_score is None else r.record.normalised_score for r in records]
    )
    out["regions"] = np.array([len(r.record.regions) for r in records], dtype=np.int64)
    out["error"] = np.array([r.record.error for r in records], dtype=object)
    return out


def _prepared(inspector: Any, item: str, path: str, name: str) -> Prepared:
    """The file decoded and preprocessed as the station does, or why it cannot be (its ERROR result)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:  # a file gone or unreadable: that image's ERROR result; the run goes on
        gone = Arrival(key=item, source_name=name, part_id=None, arrived_at=utcnow(), data=b"")
        return Prepared(gone, None, f"{name}: cannot read the file ({exc.strerror or exc})")
    return inspector.prepare(Arrival(key=item, source_name=name, part_id=None, arrived_at=utcnow(), data=data))


def _rows(batch: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """A finished batch as result rows (NaN back to None, numpy scalars to Python)."""

    def plain(value: Any) -> Any:
        if isinstance(value, np.generic):
            value = value.item()
        return None if isinstance(value, float) and np.isnan(value) else value

    rows = [{n: plain(column[i]) for n, column in batch.items()} for i in range(len(batch["item"]))]
    for r in rows:  # the sentinels of _as_row: Arrow columns hold one type
        r["inspection_id"] = None if r["inspection_id"] == -1 else r["inspection_id"]
        r["original_verdict"] = r["original_verdict"] or None
    return rows


def run_batch(
    engine: Any,
    run: Any,
    model_path: Path,
    recipe: Recipe,
    items: Sequence[BatchItem],
    *,
    address: str | None = None,
    workers: int = 2,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> BatchReport:
    """Score the items of ``run`` not stored yet on a pool of ``workers`` actors and store
    each finished batch; ``progress(n)`` with the items stored before, then after each
    batch. Ray is started here (or joined at ``address``) and shut down at the end."""
    import ray
    import ray.data

    from huoyan.store.reinspections import finish_run, store_results, stored_items

    done = stored_items(engine, run.id)
    todo = [i for i in items if i.item not in done]
    report = BatchReport(run.id, len(items), len(items) - len(todo))
    if progress is not None and report.already:
        progress(report.already)
    if todo:
        sha = file_sha256(model_path)
        if sha != run.model_sha256:
            raise ValueError(f"{model_path} is not the run's model ({run.model_sha256[:12]})")
        started_here = connect(address, workers)
        try:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False  # the CLI draws its own, of stored results
            context.execution_options.preserve_order = False
            dataset = ray.data.from_items(
                [_as_row(i) for i in todo], override_num_blocks=_blocks(len(todo), batch_size)
            )
            scored = dataset.map_batches(
                Scorer,
                fn_constructor_kwargs={"model": str(model_path.resolve()), "sha256": sha, "recipe": recipe},
                batch_size=batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=1,
            )
            for batch in scored.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
                rows = _rows(batch)
                store_results(engine, run.id, rows)
                report.scored += len(rows)
                for r in rows:
                    report.verdicts[r["verdict"]] = report.verdicts.get(r["verdict"], 0) + 1
                if progress is not None:
                    progress(len(rows))
        finally:
            if started_here:
                ray.shutdown()
    finish_run(engine, run.id)
    return report


def _as_row(item: BatchItem) -> dict[str, Any]:
    return {
        "item": item.item,
        "path": item.path,
        "source_name": item.source_name,
        "inspection_id": -1 if item.inspection_id is None else item.inspection_id,
        "original_verdict": item.original_verdict or "",
        "original_score": np.nan if item.original_score is None else float(item.original_score),
    }


def _blocks(n: int, batch_size: int) -> int:
    """Enough blocks that every actor has work and a killed job loses little."""
    return max(1, min(1000, -(-n // batch_size)))
