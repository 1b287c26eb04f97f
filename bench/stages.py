"""Where a part's time goes: each stage of the vision engine, timed on its own.

The parts and the model of bench/speed.py (synthetic metal at 256 px encoded as PNG,
200 good images, 224 px input, coreset ratio 0.1). For each part, one after another at
batch 1, every stage is timed in turn on the output of the one before, so the stages
run interleaved on the same data: decode (PNG bytes to RGB), preprocess (resize and
normalise), backbone (ONNX Runtime), search (nearest bank row of every patch), anomaly
map (upsampling and blur) and decision (the map at the image's size, regions, verdict).
The whole path is timed too, so what the stages leave out (Python between them) shows.

The search and the whole path are timed with each search in turn on every part (the
library's matrix products, the fused float32 kernel, and the fused bfloat16 kernel where
the CPU has AVX-512 BF16), so the three are interleaved; the bfloat16 distances are
compared with the exact ones patch by patch. Where the CPU has bfloat16 arithmetic, the
backbone is also run in OpenVINO in bfloat16 (``backbone_precision``) on every part, and
the whole path with it and the bfloat16 search (the bank is the float32 model's: the
time does not depend on its values). libgomp reads ``GOMP_SPINCOUNT`` once per process,
so that setting is compared by running the script again with it in the environment.

    python bench/stages.py [--parts 200] [--json bench/out/stages.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchlib import cpu_model, vector_extensions
from huoyan.decision.judge import ImageDecider, Policy
from huoyan.sampleline.generator import make_sample
from huoyan.vision import fused_search
from huoyan.vision.anomaly_map import patch_grid_to_map
from huoyan.vision.imageio import decode_image
from huoyan.vision.patchcore import PatchCore
from huoyan.vision.runtime import bfloat16_backbone_available
from huoyan.vision.search import NearestNeighbourIndex

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
    searches = {"library": NearestNeighbourIndex(model.bank_, kernel="library")}
    if fused_search.available():
        searches["fused_float32"] = NearestNeighbourIndex(model.bank_, kernel="fused")
    if fused_search.bfloat16_available():
        searches["fused_bfloat16"] = NearestNeighbourIndex(model.bank_, precision="bfloat16")
    rounded = None
    if bfloat16_backbone_available():
        rounded = PatchCore(backbone_precision="bfloat16").prepare()._features_runtime()
    decider = ImageDecider(Policy.of(model.threshold))
    spent: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for name in searches:
        spent[f"search_{name}"] = []
        spent[f"whole_{name}"] = []
    wholes = list(searches)
    if rounded is not None and "fused_bfloat16" in searches:
        wholes.append("bfloat16_backbone")
        spent["backbone_bfloat16"], spent["whole_bfloat16_backbone"] = [], []
    patches = same = 0
    largest_excess = 0.0

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
        if rounded is not None:
            t = time.perf_counter()
            rounded(batch)
            if i >= 5:
                spent["backbone_bfloat16"].append(time.perf_counter() - t)
        found = {}
        for name, index in searches.items():
            t = time.perf_counter()
            found[name] = index.map_distances(feature_maps)
            if i >= 5:
                spent[f"search_{name}"].append(time.perf_counter() - t)
        distances = found["library"]
        marks.append(time.perf_counter())
        heat = patch_grid_to_map(distances[0], model.image_size, model.blur_sigma)
        marks.append(time.perf_counter())
        decider.judge(image, float(heat.max()), heat, "part")
        marks.append(time.perf_counter())
        if "fused_bfloat16" in found:
            fast = found["fused_bfloat16"]
            patches += distances.size
            same += int(np.isclose(fast, distances, rtol=1e-5).sum())
            largest_excess = max(largest_excess, float((fast / distances - 1).max()))
        for name in wholes:
            model._index = searches.get(name, searches.get("fused_bfloat16"))
            model._runtime = rounded if name == "bfloat16_backbone" else runtime
            t = time.perf_counter()
            whole(data)
            if i >= 5:
                spent[f"whole_{name}"].append(time.perf_counter() - t)
        if i >= 5:  # warm-up
            for stage, start, end in zip(STAGES, marks, marks[1:], strict=False):
                if stage != "search":
                    spent[stage].append(end - start)
    ms = {stage: float(np.median(v) * 1000) for stage, v in spent.items() if v}
    row: dict[str, Any] = {
        "cpu": cpu_model(),
        "vector_extensions": vector_extensions(),
        "bank_rows": int(model.bank_.shape[0]),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
        "ms_median": ms,
    }
    for name in wholes:
        search = "fused_bfloat16" if name == "bfloat16_backbone" else name
        stages = {s: ms[s] if s != "search" else ms[f"search_{search}"] for s in STAGES}
        if name == "bfloat16_backbone":
            stages["backbone"] = ms["backbone_bfloat16"]
        staged = sum(stages.values())
        row[name] = {
            "share_of_stages": {s: v / staged for s, v in stages.items()},
            "between_stages_ms": ms[f"whole_{name}"] - staged,
            "images_per_s_whole": 1000 / ms[f"whole_{name}"],
            # The measure: from a decoded image to a result.
            "images_per_s_decoded": 1000 / (ms[f"whole_{name}"] - ms["decode"]),
        }
    if patches:
        row["bfloat16_patches_exact"] = same / patches
        row["bfloat16_largest_excess"] = largest_excess
    print(json.dumps(row, indent=2))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
