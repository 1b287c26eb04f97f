"""Quality analytics at plant scale, and the score-drift alarm's run lengths.

1. **Charts from a million records.** 1,000,000 inspections over 30 days (one station,
   2.5% NG, 0.5% ERROR, a lot every 5,000 parts) are bulk-loaded into SQLite and into a
   private PostgreSQL server. Timed, as the median of 5 after a warm-up: the NG counts by
   shift over the 30 days (SQL per 15-minute bucket, rolled into the plant's shifts) and
   the p chart on them; the same by hour and by lot; the OK scores' sums by shift for an
   X-bar-S chart. Reference in the same run: loading the rows into Python and counting
   there (what the aggregation avoids).
2. **Drift alarm run lengths, by simulation.** Scores from skewed distributions (gamma,
   log-normal, Weibull) and a normal one; the reference is a fresh calibration set of m
   scores per run (so the figure includes the error of estimating the reference). The
   rank-normalised EWMA (lambda 0.1, L 2.814, subgroups of 5 OK parts) runs until it
   signals: in control (ARL0, target >= 370) and after a shift of one standard deviation
   of the score distribution from the first subgroup (ARL1, target <= 10). Reference in
   the same run: the same EWMA on the raw scores standardised by the reference's mean and
   SD (what a normal-theory chart does). Also with one part per point (subgroups of 1),
   where the scores' skew reaches the chart undiluted.

    .venv/bin/python bench/quality.py [--records 1000000] [--runs 2000] [--reference-sizes 200,1000]
                                      [--skip-records] [--skip-postgres] [--skip-drift] [--out bench/out/quality.json]

The CSV export runs in a process of its own, so its peak memory is its own; a day's
export beside the whole month's shows whether memory grows with the rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from sqlalchemy import Engine, insert, select

from benchlib import cpu_model, private_postgres
from huoyan.core.plant import Shift, ShiftCalendar
from huoyan.quality.charts import Subgroups, p_chart, xbar_s_chart
from huoyan.quality.drift import LAMBDA, SUBGROUP, WIDTH, Reference, drift_spread
from huoyan.store import quality as Q
from huoyan.store.database import make_engine, upgrade
from huoyan.store.schema import InspectionRow, ModelRow, RecipeRow, StationRow

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

CALENDAR = ShiftCalendar(
    timezone="Asia/Shanghai",
    shifts=[Shift(name="A", start="08:00"), Shift(name="B", start="16:00"), Shift(name="C", start="00:00")],
)
END = datetime(2026, 12, 1, tzinfo=UTC)
DAYS = 30


# -- 1. a million records ------------------------------------------------------------------


def load(engine: Engine, n: int, seed: int = 0) -> float:
    """Bulk-insert n synthetic inspections; seconds taken."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    with engine.begin() as c:
        c.execute(insert(StationRow), [{"id": "st-1", "product": "washer", "created_at": now, "last_started_at": now}])
        c.execute(
            insert(RecipeRow),
            [{"recipe_id": "washer-top", "version": "1", "content_sha256": "a" * 64, "body": {}, "created_at": now}],
        )
        c.execute(insert(ModelRow), [{"sha256": "b" * 64, "name": "m", "card": {}, "created_at": now}])
        recipe_pk = c.scalar(select(RecipeRow.id))
        model_pk = c.scalar(select(ModelRow.id))
    start = END - timedelta(days=DAYS)
    offsets = np.sort(rng.uniform(0, DAYS * 86400, n))
    verdicts = rng.choice(np.array(["OK", "NG", "ERROR"]), n, p=[0.97, 0.025, 0.005])
    scores = rng.gamma(2.0, 0.4, n) + np.where(verdicts == "NG", 2.5, 0.0)
    t0 = time.perf_counter()
    chunk = 50_000
    for lo in range(0, n, chunk):
        rows = []
        for i in range(lo, min(n, lo + chunk)):
            at = start + timedelta(seconds=float(offsets[i]))
            error = verdicts[i] == "ERROR"
            rows.append(
                {
                    "key": f"st-1:{i}",
                    "seq": i,
                    "station_id": "st-1",
                    "recipe_pk": recipe_pk,
                    "model_pk": model_pk,
                    "threshold": 2.0,
                    "part_id": f"P{i}",
                    "lot": f"L{i // 5000:04d}",
                    "source_name": f"p{i}.png",
                    "verdict": str(verdicts[i]),
                    "score": None if error else float(scores[i]),
                    "normalised_score": None if error else float(scores[i] / 2.0),
                    "arrived_at": at,
                    "decided_at": at,
                    "stored_at": at,
                    "latency_ms": 30.0,
                }
            )
        with engine.begin() as c:
            c.execute(insert(InspectionRow), rows)
    return time.perf_counter() - t0


def median_time(fn: Any, repeats: int = 5) -> tuple[float, Any]:
    result = fn()  # warm-up (and the answer)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def in_python(engine: Engine, window: Q.Window) -> dict[str, list[int]]:
    """The reference: every row into Python, counted by shift there."""
    out: dict[str, list[int]] = {}
    with engine.connect() as c:
        rows = c.execute(select(InspectionRow.arrived_at, InspectionRow.verdict).where(window.where())).all()
    for at, verdict in rows:
        label = CALENDAR.label(at if at.tzinfo else at.replace(tzinfo=UTC))
        row = out.setdefault(label, [0, 0])
        row[0] += verdict != "ERROR"
        row[1] += verdict == "NG"
    return out


EXPORT = """
import json, resource, sys, time
from datetime import timedelta
from huoyan.store.database import make_engine
from huoyan.store.export import csv_chunks
from huoyan.store.records import RecordFilter
sys.path.insert(0, "{bench}")
from quality import END
engine = make_engine("{url}")
since = None if "{since}" == "None" else END - timedelta(days=1)
t = time.perf_counter()
size = rows = 0
for chunk in csv_chunks(engine, RecordFilter(station="st-1", since=since)):
    size += len(chunk)
    rows += chunk.count(b"\\n")
print(json.dumps({{"seconds": round(time.perf_counter() - t, 2), "rows": rows - 1, "megabytes": round(size / 1e6, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}}))
"""


def export_in_subprocess(url: str, since: str | None) -> dict[str, Any]:
    """The CSV export in a fresh process, so its peak memory is its own."""
    import subprocess

    code = EXPORT.format(bench=Path(__file__).resolve().parent, url=url, since=since)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the export failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def time_report(engine: Engine) -> tuple[float, int]:
    """A shift's report (about 11,000 parts) rendered to PDF."""
    import io

    from huoyan.quality.pdf import render_pdf
    from huoyan.store.reporting import shift_report

    Q.set_shift_calendar(engine, CALENDAR, "bench")

    def no_picture(record: Any) -> bytes:
        raise LookupError("the bench keeps no images")

    t = time.perf_counter()
    data = shift_report(engine, no_picture, "st-1", shift="2026-11-20 A")
    out = io.BytesIO()
    render_pdf(data, out)
    return time.perf_counter() - t, len(out.getvalue())


def charts_at_scale(url: str, n: int) -> dict[str, Any]:
    engine = make_engine(url)
    upgrade(engine)
    load_s = load(engine, n)
    window = Q.Window("st-1", END - timedelta(days=DAYS), END)

    def p_by_shift() -> Any:
        rows = Q.count_aggregates(engine, window, "ng-rate", "shift", CALENDAR)
        return p_chart([r.ng for r in rows], [r.judged for r in rows])[0]

    def xbar_s_by_shift() -> Any:
        rows = Q.value_aggregates(engine, window, "score", "shift", CALENDAR)
        sub = Subgroups.of_sums([r.count for r in rows], [r.total for r in rows], [r.squares for r in rows])
        return xbar_s_chart(sub)

    p_s, chart = median_time(p_by_shift)
    hour_s, _ = median_time(lambda: Q.count_aggregates(engine, window, "ng-rate", "hour", CALENDAR))
    lot_s, _ = median_time(lambda: Q.count_aggregates(engine, window, "ng-rate", "lot", CALENDAR))
    xs_s, _ = median_time(xbar_s_by_shift)
    ref_s, ref = median_time(lambda: in_python(engine, window), repeats=1)
    exports = {name: export_in_subprocess(url, since) for name, since in (("all", None), ("last day", "1d"))}
    report_s, pdf_bytes = time_report(engine)
    sql_rows = Q.count_aggregates(engine, window, "ng-rate", "shift", CALENDAR)
    agree = {r.label: [r.judged, r.ng] for r in sql_rows} == ref
    engine.dispose()
    return {
        "records": n,
        "load_s": round(load_s, 1),
        "p_chart_by_shift_30d_s": round(p_s, 3),
        "shifts": len(chart),
        "ng_counts_by_hour_s": round(hour_s, 3),
        "ng_counts_by_lot_s": round(lot_s, 3),
        "xbar_s_scores_by_shift_s": round(xs_s, 3),
        "reference_rows_into_python_s": round(ref_s, 3),
        "speedup_over_reference": round(ref_s / p_s, 1),
        "same_counts_as_reference": agree,
        "csv_export_all_s": exports["all"]["seconds"],
        "csv_export_all_rows": exports["all"]["rows"],
        "csv_export_all_peak_rss_mb": exports["all"]["peak_rss_mb"],
        "csv_export_last_day_rows": exports["last day"]["rows"],
        "csv_export_last_day_peak_rss_mb": exports["last day"]["peak_rss_mb"],
        "shift_report_pdf_s": round(report_s, 2),
        "shift_report_pdf_kb": round(pdf_bytes / 1024, 1),
    }


# -- 2. drift alarm run lengths ------------------------------------------------------------

DISTRIBUTIONS = {
    "gamma(2)": stats.gamma(2.0),
    "lognormal(0.8)": stats.lognorm(0.8),
    "weibull(1.5)": stats.weibull_min(1.5),
    "normal": stats.norm(),
}


def run_lengths(z_means: np.ndarray, limit_sd: np.ndarray) -> np.ndarray:
    """Steps to the first signal of an EWMA (z_0 = 0) per row of subgroup means; the row
    length + 1 where it never signals."""
    runs, steps = z_means.shape
    ewma = np.zeros(runs)
    out = np.full(runs, steps + 1)
    alive = np.ones(runs, dtype=bool)
    for t in range(steps):
        ewma = LAMBDA * z_means[:, t] + (1 - LAMBDA) * ewma
        hit = alive & (np.abs(ewma) > WIDTH * limit_sd[t])
        out[hit] = t + 1
        alive &= ~hit
        if not alive.any():
            break
    return out


def arl(
    dist: Any, m: int, runs: int, shift_sd: float, steps: int, rng: np.random.Generator, rank: bool, n: int = SUBGROUP
) -> float:
    limit_sd = drift_spread(LAMBDA, n, np.arange(1, steps + 1), m)
    sd = float(dist.std())
    lengths = []
    for lo in range(0, runs, 100):
        block = min(100, runs - lo)
        z = np.empty((block, steps))
        for r in range(block):
            reference_scores = dist.rvs(m, random_state=rng)
            scores = dist.rvs(steps * n, random_state=rng) + shift_sd * sd
            if rank:
                zz = Reference.of_scores(reference_scores).normalise(scores)
            else:  # normal theory: standardise by the reference's mean and SD
                zz = (scores - reference_scores.mean()) / reference_scores.std(ddof=1)
            z[r] = zz.reshape(steps, n).mean(axis=1)
        lengths.append(run_lengths(z, limit_sd))
    return float(np.concatenate(lengths).mean())


def drift_run_lengths(runs: int, sizes: list[int], seed: int = 1) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for name, dist in DISTRIBUTIONS.items():
        for m in sizes:
            out[f"{name}, m={m}"] = {
                "arl0_rank_ewma": round(arl(dist, m, runs, 0.0, 6000, rng, rank=True), 1),
                "arl1_rank_ewma": round(arl(dist, m, runs, 1.0, 200, rng, rank=True), 2),
                "arl0_normal_theory_ewma": round(arl(dist, m, runs, 0.0, 6000, rng, rank=False), 1),
                "arl1_normal_theory_ewma": round(arl(dist, m, runs, 1.0, 200, rng, rank=False), 2),
            }
            print(name, m, out[f"{name}, m={m}"], flush=True)
        # one part per point: where the scores' skew reaches the chart undiluted by averaging
        out[f"{name}, m=1000, subgroup 1"] = {
            "arl0_rank_ewma": round(arl(dist, 1000, runs, 0.0, 6000, rng, rank=True, n=1), 1),
            "arl1_rank_ewma": round(arl(dist, 1000, runs, 1.0, 200, rng, rank=True, n=1), 2),
            "arl0_normal_theory_ewma": round(arl(dist, 1000, runs, 0.0, 6000, rng, rank=False, n=1), 1),
            "arl1_normal_theory_ewma": round(arl(dist, 1000, runs, 1.0, 200, rng, rank=False, n=1), 2),
        }
        print(name, "subgroup 1", out[f"{name}, m=1000, subgroup 1"], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=2000, help="simulated runs per ARL figure")
    ap.add_argument(
        "--reference-sizes", default="200,1000", help="calibration scores per run (200: a model's smallest calibration)"
    )
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--skip-records", action="store_true")
    ap.add_argument("--skip-drift", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("bench/out/quality.json"))
    args = ap.parse_args()
    report: dict[str, Any] = {"cpu": cpu_model(), "cores_used": 1}
    if not args.skip_records:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            report["sqlite"] = charts_at_scale(f"sqlite:///{tmp}/records.db", args.records)
            print(json.dumps(report["sqlite"]), flush=True)
        if not args.skip_postgres:
            with private_postgres() as server:
                report["postgresql"] = charts_at_scale(server.new_database(), args.records)
                print(json.dumps(report["postgresql"]), flush=True)
    if args.skip_drift:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        return
    t = time.perf_counter()
    report["drift"] = {
        "lambda": LAMBDA,
        "L": WIDTH,
        "subgroup": SUBGROUP,
        "reference_sizes": args.reference_sizes,
        "runs": args.runs,
        "by_distribution": drift_run_lengths(args.runs, [int(m) for m in args.reference_sizes.split(",")]),
    }
    report["drift"]["simulation_s"] = round(time.perf_counter() - t, 1)
    print(json.dumps(report["drift"], indent=2), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
