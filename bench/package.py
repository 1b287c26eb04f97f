"""How long a large signed package takes to export and verify, plain and sealed.

A model artifact of ``--mb`` megabytes (a memory bank of random float16, written by the
same artifact writer as every model) is exported as a signed package, verified, exported
sealed for a receiving plant, and imported there (decrypt, verify, install). Each step is
set against the floor of the same bytes on this disk, measured in the same run: copying
the file once and hashing it once (SHA-256), which any package tool must do at least.
``--rounds`` rounds, interleaved; medians reported.

    .venv/bin/python bench/package.py [--mb 500] [--rounds 3] [--out bench/out/package.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchlib import cpu_model, peak_rss_mb
from huoyan.core.artifact import write_artifact
from huoyan.core.models import ModelCard
from huoyan.share.keys import Role, TrustStore, box_private, new_keypair
from huoyan.share.package import export_package, import_package, verify_package


def _model(folder: Path, mb: int) -> Path:
    raw = np.random.default_rng(0).bytes(mb * (1 << 20))  # random bytes: nothing compresses
    bank = np.frombuffer(raw, np.float16).reshape(-1, 256)
    card = ModelCard.model_construct(
        kind="patchcore", huoyan_version="bench", created_at=datetime.now(UTC), seed=0, train_samples=0,
        train_content_sha256="0" * 64, calibration=None, metrics={}, input=None, details={},
    )  # fmt: skip
    return write_artifact(folder / "big.safetensors", "patchcore", {"bank": bank}, card, {})


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _floor(model: Path, scratch: Path) -> None:
    copy = scratch / "copy.bin"
    shutil.copyfile(model, copy)
    h = hashlib.sha256()
    with copy.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    copy.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="bench/out/package.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp:  # on the project's disk, not a RAM /tmp
        root = Path(tmp)
        # Made in a process of its own, so that the peak memory below is the packages' alone.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            model = pool.submit(_model, root, args.mb).result()
        key, public = new_keypair("plant-a", root / "a", None)
        new_keypair("plant-b", root / "b", None)
        at_a, at_b = TrustStore(), TrustStore()
        at_a.trust("plant-b", (root / "b" / "plant-b.pub").read_bytes(), [Role.RECEIVE_DATA],
                   (root / "b" / "plant-b.box.pub").read_bytes())  # fmt: skip
        at_b.trust("plant-a", public.read_bytes(), [Role.PUBLISH_MODELS])
        box = box_private(root / "b" / "plant-b.box.key", None)
        steps: dict[str, list[float]] = {k: [] for k in ("floor", "export", "verify", "export_sealed", "import_sealed")}
        for r in range(args.rounds):
            common: dict[str, Any] = dict(
                name="big", version=r + 1, publisher="plant-a", private_key=key, passphrase=None, model=model,
                recipe=None, exported_by="bench",
            )  # fmt: skip
            plain, sealed = root / f"plain-{r}", root / f"sealed-{r}"
            into = root / f"installed-{r}"
            steps["floor"].append(_timed(partial(_floor, model, root)))
            steps["export"].append(_timed(partial(export_package, plain, **common)))
            steps["verify"].append(_timed(partial(verify_package, plain, at_b)))
            seal = partial(export_package, sealed, **common, seal_for=at_a.named("plant-b"))
            steps["export_sealed"].append(_timed(seal))
            steps["import_sealed"].append(_timed(partial(import_package, sealed, at_b, into, box_key=box)))
            for folder in (plain, sealed, into):
                shutil.rmtree(folder)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in steps.items()), flush=True)
        medians = {k: statistics.median(v) for k, v in steps.items()}
        result = {
            "cpu": cpu_model(),
            "mb": args.mb,
            "model_bytes": model.stat().st_size,
            "rounds": steps,
            "median_s": medians,
            "export_plus_verify_s": medians["export"] + medians["verify"],
            "sealed_export_plus_import_s": medians["export_sealed"] + medians["import_sealed"],
            "ratio_to_floor": {k: v / medians["floor"] for k, v in medians.items() if k != "floor"},
            "peak_rss_mb": peak_rss_mb(),  # of this process: the model was made in another
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))


if __name__ == "__main__":
    main()
