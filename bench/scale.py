"""``huoyan batch`` on Ray against the single-process engine: same images, model and recipe, one run.

Reference: the station's own inspector (read, decode, preprocess, score, judge; batches
of 8) in a process of one core (``OMP_NUM_THREADS=1``), and one of every core. Measured:
``huoyan batch``'s path (``scale.batch.run_batch``: Ray Data, an actor pool, results
stored in SQLite) with 1 and with 2 one-core actors. Rounds are interleaved (engine,
batch 1, batch 2, ...) so a drifting host shifts all alike.

For each batch run: wall time including Ray's start, the actors' start and the model
loads; the time to the first stored batch; and the steady rate from the first stored
batch to the last. Reported: steady rate per actor against the one-core engine (target
≥ 0.9), 2 actors against 1 (scaling), and Ray's overhead per image (the steady
per-image time minus the engine's). Timings are measured, never asserted.

    python bench/scale.py [--images 480] [--rounds 2] [--json bench/out/scale.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "magnetic_tile" / "MT_Free" / "Imgs"


def engine_rate(model: Path, folder: Path, batch: int = 8) -> float:
    """Images/s of the station's inspector in this process (its threads as the environment says)."""
    from huoyan.cli.scale import _default_recipe
    from huoyan.detectors import load_station_detector
    from huoyan.runner.recipes import make_inspector
    from huoyan.scale.batch import _as_row, folder_items, score_batch

    recipe = _default_recipe(model, str(folder))
    inspector = make_inspector(load_station_detector(model), recipe, "bench")
    items = folder_items(folder)

    def columns(chunk: list[Any]) -> dict[str, Any]:  # a batch as the actors get it from Ray Data
        import numpy as np

        rows = [_as_row(i) for i in chunk]
        return {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}

    score_batch(inspector, columns(items[:batch]))  # warm-up
    start = time.perf_counter()
    for i in range(0, len(items), batch):
        score_batch(inspector, columns(items[i : i + batch]))
    return len(items) / (time.perf_counter() - start)


def engine_in_subprocess(model: Path, folder: Path, threads: int | None) -> float:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    else:
        env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run(
        [sys.executable, __file__, "--engine", str(model), str(folder)], env=env, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def batch_run(model: Path, folder: Path, workers: int, db: str) -> dict[str, float]:
    """One ``run_batch`` over the folder, timed from before Ray starts."""
    from huoyan.cli.scale import _default_recipe
    from huoyan.runner import open_database
    from huoyan.scale.batch import folder_items, run_batch
    from huoyan.store.reinspections import open_run

    engine = open_database(db)
    items = folder_items(folder)
    recipe = _default_recipe(model, str(folder))
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    run = open_run(
        engine, f"bench-{workers}-{time.time_ns()}", (sha, model.name), 1.0, ("batch", "1"), {}, len(items), "bench"
    )
    stamps: list[tuple[float, int]] = []
    start = time.perf_counter()
    report = run_batch(engine, run, model, recipe, items, workers=workers, batch_size=8,
                       progress=lambda n: stamps.append((time.perf_counter(), n)))  # fmt: skip
    wall = time.perf_counter() - start
    first_at, first_n = stamps[0]
    steady_n = sum(n for _, n in stamps[1:])
    steady_s = stamps[-1][0] - first_at
    return {
        "images": report.scored,
        "wall_s": wall,
        "first_batch_s": first_at - start,
        "steady_rate": steady_n / steady_s if steady_s > 0 else float("nan"),
        "first_batch_images": first_n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=480)
    ap.add_argument("--train", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--engine", nargs=2, metavar=("MODEL", "FOLDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.engine:
        print(engine_rate(Path(args.engine[0]), Path(args.engine[1])))
        return

    from benchlib import cpu_model
    from huoyan.vision.imageio import read_image
    from huoyan.vision.patchcore import PatchCore

    files = sorted(DATA.glob("*.jpg"))
    train, test = files[: args.train], files[args.train : args.train + args.images]
    with tempfile.TemporaryDirectory(prefix="huoyan-bench-scale-") as tmp:
        root = Path(tmp)
        folder = root / "archive"
        folder.mkdir()
        for f in test:
            (folder / f.name).symlink_to(f)
        model = PatchCore(seed=0).fit([read_image(f) for f in train]).save(root / "tile.safetensors")
        rows: dict[str, list[Any]] = {"engine_1core": [], "engine_all": [], "batch_1": [], "batch_2": []}
        for r in range(args.rounds):
            rows["engine_1core"].append(engine_in_subprocess(model, folder, 1))
            rows["engine_all"].append(engine_in_subprocess(model, folder, None))
            for workers in (1, 2):
                rows[f"batch_{workers}"].append(batch_run(model, folder, workers, f"sqlite:///{root / f'r{r}.db'}"))
            print(f"round {r + 1}: " + json.dumps({k: v[-1] for k, v in rows.items()}), flush=True)
    r1 = statistics.median(rows["engine_1core"])
    rall = statistics.median(rows["engine_all"])
    b1 = statistics.median(x["steady_rate"] for x in rows["batch_1"])
    b2 = statistics.median(x["steady_rate"] for x in rows["batch_2"])
    flags = Path("/proc/cpuinfo").read_text()
    summary = {
        "cpu": cpu_model(),
        "avx512": "avx512f" in flags,
        "amx": "amx_tile" in flags,
        "cores": os.cpu_count(),
        "images": len(test),
        "engine_1core_ips": r1,
        "engine_all_cores_ips": rall,
        "batch_1_actor_steady_ips": b1,
        "batch_2_actors_steady_ips": b2,
        "batch_per_actor_vs_engine_1core": b1 / r1,
        "batch_2_vs_1_actor": b2 / b1,
        "batch_2_actors_vs_engine_all_cores": b2 / rall,
        "ray_overhead_ms_per_image": (1 / b1 - 1 / r1) * 1000,
        "batch_2_wall_s": statistics.median(x["wall_s"] for x in rows["batch_2"]),
        "batch_2_first_batch_s": statistics.median(x["first_batch_s"] for x in rows["batch_2"]),
        "rounds": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
