"""Station throughput and latency, next to the engine's raw speed, in one run.

1. Engine: ``PatchCore.score`` + ``judge`` on already-decoded images at batch 8 (the
   raw batched throughput, no files, no records).
2. Station, saturated: ``--parts`` PNG files are put in a hot folder before the
   station starts; sustained parts/s is parts / (last record stored − first arrival),
   with every record committed to SQLite (WAL, synchronous=FULL) and NG images, heat
   maps and 1 in 10 OK images written to the blob store.
3. Station at half of that rate: a feeder writes files (temporary name, then rename)
   at 0.5 × the sustained rate; latency is taken from the records (arrival → decision)
   and from the feeder's rename time (file visible → decision).

Reports the station/engine throughput ratio (target ≥ 0.8) and p99 latency at half
rate (target ≤ 100 ms). Timings are measured, never asserted.

    python bench/station.py [--train 100] [--parts 400] [--json bench/out/station.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from huoyan.core.recipe import load_recipe
from huoyan.decision.judge import ImageDecider, Policy
from huoyan.runner import open_station, run_station
from huoyan.sampleline.feeder import feed_folder
from huoyan.sampleline.generator import generate_line
from huoyan.store.records import query_records
from huoyan.vision.imageio import list_images, read_image
from huoyan.vision.patchcore import PatchCore


def engine_throughput(model: PatchCore, images: list[np.ndarray], batch: int, seconds: float) -> float:
    decider = ImageDecider(Policy.of(model.threshold))

    def once(chunk: list[np.ndarray]) -> None:
        scores, maps = model.score(chunk)
        decider.judge_batch(chunk, scores, maps, ["x"] * len(chunk))

    once(images[:batch])  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(0, len(images) - batch + 1, batch):
            once(images[i : i + batch])
            n += batch
    return n / (time.perf_counter() - start)


def write_recipe(folder: Path, name: str, model: Path, inbox: Path, settle_ms: int) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"station: bench-{name}\nproduct: washer\nrecipe: bench-{name}\nversion: '1'\nmodel: {model}\n"
        f"source: {{type: hot_folder, path: {inbox}, settle_ms: {settle_ms}, queue: 32}}\n"
        f"storage: {{data_dir: {folder / 'data'}, keep_ok_every: 10}}\n"
    )
    return path


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=100)
    ap.add_argument("--parts", type=int, default=400, help="files for the saturated run")
    ap.add_argument("--latency-parts", type=int, default=200)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--settle-ms", type=int, default=0, help="hot-folder settle time (0: writers rename)")
    ap.add_argument(
        "--defect-share",
        type=float,
        default=0.5,
        help="share of defective parts fed (each NG stores its image and heat map)",
    )
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="huoyan-bench-station-"))
    root = generate_line(work / "line", products=("washer",), n_train=args.train, n_test_good=30, seed=0)[0]
    model = PatchCore(image_size=args.image_size).fit([read_image(p) for p in list_images(root / "train" / "good")])
    model_path = model.save(work / "washer.safetensors")
    good = sorted((root / "test" / "good").glob("*.png"))
    bad = sorted(p for p in (root / "test").rglob("*.png") if p.parent.name != "good")
    n_bad = round(args.defect_share * len(good) / max(1e-9, 1 - args.defect_share))
    tests = sorted(good + [bad[i % len(bad)] for i in range(n_bad)])
    decoded = [read_image(p) for p in tests]
    engine = engine_throughput(model, decoded, 8, 15.0)

    # Saturated: the whole batch waits in the hot folder before the station starts.
    inbox = work / "sat-inbox"
    inbox.mkdir()
    for i in range(args.parts):
        src = tests[i % len(tests)]
        shutil.copyfile(src, inbox / f"{i:06d}_{src.parent.name}_{src.stem}_{i}{src.suffix}")
    recipe = load_recipe(write_recipe(work, "saturated", model_path, inbox, args.settle_ms))
    opened = open_station(recipe)
    run_station(opened, idle_exit=1.0, status=None)
    rows = query_records(opened.engine, station=recipe.station)
    span = max(ts(r["stored_at"]) for r in rows) - min(ts(r["arrived_at"]) for r in rows)
    sustained = len(rows) / span

    # Half the sustainable rate, fed as a line would.
    rate = 0.5 * sustained
    inbox2 = work / "half-inbox"
    recipe2 = load_recipe(write_recipe(work, "half", model_path, inbox2, args.settle_ms))
    opened2 = open_station(recipe2)
    files = [tests[i % len(tests)] for i in range(args.latency_parts)]
    visible: dict[str, float] = {}

    def feed() -> None:
        time.sleep(1.0)  # let the station reach its polling loop
        feed_folder(files, inbox2, rate, on_visible=lambda name: visible.__setitem__(name, time.time()))

    feeder = threading.Thread(target=feed)
    feeder.start()
    run_station(opened2, idle_exit=2.0, status=None)
    feeder.join()
    rows2 = query_records(opened2.engine, station=recipe2.station)
    decision_ms = [r["latency_ms"] for r in rows2]
    visible_ms = [
        (ts(r["decided_at"]) - visible[r["source_name"]]) * 1000 for r in rows2 if r["source_name"] in visible
    ]

    result: dict[str, Any] = {
        "image_size": args.image_size,
        "train_images": args.train,
        "engine_images_per_s_batch8": round(engine, 1),
        "station_parts": len(rows),
        "station_parts_per_s": round(sustained, 1),
        "station_over_engine": round(sustained / engine, 3),
        "half_rate_parts_per_s": round(rate, 1),
        "half_rate_parts": len(rows2),
        "latency_arrival_to_decision_ms_p50": round(pct(decision_ms, 50), 1),
        "latency_arrival_to_decision_ms_p99": round(pct(decision_ms, 99), 1),
        "latency_file_visible_to_decision_ms_p50": round(pct(visible_ms, 50), 1),
        "latency_file_visible_to_decision_ms_p99": round(pct(visible_ms, 99), 1),
        "settle_ms": args.settle_ms,
        "defect_share": args.defect_share,
        "verdicts_saturated": {v: sum(r["verdict"] == v for r in rows) for v in ("OK", "NG", "ERROR")},
    }
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:<{width}}  {v}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
