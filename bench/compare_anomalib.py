"""Huoyan and anomalib's PatchCore side by side: same data, same backbone, same machine, one run.

    bash bench/setup_anomalib.sh                      # once: the reference venv
    python bench/compare_anomalib.py CATEGORY_DIR [--max-train N] [--quick] [--json OUT]

CATEGORY_DIR is an MVTec-layout folder (train/good, test/<type>, ground_truth/<type>),
or ``../shared/data/magnetic_tile`` itself, which gets the split documented in
``bench/accuracy.py``: 70% of MT_Free for training, chosen by a numpy default_rng(0)
permutation of the sorted file list; the other 30% and every defect class for testing.
Both libraries read the same view of it: hard links under ``--work``, with at most
``--max-train`` training images, chosen by a seeded permutation. Each library runs in its
own process: Huoyan in this venv, anomalib in ``bench/.anomalib-venv``, one after the
other. Both use ImageNet EfficientNet-Lite0 from the same weight package, with mean =
std = 0.5 inputs. anomalib's copy is converted to timm's ``tf_efficientnet_lite0``, and
the conversion is checked on logits. Both use the stride-8 and stride-16 stage ends
(152-dim features), a 3x3 neighbourhood average, the same input size, a 0.1 coreset
ratio, and 1 nearest neighbour for the image score.

Metrics are computed here by one piece of code for both, from each side's image scores
and anomaly maps, at ``--eval-size`` (maps resized bilinearly, masks by nearest). Speed
counts the model's forward plus the anomaly map, after warm-up. Huoyan runs twice, before
and after anomalib (the shared host drifts by up to 1.5-2x over minutes): its speed rows
are the mean of the two runs, and both runs' rates are kept in the report. anomalib is
timed from a preprocessed tensor. Huoyan is timed from a decoded uint8 image, so its time
includes resizing and normalising.

Huoyan keeps its bank in float16 (its default; ``--bank-dtype float32`` for the old
figures) and searches it in place; anomalib's bank is float32. Huoyan's held-out
calibration images join its bank after calibrating, as by default in the engine;
``--no-calibration-in-bank`` keeps them out.

``--quick`` gives anomalib a random coreset of the same size instead of its greedy one
(its greedy selection is most of its fit time on a CPU). Inference speed depends on the
bank's size, not on how it was chosen. Every row says which mode it ran in.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from accuracy import magnetic_tile
from benchlib import cpu_model, peak_rss_mb, speed_row, timed
from huoyan.vision.dataset import Category, load_category, read_mask
from huoyan.vision.imageio import read_image
from huoyan.vision.metrics import aupro, image_auroc, pixel_auroc
from huoyan.vision.patchcore import PatchCore
from huoyan.vision.runtime import BACKBONE_PRECISIONS

HERE = Path(__file__).resolve().parent
DEFAULT_ANOMALIB_PYTHON = HERE / ".anomalib-venv" / "bin" / "python"


def load_any(category: Path) -> Category:
    """An MVTec-layout folder, or the raw magnetic-tile data with bench/accuracy.py's split."""
    if (category / "MT_Free").is_dir():
        return magnetic_tile(category, None)
    return load_category(category)


def make_view(category: Path, work: Path, max_train: int | None, seed: int) -> Path:
    """Hard-link an MVTec-layout category, keeping a seeded choice of ``max_train`` training images.

    Not symlinks: anomalib's dataset drops files that resolve outside its root.
    A copy is made where a hard link is impossible (another file system)."""
    cat = load_any(category)
    view = work / "view" / category.name
    train = list(cat.train)
    if max_train is not None and max_train < len(train):
        order = np.random.default_rng(seed).permutation(len(train))[:max_train]
        train = [train[i] for i in sorted(order)]

    # anomalib's MVTec reader takes PNG only: other formats are decoded once and written
    # as lossless PNG, so both libraries read exactly the same pixels.
    def png(p: Path) -> str:
        return p.name if p.suffix.lower() == ".png" else f"{p.stem}.png"

    links = [(p, view / "train" / "good" / png(p)) for p in train]
    for s in cat.test:
        links.append((s.path, view / "test" / s.defect_type / png(s.path)))
        if s.mask_path is not None:
            links.append((s.mask_path, view / "ground_truth" / s.defect_type / f"{s.path.stem}_mask.png"))
    for src, dst in links:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            continue
        if src.suffix.lower() != ".png":
            cv2.imwrite(str(dst), cv2.imread(str(src), cv2.IMREAD_UNCHANGED))
            continue
        try:
            os.link(src.resolve(), dst)
        except OSError:
            shutil.copyfile(src, dst)
    return view


def huoyan_side(view: Path, out: Path, args: argparse.Namespace, tag: str = "") -> None:
    cat = load_category(view)
    start = time.perf_counter()
    model = PatchCore(
        image_size=args.image_size,
        coreset_ratio=args.coreset_ratio,
        seed=args.seed,
        calibration_in_bank=args.calibration_in_bank,
        bank_dtype=args.bank_dtype,
        search_precision=args.search_precision,
        backbone_precision=args.backbone_precision,
    )
    model.fit([read_image(p) for p in cat.train])
    fit_s = time.perf_counter() - start
    names, scores, maps = [], [], []
    for s in cat.test:
        score, amap = model.score([read_image(s.path)])
        names.append(str(s.path.resolve()))
        scores.append(float(score[0]))
        maps.append(cv2.resize(amap[0], (args.eval_size, args.eval_size), interpolation=cv2.INTER_LINEAR))
    np.savez_compressed(
        out / f"huoyan{tag}_scores.npz",
        names=np.array(names),
        scores=np.array(scores, np.float32),
        maps=np.stack(maps).astype(np.float32),  # float16 ties the AUPRO sweep: -0.007 on the washer
    )
    img = read_image(cat.test[0].path)
    t1 = timed(lambda: model.score([img]), args.repeats)
    t8 = timed(lambda: model.score([img] * 8), max(5, args.repeats // 2))  # as many batches on both sides
    assert model.bank_ is not None
    result = {
        "library": "huoyan",
        "mode": f"greedy-coreset, {args.bank_dtype} bank, {args.backbone_precision} backbone, "
        f"{args.search_precision} search" + (", calibration in bank" * args.calibration_in_bank),
        "fit_seconds": fit_s,
        "train_images": len(cat.train),
        "bank_images": model.card_.details["bank_images"],
        **speed_row(t1, t8),
        "bank_rows": int(model.bank_.shape[0]),
        "bank_bytes": int(model.bank_.nbytes),
        "peak_rss_mb": peak_rss_mb(),
    }
    (out / f"huoyan{tag}.json").write_text(json.dumps(result, indent=2))


def metrics(view: Path, scores_file: Path, eval_size: int) -> dict[str, float]:
    data = np.load(scores_file)
    by_name = {n: i for i, n in enumerate(data["names"])}
    cat = load_category(view)
    idx = [by_name[str(s.path.resolve())] for s in cat.test]
    labels = np.array([s.is_defect for s in cat.test], dtype=int)
    masks = [read_mask(s.mask_path, eval_size, eval_size) for s in cat.test]
    every = data["maps"]  # an npz member is read (and inflated) again on every access
    maps = [every[i].astype(np.float32) for i in idx]
    return {
        "image_auroc": image_auroc(labels, data["scores"][idx]),
        "pixel_auroc": pixel_auroc(masks, maps),
        "aupro": aupro(masks, maps),
    }


SPEED_KEYS = ("images_per_s_batch1", "images_per_s_batch8", "latency_ms_median", "latency_ms_p99")
ROWS = [
    ("image_auroc", "image AUROC", "{:.4f}"),
    ("pixel_auroc", "pixel AUROC", "{:.4f}"),
    ("aupro", "AUPRO (FPR ≤ 0.3)", "{:.4f}"),
    ("fit_seconds", "fit seconds", "{:.1f}"),
    ("images_per_s_batch1", "images/s, batch 1", "{:.1f}"),
    ("images_per_s_batch8", "images/s, batch 8", "{:.1f}"),
    ("latency_ms_median", "latency median, ms", "{:.1f}"),
    ("latency_ms_p99", "latency p99, ms", "{:.1f}"),
    ("bank_bytes", "memory bank, MB", "{:.2f}"),
    ("peak_rss_mb", "peak RSS, MB", "{:.0f}"),
]


def table(h: dict[str, Any], a: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, label, _ in ROWS:
        hv, av = h[key], a[key]
        if key == "bank_bytes":
            hv, av = hv / 1e6, av / 1e6
        rows.append({"measure": label, "key": key, "huoyan": hv, "anomalib": av, "ratio": hv / av if av else None})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("category", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="anomalib with a random coreset of the same size")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--coreset-ratio", type=float, default=0.1)
    ap.add_argument("--eval-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--calibration-in-bank",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Huoyan adds its calibration images to the bank after calibrating (its default)",
    )
    ap.add_argument("--bank-dtype", choices=("float32", "float16"), default="float16", help="Huoyan's memory bank")
    ap.add_argument(
        "--search-precision", choices=("float32", "bfloat16"), default="float32", help="Huoyan's search of the bank"
    )
    ap.add_argument(
        "--backbone-precision",
        choices=BACKBONE_PRECISIONS,
        default="float32",
        help="Huoyan's backbone: bfloat16 runs it in OpenVINO (CPUs with AVX-512 BF16 or AMX)",
    )
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--anomalib-python", type=Path, default=DEFAULT_ANOMALIB_PYTHON)
    ap.add_argument("--side", choices=("huoyan",), help=argparse.SUPPRESS)
    ap.add_argument("--tag", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.side == "huoyan":  # the child process that measures Huoyan alone
        huoyan_side(args.category, args.work, args, args.tag)
        return
    if not args.anomalib_python.exists():
        raise SystemExit(f"{args.anomalib_python} not found: run bash bench/setup_anomalib.sh first")
    work = args.work or Path(tempfile.mkdtemp(prefix="huoyan-vs-anomalib-"))
    work.mkdir(parents=True, exist_ok=True)
    view = make_view(args.category, work, args.max_train, args.seed)
    common = [
        "--image-size", str(args.image_size), "--coreset-ratio", str(args.coreset_ratio),
        "--eval-size", str(args.eval_size), "--repeats", str(args.repeats), "--seed", str(args.seed),
    ]  # fmt: skip
    in_bank = ["--calibration-in-bank" if args.calibration_in_bank else "--no-calibration-in-bank"]
    in_bank += ["--bank-dtype", args.bank_dtype, "--search-precision", args.search_precision]
    in_bank += ["--backbone-precision", args.backbone_precision]
    huoyan = [sys.executable, __file__, str(view), "--side", "huoyan", "--work", str(work), *common, *in_bank]
    subprocess.run(huoyan, check=True)
    quick = ["--quick"] if args.quick else []
    subprocess.run(
        [str(args.anomalib_python), str(HERE / "anomalib_side.py"), str(view), "--out", str(work), *common, *quick],
        check=True,
    )
    subprocess.run([*huoyan, "--tag=-after"], check=True)
    h = json.loads((work / "huoyan.json").read_text()) | metrics(view, work / "huoyan_scores.npz", args.eval_size)
    after = json.loads((work / "huoyan-after.json").read_text())
    h["speed_runs"] = [{k: run[k] for k in SPEED_KEYS} for run in (h, after)]
    h.update({k: (h[k] + after[k]) / 2 for k in SPEED_KEYS})
    a = json.loads((work / "anomalib.json").read_text()) | metrics(view, work / "anomalib_scores.npz", args.eval_size)
    rows = table(h, a)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model()},
        "category": str(args.category),
        "train_images": h["train_images"],
        "test_images": len(load_category(view).test),
        "huoyan_mode": h["mode"],
        "anomalib_mode": a["mode"],
        "logit_max_abs_diff": a["logit_max_abs_diff"],
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "rows": rows,
        "huoyan": h,
        "anomalib": a,
    }
    print(f"{args.category.name}: {h['train_images']} train images; anomalib mode: {a['mode']}")
    print(f"weight conversion: max |logit difference| = {a['logit_max_abs_diff']:.2e}")
    print(f"{'measure':<22} {'huoyan':>10} {'anomalib':>10} {'huoyan/anomalib':>16}")
    for (_, _, fmt), row in zip(ROWS, rows, strict=True):
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        print(f"{row['measure']:<22} {fmt.format(row['huoyan']):>10} {fmt.format(row['anomalib']):>10} {ratio:>16}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
