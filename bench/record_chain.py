"""What the tamper-evident record chain costs, and how fast it verifies.

1. **Write path, chain on against off, interleaved.** The record store writes records the
   way a station's writer thread does (micro-batches of ``--batch``, NG parts with a
   region), ``--rounds`` rounds alternating a store that chains and one whose ``_chain``
   does nothing (the reference), each round ``--records`` records into a fresh database.
   Reported: records per second of each, and the ratio. For scale, the same per-record
   cost is set against a station's time per part at 30 parts/s.
2. **Station throughput, chain on against off, interleaved.** With ``--station-rounds``: a
   station on the synthetic washer line is run saturated (``--station-parts`` files waiting
   in a hot folder, every record committed to SQLite) alternately with the store as it is
   and with ``_chain`` left out; sustained parts/s of each (as ``bench/station.py``).
3. **Verify a million records.** ``--verify-records`` chained records (1 in 40 NG with a
   region) are bulk-loaded with the same chain functions the store uses, then
   ``huoyan.store.chain.verify_station`` walks them: seconds, records per second.

Both on SQLite and on a private PostgreSQL server (started from the system's binaries).

    .venv/bin/python bench/record_chain.py [--records 4000] [--rounds 6] [--verify-records 1000000]
                                           [--station-rounds 6] [--station-parts 400]
                                           [--skip-postgres] [--out bench/out/record_chain.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from benchlib import cpu_model, private_postgres
from huoyan.core.models import Region, Verdict
from huoyan.core.records import InspectionRecord, StoredRecord
from huoyan.store import chain
from huoyan.store.blobs import BlobStore
from huoyan.store.database import make_engine, upgrade
from huoyan.store.records import RecordStore
from huoyan.store.schema import InspectionRow, RegionRow
from huoyan.store.spool import Spool

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


class Unchained(RecordStore):
    """The reference: the same store with the chain left out."""

    def _chain(self, s: Any, rows: Any, children: Any) -> tuple[dict[str, Any], dict[str, int]]:
        return {}, {}


def record(i: int) -> InspectionRecord:
    t = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(seconds=i / 30)
    ng = i % 40 == 0
    return InspectionRecord(
        key=f"st-1:camera:{i}",
        seq=i,
        station_id="st-1",
        recipe_id="washer-top",
        recipe_version="1",
        model_sha256="b" * 64,
        threshold=2.0,
        part_id=f"P{i}",
        source_name=f"frame-{i:010d}",
        verdict=Verdict.NG if ng else Verdict.OK,
        score=3.1 if ng else 0.8 + (i % 7) / 10,
        normalised_score=1.55 if ng else 0.4,
        regions=[Region(x=10, y=20, width=30, height=12, area_px=250, max_score=3.1, mean_score=2.4)] if ng else [],
        arrived_at=t,
        decided_at=t + timedelta(milliseconds=31),
        latency_ms=31.0,
    )


def store_of(kind: type[RecordStore], url: str, tmp: Path) -> RecordStore:
    engine = make_engine(url)
    upgrade(engine)
    store = kind(engine, BlobStore(tmp / "blobs"), Spool(tmp / "spool"))
    store.configure("st-1", "washer", "washer-top", "1", "a" * 64, {"k": 1}, "b" * 64, "m.safetensors", {"c": 2})
    store.register()
    return store


def write_rate(kind: type[RecordStore], url: str, tmp: Path, n: int, batch: int) -> float:
    store = store_of(kind, url, tmp)
    records = [StoredRecord(record(i)) for i in range(1, n + 1)]
    t0 = time.perf_counter()
    for lo in range(0, n, batch):
        store.write(records[lo : lo + batch])
    seconds = time.perf_counter() - t0
    store.engine.dispose()
    return n / seconds


def write_path(new_url: Any, n: int, rounds: int, batch: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"chained": [], "unchained": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):  # interleaved, alternating which goes first
            order = [("chained", RecordStore), ("unchained", Unchained)]
            for name, kind in order if r % 2 == 0 else order[::-1]:
                rates[name].append(write_rate(kind, new_url(), Path(tmp) / f"{name}-{r}", n, batch))
    chained, unchained = statistics.median(rates["chained"]), statistics.median(rates["unchained"])
    per_record_ms = 1000 / chained - 1000 / unchained
    return {
        "records_per_round": n,
        "batch": batch,
        "rounds": rounds,
        "chained_records_per_s": round(chained),
        "unchained_records_per_s": round(unchained),
        "chained_over_unchained": round(chained / unchained, 3),
        "added_ms_per_record": round(per_record_ms, 4),
        "share_of_a_part_at_30_per_s": round(per_record_ms / (1000 / 30), 5),
        "all": {k: [round(v) for v in vs] for k, vs in rates.items()},
    }


def station_ab(rounds: int, parts: int) -> dict[str, Any]:
    """Saturated station runs, alternating chained and unchained stores."""
    import shutil

    from huoyan.core.recipe import load_recipe
    from huoyan.runner import open_station, run_station
    from huoyan.sampleline.generator import generate_line
    from huoyan.store.records import query_records
    from huoyan.vision.imageio import list_images, read_image
    from huoyan.vision.patchcore import PatchCore

    work = Path(tempfile.mkdtemp(prefix="huoyan-bench-chain-"))
    root = generate_line(work / "line", products=("washer",), n_train=60, n_test_good=30, seed=0)[0]
    model = PatchCore(image_size=224).fit([read_image(p) for p in list_images(root / "train" / "good")])
    model_path = model.save(work / "washer.safetensors")
    tests = sorted((root / "test").rglob("*.png"))
    original = RecordStore._chain
    rates: dict[str, list[float]] = {"chained": [], "unchained": []}
    for r in range(rounds):
        for name in ("chained", "unchained") if r % 2 == 0 else ("unchained", "chained"):
            RecordStore._chain = original if name == "chained" else Unchained._chain  # type: ignore[method-assign]
            run = work / f"{name}-{r}"
            inbox = run / "inbox"
            inbox.mkdir(parents=True)
            for i in range(parts):
                shutil.copyfile(tests[i % len(tests)], inbox / f"{i:06d}.png")
            recipe_path = run / "recipe.yaml"
            recipe_path.write_text(
                f"station: bench-{name}\nproduct: washer\nrecipe: bench\nversion: '1'\nmodel: {model_path}\n"
                f"source: {{type: hot_folder, path: {inbox}, settle_ms: 0, queue: 32}}\n"
                f"storage: {{data_dir: {run / 'data'}, keep_ok_every: 10}}\n"
            )
            opened = open_station(load_recipe(recipe_path))
            run_station(opened, idle_exit=1.0, status=None)
            rows = query_records(opened.engine)
            first = min(datetime.fromisoformat(x["arrived_at"]).timestamp() for x in rows)
            last = max(datetime.fromisoformat(x["stored_at"]).timestamp() for x in rows)
            rates[name].append(len(rows) / (last - first))
            opened.engine.dispose()
    RecordStore._chain = original  # type: ignore[method-assign]
    chained, unchained = statistics.median(rates["chained"]), statistics.median(rates["unchained"])
    return {
        "parts_per_round": parts,
        "rounds": rounds,
        "chained_parts_per_s": round(chained, 2),
        "unchained_parts_per_s": round(unchained, 2),
        "chained_over_unchained": round(chained / unchained, 4),
        "all": {k: [round(v, 2) for v in vs] for k, vs in rates.items()},
    }


def bulk_chained(url: str, n: int) -> float:
    """n chained records loaded in bulk with the store's own chain functions; seconds."""
    store = store_of(RecordStore, url, Path(tempfile.mkdtemp()))
    engine = store.engine
    with Session(engine) as s:
        row0 = store._row(s, record(1))
    recipe_pk, model_pk = row0["recipe_pk"], row0["model_pk"]
    previous = chain.GENESIS
    t0 = time.perf_counter()
    chunk = 20_000
    for lo in range(1, n + 1, chunk):
        rows: list[dict[str, Any]] = []
        regions: list[dict[str, Any]] = []
        for i in range(lo, min(n, lo + chunk - 1) + 1):
            r = record(i)
            row = r.model_dump(include=set(row0) - {"recipe_pk", "model_pk"})
            row.update(recipe_pk=recipe_pk, model_pk=model_pk, stored_at=r.decided_at)
            children = {"regions": [g.model_dump() for g in r.regions]}
            row["chain_pos"] = i
            row["chain_sha256"] = previous = chain.link(previous, chain.content_digest(row, children))
            # Ids given, not returned: a plain executemany is many times faster on PostgreSQL.
            rows.append({**row, "id": i})
            regions.extend({"inspection_id": i, **g} for g in children["regions"])
        with engine.begin() as c:
            c.execute(insert(InspectionRow), rows)
            if regions:
                c.execute(insert(RegionRow), regions)
    with Session(engine) as s:
        assert s.scalar(select(InspectionRow.chain_pos).order_by(InspectionRow.chain_pos.desc()).limit(1)) == n
    return time.perf_counter() - t0


def verify_speed(url: str, n: int) -> dict[str, Any]:
    load_s = bulk_chained(url, n)
    engine = make_engine(url)
    t0 = time.perf_counter()
    report = chain.verify_station(engine, "st-1")
    seconds = time.perf_counter() - t0
    assert report.intact and report.records == n, report.problems
    return {
        "records": n,
        "load_s": round(load_s, 1),
        "verify_s": round(seconds, 1),
        "records_per_s": round(n / seconds),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--verify-records", type=int, default=1_000_000)
    ap.add_argument("--station-rounds", type=int, default=0, help="saturated station runs (0: none)")
    ap.add_argument("--station-parts", type=int, default=400)
    ap.add_argument("--skip-verify", action="store_true")
    ap.add_argument("--skip-write", action="store_true")
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("bench/out/record_chain.json"))
    args = ap.parse_args()
    report: dict[str, Any] = {"cpu": cpu_model(), "date": datetime.now(UTC).date().isoformat()}
    if args.station_rounds:
        report["station"] = station_ab(args.station_rounds, args.station_parts)
        print(json.dumps(report["station"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(10**6))
        if not args.skip_write:
            report["sqlite_write"] = write_path(
                lambda: f"sqlite:///{tmp}/w{next(counter)}.db", args.records, args.rounds, args.batch
            )
            print(json.dumps(report["sqlite_write"]), flush=True)
        if not args.skip_verify:
            report["sqlite_verify"] = verify_speed(f"sqlite:///{tmp}/verify.db", args.verify_records)
            print(json.dumps(report["sqlite_verify"]), flush=True)
    if not args.skip_postgres and not (args.skip_write and args.skip_verify):
        with private_postgres() as server:
            if not args.skip_write:
                report["postgresql_write"] = write_path(server.new_database, args.records, args.rounds, args.batch)
                print(json.dumps(report["postgresql_write"]), flush=True)
            if not args.skip_verify:
                report["postgresql_verify"] = verify_speed(server.new_database(), args.verify_records)
                print(json.dumps(report["postgresql_verify"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
