"""Accuracy of the vision engine: synthetic sample line and real magnetic-tile data.

Magnetic tile (../shared/data/magnetic_tile, read in place): train on a fixed 70% of
MT_Free (numpy default_rng(0) permutation of the sorted file list), test on the other
30% plus every defect class; masks are binarised at > 127. Reports image AUROC, pixel
AUROC, AUPRO, F1-max, fit seconds and throughput. Prints one row per dataset;
``--json OUT`` writes them.

    python bench/accuracy.py [--coreset-ratio 0.1] [--datasets synthetic magnetic_tile]
        [--lighting fixed|image|shading] [--blur-sigma 4] [--backbone-precision float32|bfloat16]
        [--image-score max|max-mean]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from huoyan.sampleline.generator import generate_line
from huoyan.vision.anomaly_map import IMAGE_SCORES
from huoyan.vision.dataset import Category, TestSample, load_category
from huoyan.vision.evaluate import evaluate
from huoyan.vision.imageio import read_image
from huoyan.vision.lighting import LIGHTINGS
from huoyan.vision.patchcore import PatchCore
from huoyan.vision.runtime import BACKBONE_PRECISIONS
from huoyan.vision.search import NearestNeighbourIndex

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MT_DEFECTS = ("Blowhole", "Break", "Crack", "Fray", "Uneven")


def magnetic_tile(root: Path, max_train: int | None) -> Category:
    """The documented split of the magnetic-tile data as an in-memory category."""
    free = sorted((root / "MT_Free" / "Imgs").glob("*.jpg"))
    if not free:
        raise SystemExit(f"{root}: magnetic-tile data not found")
    perm = np.random.default_rng(0).permutation(len(free))
    n_train = int(0.7 * len(free))
    train = [free[i] for i in perm[:n_train]][:max_train]
    test = [TestSample(free[i], "good", None) for i in perm[n_train:]]
    for cls in MT_DEFECTS:
        for img in sorted((root / f"MT_{cls}" / "Imgs").glob("*.jpg")):
            test.append(TestSample(img, cls.lower(), img.with_suffix(".png")))
    return Category(root, train, test)


def run(name: str, category: Category, args: argparse.Namespace) -> dict[str, Any]:
    images = [read_image(p) for p in category.train]
    both = args.search_precision == "both"
    first = "float32" if both else args.search_precision
    model = PatchCore(
        backbone=args.backbone,
        coreset_ratio=args.coreset_ratio,
        image_size=args.size,
        search_precision=first,
        lighting=args.lighting,
        blur_sigma=args.blur_sigma,
        backbone_precision=args.backbone_precision,
        image_score=args.image_score,
    )
    model.prepare()  # backbone build and ONNX export are start-up, not fit
    t = time.perf_counter()
    model.fit(images)
    fit_s = time.perf_counter() - t
    result = evaluate(model, category)
    assert model.card_ is not None
    row = {"dataset": name, "train_images": len(images), "bank_rows": model.card_.details["bank_size"], "fit_s": fit_s}
    row.update({k: v for k, v in result.items() if k != "category"})
    if both:  # the same bank searched in bfloat16: do the nearest rows and the metrics move?
        fast = evaluate(model.set_params(search_precision="bfloat16"), category)
        row["bfloat16"] = {k: v for k, v in fast.items() if k != "category"}
        row["bfloat16"].update(nearest_rows_kept(model, category))
    print(json.dumps(row))
    return row


def nearest_rows_kept(model: PatchCore, category: Category) -> dict[str, float]:
    """Share of test patches whose bfloat16 distance is the exact one, and the largest excess."""
    exact = NearestNeighbourIndex(model.bank_)
    fast = NearestNeighbourIndex(model.bank_, precision="bfloat16")
    same = total = 0
    excess = 0.0
    for sample in category.test:
        maps = model.feature_maps([read_image(sample.path)])
        want, got = exact.map_distances(maps), fast.map_distances(maps)
        total += want.size
        same += int(np.isclose(got, want, rtol=1e-5).sum())
        excess = max(excess, float((got / np.maximum(want, 1e-12) - 1).max()))
    return {"patches_exact": same / total, "largest_relative_excess": excess, "patches": total}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["synthetic", "magnetic_tile"])
    ap.add_argument("--backbone", default="efficientnet-lite0")
    ap.add_argument("--coreset-ratio", type=float, default=0.1)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--lighting", choices=LIGHTINGS, default="fixed")
    ap.add_argument("--blur-sigma", type=float, default=4.0)
    ap.add_argument("--backbone-precision", choices=BACKBONE_PRECISIONS, default="float32")
    ap.add_argument("--image-score", choices=IMAGE_SCORES, default="max")
    ap.add_argument("--max-train", type=int, default=None, help="cap the magnetic-tile training images")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument(
        "--search-precision",
        choices=("float32", "bfloat16", "both"),
        default="float32",
        help="both: the float32 model, then the same bank searched in bfloat16, with the share of patches kept",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    if "synthetic" in args.datasets:
        with tempfile.TemporaryDirectory() as tmp:
            for root in generate_line(tmp, seed=0):
                rows.append(run(f"synthetic/{root.name}", load_category(root), args))
    if "magnetic_tile" in args.datasets:
        rows.append(run("magnetic_tile", magnetic_tile(args.data / "magnetic_tile", args.max_train), args))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
