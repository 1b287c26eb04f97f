"""Where a part's time goes: each stage of the vision engine, timed on its own.

The parts and the model of bench/speed.py (synthetic metal at 256 px encoded as PNG,
200 good images, 224 px input, coreset ratio 0.1). For each part, one after another at
batch 1, every stage is timed in turn on the output of the one before, so the stages
run interleaved on the same data: decode (PNG bytes to RGB), preprocess (resize and
normalise), backbone (ONNX Runtime), search (nearest bank row of every patch), anomaly
map (upsampling and blur) and decision (the map at the image's size, regions, verdict).
The whole path is timed too, so what the stages leave out (Python between them) shows.

    python bench/stages.py [--parts 200] [--json bench/out/stages.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchlib import cpu_model, vector_extensions
from huoyan.decision.judge import ImageDecider, Policy
from huoyan.sampleline.generator import make_sample
from huoyan.vision.anomaly_map import patch_grid_to_map
from huoyan.vision.imageio import decode_image
from huoyan.vision.patchcore import PatchCore

STAGES = ("decode", "preprocess", "backbone", "search", "anomaly_map", "decision")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--parts", type=int, default=200)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    train = [make_sample("metal", None, 256, rng)[0] for _ in range(args.train)]
    parts = [make_sample("metal", "scratch" if i % 2 else None, 256, rng)[0] for i in range(16)]
    encoded = [cv2.imencode(".png", cv2.cvtColor(p, cv2.COLOR_RGB2BGR))[1].tobytes() for p in parts]
    model = PatchCore().prepare().fit(train)
    runtime = model._features_runtime()
    index = model._index
    assert index is not None
    decider = ImageDecider(Policy.of(model.threshold))
    spent = {stage: [] for stage in (*STAGES, "whole")}  # type: dict[str, list[float]]

    def whole(data: bytes) -> None:
        image = decode_image(data)
        scores, maps = model.score([image])
        decider.judge(image, float(scores[0]), maps[0], "part")

    for i in range(args.parts + 5):
        data = encoded[i % len(encoded)]
        marks = [time.perf_counter()]
        image = decode_image(data)
        marks.append(time.perf_counter())
        batch = model.preprocess([image])
        marks.append(time.perf_counter())
        feature_maps = runtime(batch)
        marks.append(time.perf_counter())
        distances = index.map_distances(feature_maps)
        marks.append(time.perf_counter())
        heat = patch_grid_to_map(distances[0], model.image_size, model.blur_sigma)
        marks.append(time.perf_counter())
        decider.judge(image, float(heat.max()), heat, "part")
        marks.append(time.perf_counter())
        t = time.perf_counter()
        whole(data)
        whole_s = time.perf_counter() - t
        if i >= 5:  # warm-up
            for stage, start, end in zip(STAGES, marks, marks[1:], strict=False):
                spent[stage].append(end - start)
            spent["whole"].append(whole_s)
    ms = {stage: float(np.median(v) * 1000) for stage, v in spent.items()}
    staged = sum(ms[s] for s in STAGES)
    row: dict[str, Any] = {
        "cpu": cpu_model(),
        "vector_extensions": vector_extensions(),
        "bank_rows": int(model.bank_.shape[0]),
        "ms_median": ms,
        "share_of_stages": {s: ms[s] / staged for s in STAGES},
        "between_stages_ms": ms["whole"] - staged,
        "images_per_s_whole": 1000 / ms["whole"],
    }
    print(json.dumps(row, indent=2))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
