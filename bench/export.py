"""Edge export: do exported models score as the Python model, and how fast do they run?

On magnetic tile (the documented split of bench/accuracy.py, read in place) a PatchCore
model is fitted at 224 px and exported to ONNX and to OpenVINO IR (``huoyan.vision.export``).
Every test image is scored by the Python model and by both exports; the report gives the
largest difference of scores and of maps as a share of the image's score, the largest
raw difference, and the image AUROC of each. Then, interleaved round by round on the same
decoded images at batch 1, the time from a decoded image to its score and map: the Python
model (``PatchCore.score``), the ONNX file under ONNX Runtime and the IR under OpenVINO
(each with the resize the reference runner does).

    python bench/export.py [--max-train 200] [--timed 60] [--json bench/out/export.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from accuracy import DATA, magnetic_tile
from benchlib import cpu_model, vector_extensions
from huoyan.vision.edge_runner import open_model, resize_to
from huoyan.vision.export import export
from huoyan.vision.imageio import read_image
from huoyan.vision.patchcore import PatchCore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-train", type=int, default=200, help="cap the training images (fit time)")
    ap.add_argument("--timed", type=int, default=60, help="test images in the interleaved timing")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    category = magnetic_tile(DATA / "magnetic_tile", args.max_train)
    model = PatchCore().fit([read_image(p) for p in category.train])
    tests = [read_image(s.path) for s in category.test]
    labels = np.array([s.is_defect for s in category.test])
    want = [model.score([img]) for img in tests]
    want_scores = np.array([w.raw[0] for w in want])
    row: dict[str, Any] = {
        "cpu": cpu_model(),
        "vector_extensions": vector_extensions(),
        "train_images": len(category.train),
        "test_images": len(tests),
        "bank_rows": int(model.bank_.shape[0]),
        "python_image_auroc": float(roc_auc_score(labels, want_scores)),
    }
    scorers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("onnx", "openvino"):
            written = export(model, Path(tmp) / "mt", fmt, "bench")
            row[f"{fmt}_file_mb"] = sum(f.stat().st_size for f in written) / 1e6
            scorer, _, size = open_model(written[0])
            scorers[fmt] = scorer
            got = [scorer(resize_to(img, size)[None]) for img in tests]
            scores = np.array([g[0][0] for g in got])
            raw_map = max(float(np.abs(g[1][0] - w.evidence[0]).max()) for g, w in zip(got, want, strict=True))
            rel_map = max(
                float(np.abs(g[1][0] - w.evidence[0]).max() / w.raw[0]) for g, w in zip(got, want, strict=True)
            )
            row |= {
                f"{fmt}_max_score_diff_of_score": float((np.abs(scores - want_scores) / want_scores).max()),
                f"{fmt}_max_map_diff_of_score": rel_map,
                f"{fmt}_max_score_diff_raw": float(np.abs(scores - want_scores).max()),
                f"{fmt}_max_map_diff_raw": raw_map,
                f"{fmt}_image_auroc": float(roc_auc_score(labels, scores)),
                f"{fmt}_verdicts_changed": int(((scores > model.threshold) != (want_scores > model.threshold)).sum()),
            }
        timed = tests[: args.timed]
        runs: dict[str, Any] = {
            "python": lambda img: model.score([img]),
            "onnx": lambda img: scorers["onnx"](resize_to(img, model.image_size)[None]),
            "openvino": lambda img: scorers["openvino"](resize_to(img, model.image_size)[None]),
        }
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for fn in runs.values():  # warm-up
            for img in timed[:3]:
                fn(img)
        for _ in range(args.rounds):
            for name, fn in runs.items():
                t = time.perf_counter()
                for img in timed:
                    fn(img)
                seconds[name].append((time.perf_counter() - t) / len(timed))
    for name, s in seconds.items():
        row[f"{name}_ms_per_image"] = float(np.median(s) * 1000)
    for name in ("onnx", "openvino"):
        row[f"{name}_speed_vs_python"] = row["python_ms_per_image"] / row[f"{name}_ms_per_image"]
    print(json.dumps(row, indent=2))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
