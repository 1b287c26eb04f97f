"""How many remote stations one server serves before its live view lags: simulated
stations over the real network stack, against ``huoyan serve`` in its own process on a
private PostgreSQL.

Each simulated station reports once a second (``POST /api/remote/stations/<id>/link``,
the ``LinkReport`` a ``huoyan run --server`` sends: its status and the 10 parts decided
since the last report) with its parts counted at 10 parts/s;
a report's count names the moment it was sent. Live views (``GET
/api/stations/<id>/live``, the dashboard's Server-Sent Events) watch a sample of the
stations; the lag of a status event is when it arrived minus when the report it shows
was sent. The status stream runs once a second, so a view that keeps up shows reports
0-1 s old (p99 near 1 s); "lags" means the p99 goes past 2 s. Also reported: the report
round trip (p50/p99). The link path does not write the database (the stations write their
records themselves); the server process's CPU share is what limits it here, on the same
2 cores as the simulated stations.

With ``--uploads N``, also the other half of a remote station's traffic: N pieces of NG
evidence (``--upload-kb`` each, random bytes, as incompressible as a JPEG) uploaded by
``--upload-clients`` concurrent stations (``PUT /api/remote/blobs/<sha256>``, each named by
a stored record, as the link uploads them): uploads/s, MB/s and the round trip.

    PYTHONPATH=src:bench:tests python bench/remote_stations.py [--stations 10,50,100,200] [--seconds 15]
                                                               [--uploads 400 --upload-kb 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from huoyan.core.station import LinkReport, StationStatus

RATE = 10.0  # parts per second per station


def status(station: str, parts: int) -> StationStatus:
    return StationStatus(
        station_id=station, product="washer", running=True, paused=False, error=None, source="hot_folder",
        recipe_id=f"washer-{station}", recipe_version="1", model_version=1, model_sha256="0" * 64, threshold=1.0,
        threshold_set=False, counts={"OK": parts}, parts_per_second=RATE, ng_rate=0.0, queue_depth=0,
        latency_ms_p50=30.0, latency_ms_p99=60.0, alarms={}, spooled=0,
    )  # fmt: skip


def part(station: str, seq: int) -> dict[str, Any]:
    """A part as a report carries it (``runner.status.part_message``'s fields)."""
    return {
        "key": f"{station}:{seq}", "seq": seq, "part_id": f"P{seq:08d}", "source_name": f"P{seq:08d}.png",
        "verdict": "OK", "score": 0.42, "normalised_score": 0.61, "threshold": 0.69, "regions": [], "rules": [],
        "error": None, "decided_at": "2026-12-02T23:00:00+00:00", "latency_ms": 31.2, "recipe_id": f"washer-{station}",
        "recipe_version": "1", "model_sha256": "0" * 64, "recipe": f"washer-{station} v1", "ng_rate": 0.01,
    }  # fmt: skip


async def station(client: httpx.AsyncClient, name: str, start: float, until: float, trips: list[float]) -> None:
    """Report every second, as a station does; the count says when the report was sent."""
    await asyncio.sleep((hash(name) % 1000) / 1000)  # stations do not report in lock-step
    while (now := time.time()) < until:
        parts = int((now - start) * RATE)
        body = LinkReport(status=status(name, parts), parts=[part(name, parts - i) for i in range(int(RATE))])
        body = body.model_dump_json()
        sent = time.perf_counter()
        try:
            answer = await client.post(
                f"/api/remote/stations/{name}/link", content=body, headers={"Content-Type": "application/json"}
            )
            if answer.status_code == 200:
                trips.append(time.perf_counter() - sent)
        except httpx.HTTPError:
            pass
        await asyncio.sleep(max(0.0, 1.0 - (time.time() - now)))


async def watch(client: httpx.AsyncClient, name: str, start: float, until: float, lags: list[float]) -> None:
    """A live view of one station: the age of the report each status event shows."""
    try:
        async with client.stream("GET", f"/api/stations/{name}/live", timeout=None) as events:
            kind = None
            async for line in events.aiter_lines():
                if time.time() >= until:
                    return
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind == "status":
                    shown = json.loads(line[5:])
                    parts = sum(shown.get("counts", {}).values())
                    if shown.get("running") and parts:
                        lags.append(time.time() - (start + parts / RATE))
    except httpx.HTTPError:
        return


async def round_of(base: str, key: str, n: int, seconds: float) -> dict[str, Any]:
    names = [f"sim-{n}-{i:03d}" for i in range(n)]
    start = time.time()
    until = start + seconds
    trips: list[float] = []
    lags: list[float] = []
    limits = httpx.Limits(max_connections=n + 20, max_keepalive_connections=n + 20)
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=30, limits=limits) as client:
        reporting = [asyncio.create_task(station(client, name, start, until, trips)) for name in names]
        await asyncio.sleep(3.0)  # every station has joined
        watched = names[:: max(1, n // 5)][:5]
        views = [asyncio.create_task(watch(client, name, start, until, lags)) for name in watched]
        await asyncio.gather(*reporting)
        for v in views:
            v.cancel()
    settled = lags[len(watched) :]  # each view's first event shows the report it found on connecting
    return {
        "stations": n,
        "reports": len(trips),
        "reports_per_s": len(trips) / seconds,
        "trip_ms_p50": 1000 * statistics.median(trips) if trips else None,
        "trip_ms_p99": 1000 * quantile(trips, 0.99) if trips else None,
        "lag_s_p50": statistics.median(settled) if settled else None,
        "lag_s_p99": quantile(settled, 0.99) if settled else None,
        "lag_events": len(settled),
    }


def named_evidence(engine: Any, folder: Path, n: int, kb: int) -> list[tuple[str, bytes]]:
    """n evidence blobs, each named by a stored record of station ``sim-upload``."""
    import hashlib
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from huoyan.store.blobs import BlobStore
    from huoyan.store.records import RecordStore
    from huoyan.store.schema import EvidenceRow, InspectionRow
    from huoyan.store.spool import Spool

    store = RecordStore(engine, BlobStore(folder / "blobs"), Spool(folder / "spool"))
    store.configure("sim-upload", "washer", "washer-up", "1", "a" * 64, {}, "b" * 64, "m.safetensors", {})
    store.register()
    recipe_pk, model_pk = store._pks[("recipe", "washer-up", "1")], store._pks[("model", "b" * 64)]
    blobs = [os.urandom(kb * 1024) for _ in range(n)]
    named = [(hashlib.sha256(b).hexdigest(), b) for b in blobs]
    now = datetime.now(UTC)
    rows = [
        {"key": f"sim-upload:{i}", "station_id": "sim-upload", "recipe_pk": recipe_pk, "model_pk": model_pk,
         "source_name": f"{i}.jpg", "verdict": "NG", "arrived_at": now, "decided_at": now, "stored_at": now,
         "latency_ms": 30.0}
        for i in range(n)
    ]  # fmt: skip
    with engine.begin() as c:
        ids = c.execute(insert(InspectionRow).returning(InspectionRow.id), rows).scalars().all()
        c.execute(
            insert(EvidenceRow),
            [
                {"inspection_id": i, "kind": "image", "channel": "main", "sha256": sha, "media_type": "image/jpeg"}
                for i, (sha, _) in zip(ids, named, strict=True)
            ],
        )
    return named


async def uploads_round(base: str, key: str, named: list[tuple[str, bytes]], clients: int) -> dict[str, Any]:
    trips: list[float] = []
    queue = list(named)

    async def uploader(client: httpx.AsyncClient) -> None:
        while queue:
            sha, data = queue.pop()
            t = time.perf_counter()
            r = await client.put(f"/api/remote/blobs/{sha}", content=data)
            trips.append(time.perf_counter() - t)
            r.raise_for_status()

    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=60) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(uploader(client) for _ in range(clients)))
        seconds = time.perf_counter() - t0
    size_mb = sum(len(d) for _, d in named) / 1e6
    return {
        "uploads": len(named),
        "clients": clients,
        "upload_kb": len(named[0][1]) // 1024,
        "uploads_per_s": len(named) / seconds,
        "mb_per_s": size_mb / seconds,
        "trip_ms_p50": 1000 * statistics.median(trips),
        "trip_ms_p99": 1000 * quantile(trips, 0.99),
    }


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stations", default="10,50,100,200")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--uploads", type=int, default=0, help="also measure this many evidence uploads")
    ap.add_argument("--upload-kb", type=int, default=300)
    ap.add_argument("--upload-clients", type=int, default=8)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from benchlib import cpu_model, private_postgres
    from huoyan.store.accounts import Accounts, Role, Scope
    from huoyan.store.database import make_engine, upgrade
    from linepeers import free_port, wait_for_port

    rows = []
    uploads: dict[str, Any] = {}
    with private_postgres() as pg, tempfile.TemporaryDirectory(prefix="huoyan-bench-remote-") as tmp:
        db = pg.new_database()
        engine = make_engine(db)
        upgrade(engine)
        accounts = Accounts(engine)
        accounts.add_user("engineer", "a long password 1", Role.ENGINEER)
        key = accounts.add_api_key("engineer", "bench", [Scope.STATION, Scope.READ])[1]
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "huoyan.cli", "serve", "--db", db, "--data-dir", tmp, "--port", str(port),
             "--no-training"],
            env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for_port(port, 60)
            for n in (int(x) for x in args.stations.split(",") if x):
                row = asyncio.run(round_of(f"http://127.0.0.1:{port}", key, n, args.seconds))
                rows.append(row)
                print(json.dumps(row), flush=True)
            if args.uploads:
                named = named_evidence(engine, Path(tmp) / "station", args.uploads, args.upload_kb)
                uploads = asyncio.run(uploads_round(f"http://127.0.0.1:{port}", key, named, args.upload_clients))
                print(json.dumps(uploads), flush=True)
        finally:
            server.terminate()
            server.wait(30)
    summary = {"cpu": cpu_model(), "cores": os.cpu_count(), "rate_per_station": RATE, "rounds": rows}
    if args.uploads:
        summary["uploads"] = uploads
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
