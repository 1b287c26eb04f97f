"""Golden-template comparison on DeepPCB's development groups, with the official protocol.

Trains on ``trainval_subset.txt`` and tests on ``test_subset.txt`` (the four groups in
``../shared/data/deeppcb``): F-score and AP with classes and class-agnostic, fit time,
accuracy against the number of annotated training pairs, and throughput at 640x640
on this machine's cores: from decoded pairs to results, and from files to results.

The reference in the same run is the textbook comparison every AOI starts from: the
absolute difference of the pair as given (DeepPCB's pairs are pre-aligned), a fixed
threshold, a 3x3 opening and connected components, boxes padded by the margin the
annotators draw. It names no classes, so it has class-agnostic scores only.

    .venv/bin/python bench/template.py [--sizes 25,100,all] [--out bench/out/template.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchlib import cpu_model, vector_extensions
from huoyan.core.models import PairedImage
from huoyan.vision.detection_metrics import Box, evaluate_detections
from huoyan.vision.template.detector import TemplateComparison
from huoyan.vision.template.evaluate import detected_boxes, truth_boxes
from huoyan.vision.template.pairs import PairFiles, load_pair, read_split_list

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "deeppcb" / "PCBData"


def baseline(pair: PairedImage, padding: int = 10) -> list[Box]:
    """The reference: |test - template| > 64, 3x3 opening, components of 20 px or more."""
    assert pair.template is not None
    mask = (cv2.absdiff(pair.image, pair.template) > 64).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    h, w = mask.shape
    return [
        Box(max(0, x - padding), max(0, y - padding), min(w, x + bw + padding), min(h, y + bh + padding), "defect", a)
        for x, y, bw, bh, a in stats[1:]
        if a >= 20
    ]


def scores(model: TemplateComparison, pairs: list[PairedImage]) -> dict[str, Any]:
    _, evidence = model.score(pairs)
    images = [(truth_boxes(p.defects), detected_boxes(c.regions)) for p, c in zip(pairs, evidence, strict=True)]
    return {
        "with_classes": evaluate_detections(images).as_dict(),
        "class_agnostic": evaluate_detections(images, class_agnostic=True).as_dict(),
        "errors": sum(c.error is not None for c in evidence),
    }


def throughput_decoded(model: TemplateComparison, pairs: list[PairedImage], rounds: int) -> float:
    """Pairs per second from decoded pairs to results, batches of 8 (the model's workers)."""
    model.score(pairs[:8])
    start = time.perf_counter()
    for _ in range(rounds):
        for i in range(0, len(pairs), 8):
            model.score(pairs[i : i + 8])
    return rounds * len(pairs) / (time.perf_counter() - start)


def throughput_files(model: TemplateComparison, files: list[PairFiles], rounds: int, workers: int) -> float:
    """Pairs per second from the two JPEG files to results: each of ``workers`` threads
    decodes a pair and compares it (the model itself on one thread per pair)."""
    parallel = model.workers
    model.set_params(workers=1)

    def one(f: PairFiles) -> int:
        _, evidence = model.score([load_pair(f)])
        return len(evidence[0].regions)

    try:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, files[:8]))
            start = time.perf_counter()
            for _ in range(rounds):
                list(pool.map(one, files))
        return rounds * len(files) / (time.perf_counter() - start)
    finally:
        model.set_params(workers=parallel)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--sizes", default="25,100,all", help="numbers of annotated training pairs")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the test pairs for throughput")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "template.json")
    args = ap.parse_args()

    train_files = read_split_list(args.data / "trainval_subset.txt")
    test_files = read_split_list(args.data / "test_subset.txt")
    t0 = time.perf_counter()
    train = [load_pair(f) for f in train_files]
    test = [load_pair(f) for f in test_files]
    decode_ms = 1000 * (time.perf_counter() - t0) / (len(train) + len(test))
    cores = len(os.sched_getaffinity(0))
    report: dict[str, Any] = {
        "cpu": cpu_model(),
        "vector_extensions": vector_extensions(),
        "cores": cores,
        "train_pairs": len(train),
        "test_pairs": len(test),
        "decode_ms_per_pair": decode_ms,
        "by_training_size": {},
    }
    rng = np.random.default_rng(args.seed)
    model = None
    for size in args.sizes.split(","):
        n = len(train) if size == "all" else int(size)
        chosen = train if n >= len(train) else [train[i] for i in sorted(rng.choice(len(train), n, replace=False))]
        candidate = TemplateComparison(seed=args.seed, workers=cores)
        start = time.perf_counter()
        candidate.fit(chosen)
        fit_s = time.perf_counter() - start
        row = {"pairs": len(chosen), "fit_seconds": fit_s, **scores(candidate, test)}
        report["by_training_size"][size] = row
        print(
            f"{len(chosen):>4} pairs: fit {fit_s:6.1f} s  "
            f"F {row['with_classes']['fscore']:.4f}  AP {row['with_classes']['ap']:.4f}  "
            f"(class-agnostic F {row['class_agnostic']['fscore']:.4f}  AP {row['class_agnostic']['ap']:.4f})",
            flush=True,
        )
        model = candidate
    assert model is not None
    report["pairs_per_second_decoded"] = throughput_decoded(model, test, args.rounds)
    report["pairs_per_second_files"] = throughput_files(model, test_files, args.rounds, cores)
    start = time.perf_counter()
    reference = [(truth_boxes(p.defects), baseline(p)) for p in test]
    report["reference"] = {
        "method": "|difference| > 64, 3x3 opening, components >= 20 px, boxes padded 10 px",
        "class_agnostic": evaluate_detections(reference, class_agnostic=True).as_dict(),
        "pairs_per_second_decoded_one_core": len(test) / (time.perf_counter() - start),
    }
    print(
        f"throughput on {cores} cores: {report['pairs_per_second_decoded']:.1f} pairs/s from decoded pairs, "
        f"{report['pairs_per_second_files']:.1f} from files (decode {decode_ms:.1f} ms/pair)"
    )
    ref = report["reference"]["class_agnostic"]
    print(f"reference (no registration, no classes): class-agnostic F {ref['fscore']:.4f}  AP {ref['ap']:.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(args.out)


if __name__ == "__main__":
    main()
