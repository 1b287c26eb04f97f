"""Few-shot quality on magnetic tile: models from 8 and 16 good images against the
full-data model, and whether each few-shot model's stated false-reject bound holds.

The documented split of bench/accuracy.py (read in place). The full model learns from
every training image; each few-shot model from a seeded random draw of k of them. All
are scored on the whole test set: image AUROC, pixel AUROC, AUPRO, and, at each model's
own threshold, the realised false-reject rate on the test set's good images beside the
bound its card states (``false_reject_rate_upper`` at ``confidence``).

    python bench/few_shot.py [--shots 8 16] [--draws 3] [--json bench/out/few_shot.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from accuracy import DATA, magnetic_tile
from benchlib import cpu_model
from huoyan.vision.dataset import Category
from huoyan.vision.evaluate import evaluate
from huoyan.vision.imageio import read_image
from huoyan.vision.patchcore import PatchCore


def run(name: str, category: Category, params: dict[str, Any]) -> dict[str, Any]:
    images = [read_image(p) for p in category.train]
    model = PatchCore(**params).prepare()
    t = time.perf_counter()
    model.fit(images)
    fit_s = time.perf_counter() - t
    result = evaluate(model, category)
    cal = model.card_.calibration
    row = {
        "model": name,
        "train_images": len(images),
        "bank_rows": int(model.bank_.shape[0]),
        "fit_s": round(fit_s, 1),
        "image_auroc": result["image_auroc"],
        "pixel_auroc": result["pixel_auroc"],
        "aupro": result["aupro"],
        "calibration": cal.method,
        "n_calibration": cal.n_calibration,
        "stated_false_reject_upper": cal.false_reject_rate_upper,
        "realised_false_reject_rate": result["false_reject_rate"],
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shots", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a PatchCore parameter")
    ap.add_argument("--no-full", action="store_true", help="skip the full-data model")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    params = {k: json.loads(v) for k, v in (p.split("=", 1) for p in args.param)}
    full = magnetic_tile(DATA / "magnetic_tile", None)
    rows = [] if args.no_full else [run("full", full, {})]
    for k in args.shots:
        for draw in range(args.draws):
            pick = np.random.default_rng(1000 + draw).choice(len(full.train), k, replace=False)
            few = Category(full.root, [full.train[i] for i in sorted(pick)], full.test)
            rows.append(run(f"{k}-shot draw {draw}", few, params))
    summary: dict[str, Any] = {"cpu": cpu_model(), "params": params, "rows": rows}
    for k in args.shots:
        mine = [r for r in rows if r["model"].startswith(f"{k}-shot")]
        metrics = ("image_auroc", "pixel_auroc", "aupro")
        summary[f"{k}_shot_mean"] = {m: float(np.mean([r[m] for r in mine])) for m in metrics}
        held = [r["realised_false_reject_rate"] <= r["stated_false_reject_upper"] for r in mine]
        summary[f"{k}_shot_bound_held"] = f"{sum(held)} of {len(held)}"
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
