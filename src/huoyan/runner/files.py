"""Run a detector and the decision stage over files on disk: one results row and one raw
map per input.

Results file (``results.jsonl``, one JSON object per input, in input order):

- ``path``: the input path exactly as given (folders expanded to their files);
- ``verdict``: ``OK``, ``NG`` or ``ERROR``; ``error``: the reason when ``ERROR``;
- ``score``: raw anomaly score (max of the smoothed map); ``normalised_score``: score
  divided by the calibrated threshold (> 1.0 is NG); ``threshold``;
- ``width``, ``height``: original image size;
- ``regions``: list of ``{x, y, width, height, area_px, area_mm2, max_score, mean_score,
  label, confidence}`` in original pixel coordinates, scores normalised; ``label`` and
  ``confidence`` are set by detectors that name defects (template comparison);
- ``template``: for a pair, the template's path;
- ``map``: path of the raw (not normalised) anomaly map, float32 ``.npy`` at the
  original resolution, relative to the output folder;
- ``overlay`` (with ``overlays=True``, ``huoyan predict --png``): a PNG a person can
  open, the image with its heat map (red at and above the threshold) and boxed regions.

Map paths mirror the input paths under ``maps/`` (``a/test/crack/000.png`` becomes
``maps/a/test/crack/000.png.npy``), so inputs from different folders never collide;
overlays do the same under ``overlays/`` (``overlays/a/test/crack/000.png.png``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from huoyan.core.detector import Decider, ImageDetector
from huoyan.core.models import InspectionResult, Verdict
from huoyan.station.inspect import heatmap_u8
from huoyan.vision.imageio import ImageError, list_inputs, read_image
from huoyan.vision.overlay import encode, render_overlay
from huoyan.vision.template.pairs import PairFiles, PairsError, load_pair

RESULTS_FILE = "results.jsonl"


def map_relpath(path: str | Path, folder: str = "maps", suffix: str = ".npy") -> Path:
    """Unambiguous relative location for an input's map (or overlay), mirroring its path."""
    parts = [("__" if part == ".." else part) for part in PurePath(path).parts if part not in ("/", ".", "\\")]
    anchor = PurePath(path).anchor.strip("/\\:")
    if anchor:
        parts.insert(0, anchor)
    return Path(folder, *parts).with_name(Path(*parts).name + suffix)


def result_row(result: InspectionResult, path: str, threshold: float, map_path: str | None) -> dict[str, Any]:
    row = result.model_dump(mode="json", exclude={"source_name"})
    return {"path": path, **row, "threshold": threshold, "map": map_path}


def predict_files(
    model: ImageDetector,
    decider: Decider,
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    batch_size: int = 8,
    overlays: bool = False,
) -> Iterator[dict[str, Any]]:
    """Score and judge every input, writing maps (and overlays) and ``results.jsonl``; yield each row."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths, empty = [], []
    for item in inputs:
        expanded = [str(p) for p in list_inputs([item])]
        if not expanded and Path(item).is_dir():
            empty.append({"path": str(item), "verdict": Verdict.ERROR.value, "error": f"{item}: folder holds no files"})
        paths += expanded
    items: list[tuple[str, dict[str, Any], Loader]] = [(p, {}, _read_one(p)) for p in paths]
    yield from _write_results(model, decider, out, empty, items, batch_size, overlays)


def predict_pairs(
    model: ImageDetector,
    decider: Decider,
    pairs: Sequence[PairFiles],
    out_dir: str | Path,
    batch_size: int = 8,
    overlays: bool = False,
) -> Iterator[dict[str, Any]]:
    """Like ``predict_files`` for template/test pairs: one row per tested image."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = [(str(p.image), {"template": str(p.template)}, _pair_loader(p)) for p in pairs]
    yield from _write_results(model, decider, out, [], items, batch_size, overlays)


Loader = Callable[[], tuple[Any, np.ndarray]]  # -> (the detector's sample, the tested image)


def _read_one(path: str) -> Loader:
    def load() -> tuple[Any, np.ndarray]:
        image = read_image(path)
        return image, image

    return load


def _pair_loader(files: PairFiles) -> Loader:
    def load() -> tuple[Any, np.ndarray]:
        pair = load_pair(files)
        return pair, pair.image

    return load


def _write_results(
    model: ImageDetector,
    decider: Decider,
    out: Path,
    first: list[dict[str, Any]],
    items: list[tuple[str, dict[str, Any], Loader]],
    batch_size: int,
    overlays: bool,
) -> Iterator[dict[str, Any]]:
    with (out / RESULTS_FILE).open("w", encoding="utf-8") as results:
        for row in first:
            results.write(json.dumps(row) + "\n")
            yield row
        for start in range(0, len(items), batch_size):
            for row in _predict_batch(model, decider, items[start : start + batch_size], out, overlays):
                results.write(json.dumps(row) + "\n")
                results.flush()
                yield row


def _predict_batch(
    model: ImageDetector,
    decider: Decider,
    items: list[tuple[str, dict[str, Any], Loader]],
    out: Path,
    overlays: bool = False,
) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    paths = [path for path, _, _ in items]
    samples, images, index = [], [], []
    for i, (p, extra, load) in enumerate(items):
        try:
            sample, image = load()
            samples.append(sample)
            images.append(image)
            index.append(i)
        except (ImageError, PairsError) as exc:
            rows[i] = {"path": p, **extra, "verdict": Verdict.ERROR.value, "error": str(exc), "map": None}
    if images:
        try:
            scores, maps = model.score(samples)
            results = [
                decider.judge(img, float(s), m, paths[i])
                for img, s, m, i in zip(images, scores, maps, index, strict=True)
            ]
        except Exception as exc:  # a model failure must not lose the batch's rows
            results = [
                InspectionResult(source_name=paths[i], verdict=Verdict.ERROR, error=f"inference failed: {exc}")
                for i in index
            ]
        for i, res in zip(index, results, strict=True):
            map_path = None
            if res.anomaly_map is not None:
                rel = map_relpath(paths[i])
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                np.save(out / rel, res.anomaly_map.astype(np.float32))
                map_path = rel.as_posix()
            rows[i] = {**result_row(res, paths[i], decider.threshold, map_path), **items[i][1]}
            if overlays and res.anomaly_map is not None:
                rows[i]["overlay"] = _write_overlay(out, paths[i], images[index.index(i)], res, decider.threshold)
    return [rows[i] for i in range(len(paths))]


def _write_overlay(out: Path, path: str, image: np.ndarray, result: InspectionResult, threshold: float) -> str:
    """The image with its heat map and regions, as the dashboard draws it, in a PNG."""
    assert result.anomaly_map is not None
    rel = map_relpath(path, "overlays", ".png")
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    picture = render_overlay(image, heatmap_u8(result.anomaly_map, threshold), result.regions)
    (out / rel).write_bytes(encode(picture, ".png"))
    return rel.as_posix()
