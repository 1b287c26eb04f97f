"""Speed of the vision engine on this machine, next to the backbone-only limit.

Measures, for a 200-image training set of synthetic parts at 224 px (defaults):
fit seconds (and per 100 images), inference images/s from a decoded image to a result
(preprocess, backbone, search, map, regions) at batch 1 and batch 8, median and p99
latency at batch 1, memory-bank bytes and peak RSS; and, in the same run, the backbone
alone under ONNX Runtime, eager torch (channels-last) and OpenVINO if installed, plus the
cost of decoding a 900x900 PNG. Prints a table; ``--json OUT`` writes it.

    python bench/speed.py [--train 200] [--coreset-ratio 0.1] [--json bench/out/speed.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from benchlib import cpu_model, peak_rss_mb, timed
from huoyan.decision.judge import ImageDecider, Policy
from huoyan.sampleline.generator import make_sample
from huoyan.vision.backbone import build_backbone
from huoyan.vision.features import fuse
from huoyan.vision.imageio import decode_image
from huoyan.vision.patchcore import PatchCore
from huoyan.vision.runtime import OnnxRuntime, TorchRuntime, cpu_threads


def backbone_rows(size: int, repeats: int) -> dict[str, float]:
    model = build_backbone("efficientnet-lite0", size)
    x1 = np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
    x8 = np.repeat(x1, 8, axis=0)
    rows: dict[str, float] = {}
    runtimes: dict[str, Any] = {"onnxruntime": OnnxRuntime(model, size), "torch": TorchRuntime(model)}
    try:  # optional: pip install openvino
        import openvino as ov

        core = ov.Core()
        ov_model = ov.convert_model(model, example_input=torch.from_numpy(x1))
        # Pin f32: OpenVINO otherwise switches to bf16 on CPUs that have it.
        compiled = core.compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        runtimes["openvino"] = lambda b: [compiled(b)[out] for out in compiled.outputs]
    except ImportError:
        pass
    ref = fuse(runtimes["torch"](x1))
    for name, rt in runtimes.items():
        rows[f"backbone_{name}_max_abs_diff_vs_torch"] = float(np.abs(fuse(rt(x1)) - ref).max())
        rows[f"backbone_{name}_ips_b1"] = 1 / float(np.median(timed(lambda rt=rt: rt(x1), repeats)))
        rows[f"backbone_{name}_ips_b8"] = 8 / float(np.median(timed(lambda rt=rt: rt(x8), max(5, repeats // 4))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--coreset-ratio", type=float, default=0.1)
    ap.add_argument("--bank-dtype", default="float16")
    ap.add_argument("--calibration-in-bank", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    train = [make_sample("metal", None, 256, rng)[0] for _ in range(args.train)]
    test = [make_sample("metal", "scratch" if i % 2 else None, 256, rng)[0] for i in range(16)]
    model = PatchCore(
        image_size=args.size,
        coreset_ratio=args.coreset_ratio,
        bank_dtype=args.bank_dtype,
        calibration_in_bank=args.calibration_in_bank,
    )
    model.prepare()  # backbone build and ONNX export are start-up, not fit
    t = time.perf_counter()
    model.fit(train)
    fit_s = time.perf_counter() - t
    assert model.bank_ is not None

    parts = itertools.cycle(test)
    decider = ImageDecider(Policy.of(model.threshold))

    def predict(images: list[np.ndarray]) -> None:  # score, then decide: what a station does per part
        scores, maps = model.score(images)
        decider.judge_batch(images, scores, maps, ["part"] * len(images))

    lat = timed(lambda: predict([next(parts)]), args.repeats)
    b8 = timed(lambda: predict(test[:8]), max(5, args.repeats // 8))
    big = cv2.imencode(".png", cv2.resize(test[0], (900, 900)))[1].tobytes()
    decode = timed(lambda: decode_image(big), 20)

    row: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_model(),
        "cores": cpu_threads(),
        "train_images": args.train,
        "image_size": args.size,
        "coreset_ratio": args.coreset_ratio,
        "calibration_in_bank": args.calibration_in_bank,
        "bank_dtype": args.bank_dtype,
        "bank_rows": int(model.bank_.shape[0]),
        "bank_dim": int(model.bank_.shape[1]),
        "bank_bytes": int(model.bank_.nbytes),
        "fit_s": fit_s,
        "fit_s_per_100": fit_s * 100 / args.train,
        "ips_b1": 1 / float(np.mean(lat)),
        "ips_b8": 8 / float(np.median(b8)),
        "latency_median_ms": float(np.median(lat) * 1e3),
        "latency_p99_ms": float(np.percentile(lat, 99) * 1e3),
        "decode_900px_png_ms": float(np.median(decode) * 1e3),
    }
    row.update(backbone_rows(args.size, args.repeats))
    row["peak_rss_mb"] = peak_rss_mb()
    for k, v in row.items():
        print(f"{k:>45}: {v:.4g}" if isinstance(v, float) else f"{k:>45}: {v}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
