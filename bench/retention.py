"""What evidence retention costs on a station's database of realistic size.

``--records`` records of one station spread evenly over ``--days`` days (1 in 40 NG with
an image and a heat map, 1 in 10 OK parts with its image, as ``keep_ok_every: 10``
keeps), bulk-loaded, each evidence file a small blob on disk. Then ``apply_retention``
with OK parts kept 30 days and NG parts 45:

1. the first run, which meets every record past the periods at once (a plant turning
   retention on after months of running);
2. the hourly run after it, an hour later (what a station does from then on).

Reported per run: seconds, records expired, files removed and the rate of each. Both on
SQLite and on a private PostgreSQL server started from the system's binaries.

    PYTHONPATH=src:bench:tests .venv/bin/python bench/retention.py [--records 200000] [--days 60] [--skip-postgres]
                                        [--out bench/out/retention.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from benchlib import cpu_model, private_postgres
from huoyan.core.recipe import Retention
from huoyan.store.blobs import BlobStore, sha256_hex
from huoyan.store.database import make_engine, upgrade
from huoyan.store.records import RecordStore
from huoyan.store.retention import apply_retention
from huoyan.store.schema import EvidenceRow, InspectionRow
from huoyan.store.spool import Spool

RULE = Retention(ok_days=30, ng_days=45)
CHUNK = 20_000


def load(url: str, folder: Path, n: int, days: int, now: datetime) -> tuple[Any, BlobStore, float]:
    """The station's records and evidence blobs; the engine, the blob store and seconds taken."""
    engine = make_engine(url)
    upgrade(engine)
    blobs = BlobStore(folder / "blobs")
    store = RecordStore(engine, blobs, Spool(folder / "spool"))
    store.configure("st-1", "washer", "washer-top", "1", "a" * 64, {}, "b" * 64, "m.safetensors", {})
    store.register()
    recipe_pk, model_pk = store._pks[("recipe", "washer-top", "1")], store._pks[("model", "b" * 64)]
    start, step = now - timedelta(days=days), timedelta(days=days) / n
    t0 = time.perf_counter()
    for lo in range(0, n, CHUNK):
        rows, evidence = [], []
        for i in range(lo, min(n, lo + CHUNK)):
            ng = i % 40 == 0
            at = start + i * step
            rows.append(
                {
                    "id": i + 1,
                    "key": f"st-1:{i}",
                    "seq": i,
                    "station_id": "st-1",
                    "recipe_pk": recipe_pk,
                    "model_pk": model_pk,
                    "source_name": f"{i}.png",
                    "verdict": "NG" if ng else "OK",
                    "score": 3.0 if ng else 1.0,
                    "arrived_at": at,
                    "decided_at": at,
                    "stored_at": at,
                    "latency_ms": 20.0,
                }
            )
            kinds = ("image", "anomaly-map") if ng else ("image",) if i % 10 == 1 else ()
            for kind in kinds:
                data = f"{i}-{kind}".encode() * 64
                sha = blobs.put(data, sha256_hex(data))
                os.utime(blobs.path(sha), (at.timestamp(), at.timestamp()))  # stored when the part was
                evidence.append(
                    {"inspection_id": i + 1, "kind": kind, "channel": "main", "sha256": sha, "media_type": "image/png"}
                )
        with engine.begin() as c:
            c.execute(insert(InspectionRow), rows)
            c.execute(insert(EvidenceRow), evidence)
    return engine, blobs, time.perf_counter() - t0


def timed_run(engine: Any, blobs: BlobStore, now: datetime) -> dict[str, Any]:
    t0 = time.perf_counter()
    report = apply_retention(engine, blobs, "st-1", RULE, now=now)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "records_expired": report.records,
        "files_removed": report.blobs_removed,
        "records_per_s": report.records / seconds if seconds else None,
        "files_per_s": report.blobs_removed / seconds if seconds else None,
    }


def measure(url: str, folder: Path, n: int, days: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    engine, blobs, load_s = load(url, folder, n, days, now)
    first = timed_run(engine, blobs, now)
    hourly = timed_run(engine, blobs, now + timedelta(hours=1))
    row = {"records": n, "days": days, "load_s": load_s, "first_run": first, "hourly_run": hourly}
    print(json.dumps(row))
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    out: dict[str, Any] = {"cpu": cpu_model(), "rule": RULE.model_dump()}
    with tempfile.TemporaryDirectory() as tmp:
        out["sqlite"] = measure(f"sqlite:///{tmp}/records.db", Path(tmp) / "sqlite", args.records, args.days)
    if not args.skip_postgres:
        with private_postgres() as server, tempfile.TemporaryDirectory() as tmp:
            out["postgresql"] = measure(server.new_database(), Path(tmp), args.records, args.days)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
