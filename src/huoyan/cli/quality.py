"""``huoyan spc``: control charts, run rules and capability of a CSV's columns or of the records.

``huoyan spc CHART FILE.csv`` charts a column (one point per row, or per subgroup);
``huoyan spc records`` charts what the station recorded, aggregated in the database.
Point numbers count from 1, in the output and in ``--exclude``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huoyan.cli.common import print_json

CHART_HELP = {
    "p": "fraction nonconforming (--value: nonconforming units, --size: units inspected)",
    "np": "number nonconforming, one sample size (--value, --size)",
    "c": "nonconformities per inspection unit (--value)",
    "u": "nonconformities per unit (--value: nonconformities, --size: units)",
    "laney-p": "Laney p' for very large samples (--value, --size)",
    "imr": "individual values and moving range (--value)",
    "xbar-r": "subgroup means and ranges (--value, --subgroup)",
    "xbar-s": "subgroup means and standard deviations (--value, --subgroup)",
    "ewma": "exponentially weighted moving average (--value [--subgroup] [--lambda --L])",
    "cusum": "tabular CUSUM (--value [--subgroup] [--k --h])",
}


def points_option(text: str) -> list[int]:
    """'15,23' -> [15, 23]: point numbers from 1."""
    try:
        points = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give point numbers separated by commas, e.g. 15,23") from None
    if any(p < 1 for p in points):
        raise argparse.ArgumentTypeError(f"{text!r}: point numbers count from 1")
    return points


def add_chart_options(p: argparse.ArgumentParser) -> None:
    """Options every chart takes, from a CSV or from the records."""
    p.add_argument(
        "--rules",
        default="western-electric",
        help="run rules to test: ids such as WE1,WE2 or N1..N8, 'western-electric' (default), 'nelson' or 'none'",
    )
    p.add_argument("--exclude", type=points_option, default=[], help="Phase I: leave these points out of the limits")
    p.add_argument("--who", help="who freezes the limits (with --freeze; default: the login name)")
    p.add_argument("--lsl", type=float, help="lower specification limit: report capability")
    p.add_argument("--usl", type=float, help="upper specification limit: report capability")
    p.add_argument("--lambda", dest="lam", type=float, default=0.2, help="EWMA weight of the newest point (0-1]")
    p.add_argument("--L", dest="width", type=float, default=3.0, help="EWMA limit width in sigmas")
    p.add_argument("--k", type=float, default=0.5, help="CUSUM allowance in sigmas")
    p.add_argument("--h", type=float, default=5.0, help="CUSUM decision interval in sigmas")
    p.add_argument("--target", type=float, help="EWMA/CUSUM target (default: the mean)")
    p.add_argument("--sigma", type=float, help="EWMA/CUSUM sigma of one value (default: estimated)")
    p.add_argument("--json", action="store_true", help="print JSON")


def add_commands(sub: Any) -> None:
    spc = sub.add_parser("spc", help="control charts, run rules and capability of a CSV column or of the records")
    kinds = spc.add_subparsers(dest="chart", required=True, metavar="CHART")
    for kind, text in CHART_HELP.items():
        p = kinds.add_parser(kind, help=text, description=f"{kind} chart: {text}")
        p.add_argument("csv", type=Path, help="CSV file with a header row")
        p.add_argument("--value", help="the column to chart (default: the file's only column)")
        p.add_argument("--size", help="sample sizes: a column, or one number for every row")
        p.add_argument(
            "--subgroup", help="subgroups: a column whose equal values form one subgroup, or a size N (N rows each)"
        )
        p.add_argument("--limits", type=Path, help="Phase II: chart against limits frozen in this JSON file")
        p.add_argument("--freeze", type=Path, help="write the limits computed here to this JSON file, frozen")
        add_chart_options(p)
        p.set_defaults(func=cmd_spc_csv, kind=kind)
    from huoyan.cli.quality_records import add_records_command

    add_records_command(kinds)


# -- reading a CSV ---------------------------------------------------------------------------


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SystemExit(f"error: {where}: {text!r} is not a number") from None


def read_series(args: argparse.Namespace) -> Any:
    from huoyan.quality.charts import ATTRIBUTE_CHARTS
    from huoyan.quality.series import Series

    path: Path = args.csv
    if not path.is_file():
        raise SystemExit(f"error: {path} is not a file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SystemExit(f"error: {path}: not a readable CSV file ({exc})") from None
    if not rows:
        raise SystemExit(f"error: {path}: no data rows under the header")
    value = args.value or (columns[0] if len(columns) == 1 else None)
    if value is None:
        raise SystemExit(f"error: {path} has several columns ({', '.join(columns)}); name one with --value")
    for option, column in (("--value", value), ("--size", args.size), ("--subgroup", args.subgroup)):
        if column and column not in columns and not column.replace(".", "", 1).isdigit():
            raise SystemExit(f"error: {option} {column!r}: no such column in {path} ({', '.join(columns)})")

    def cell(row_no: int, row: dict[str, str], column: str) -> float:
        return _number((row.get(column) or "").strip(), f"{path} row {row_no}, column {column!r}")

    values = [cell(i, row, value) for i, row in enumerate(rows, start=2)]
    if args.kind in ATTRIBUTE_CHARTS:
        sizes = None
        if args.size:
            if args.size in columns:
                sizes = [cell(i, row, args.size) for i, row in enumerate(rows, start=2)]
            else:
                sizes = [float(args.size)] * len(values)
        return Series([str(i) for i in range(1, len(values) + 1)], counts=values, sizes=sizes)
    if not args.subgroup:
        return Series([str(i) for i in range(1, len(values) + 1)], groups=[[v] for v in values])
    if args.subgroup in columns:
        order: dict[str, list[float]] = {}
        for row, v in zip(rows, values, strict=True):
            order.setdefault(row[args.subgroup], []).append(v)
        return Series(list(order), groups=list(order.values()))
    size = int(float(args.subgroup))
    if size < 2:
        raise SystemExit("error: --subgroup N: subgroups need at least 2 rows")
    whole = len(values) // size
    if whole == 0:
        raise SystemExit(f"error: {len(values)} rows make no subgroup of {size}")
    if len(values) % size:
        print(f"note: the last {len(values) % size} row(s) do not fill a subgroup of {size}; left out", file=sys.stderr)
    groups = [values[i * size : (i + 1) * size] for i in range(whole)]
    return Series([str(i) for i in range(1, whole + 1)], groups=groups)


# -- charting and reporting ------------------------------------------------------------------


def read_limits(path: Path) -> Any:
    from huoyan.quality.charts import Limits

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return Limits.from_dict(doc["limits"] if "limits" in doc else doc["charts"][0]["limits"])
    except FileNotFoundError:
        raise SystemExit(f"error: --limits {path}: no such file") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SystemExit(f"error: --limits {path}: not a limits file written by --freeze or --json ({exc})") from None


def chart_and_report(
    args: argparse.Namespace, series: Any, title: str, freeze: Callable[[Any], Any] | None = None
) -> int:
    """Chart ``series`` as the options say, print the report (text or JSON), and hand the
    limits to ``freeze`` when the user asked to freeze them."""
    from huoyan.quality.charts import ChartError
    from huoyan.quality.report import report
    from huoyan.quality.series import Options

    options = Options(
        exclude=[p - 1 for p in args.exclude],
        frozen=getattr(args, "frozen", None),
        lam=args.lam,
        width=args.width,
        k=args.k,
        h=args.h,
        target=args.target,
        sigma=args.sigma,
    )
    try:
        result = report(args.kind, series, title, options, args.rules, args.lsl, args.usl)
    except ChartError as exc:
        raise SystemExit(f"error: {exc}") from None
    if freeze is not None:
        frozen = freeze(result.limits)
        print(f"froze the {frozen.chart} limits as version {frozen.version} (by {frozen.frozen_by})", file=sys.stderr)
    if args.json:
        print_json(result.as_dict(points_from=1))
    else:
        print_report(result)
    return 0


def freeze_to_file(args: argparse.Namespace) -> Callable[[Any], Any]:
    import getpass
    from datetime import UTC, datetime

    def freeze(limits: Any) -> Any:
        version = 1
        if args.freeze.exists():
            try:
                doc = json.loads(args.freeze.read_text(encoding="utf-8"))
                version = int(doc["limits"].get("version") or 0) + 1
            except (ValueError, KeyError, TypeError, AttributeError):
                raise SystemExit(
                    f"error: --freeze {args.freeze}: exists and is not a limits file; not overwritten"
                ) from None
        frozen = limits.freeze(version, args.who or getpass.getuser(), datetime.now(UTC))
        args.freeze.write_text(json.dumps({"limits": frozen.as_dict()}, indent=2) + "\n", encoding="utf-8")
        return frozen

    return freeze


def _fmt(value: float) -> str:
    return "-" if value != value else f"{value:.6g}"  # NaN: no limit at this point


def print_report(result: Any) -> None:
    title, labels, violations, cap = result.title, result.labels, result.violations, result.capability
    for chart in result.charts:
        limits = chart.limits
        where = (
            f"frozen limits version {limits.version} (by {limits.frozen_by}, {limits.frozen_at:%Y-%m-%d %H:%M})"
            if limits.frozen
            else f"limits estimated from {limits.points} of {len(chart)} points"
        )
        print(f"{chart.name} chart of {title}: {len(chart)} points; {where}")
        if chart.excluded.any():
            print(f"  excluded (Phase I): points {', '.join(str(i + 1) for i in chart.excluded.nonzero()[0])}")
        steady = all(len({round(float(v), 12) for v in a if v == v}) <= 1 for a in (chart.lcl, chart.center, chart.ucl))
        first = next((i for i in range(len(chart)) if chart.ucl[i] == chart.ucl[i]), 0)
        if steady:
            print(f"  centre {_fmt(chart.center[first])}  LCL {_fmt(chart.lcl[first])}  UCL {_fmt(chart.ucl[first])}")
        else:
            print("  limits vary per point (sample size, or the EWMA's start)")
        flags: dict[int, list[str]] = {}
        for c, v in violations:
            if c is chart:
                flags.setdefault(v.index, []).append(v.rule)
        header = f"  {'point':>5}  {'label':<20} {'statistic':>12}"
        print(header + ("" if steady else f" {'LCL':>12} {'centre':>12} {'UCL':>12}") + "  rules")
        for i in range(len(chart)):
            row = f"  {i + 1:>5}  {labels[i][:20]:<20} {_fmt(chart.statistic[i]):>12}"
            if chart.lower_statistic is not None:
                row += f" / {_fmt(chart.lower_statistic[i])}"
            if not steady:
                row += f" {_fmt(chart.lcl[i]):>12} {_fmt(chart.center[i]):>12} {_fmt(chart.ucl[i]):>12}"
            print(row + ("  " + ",".join(flags[i]) if i in flags else ""))
    if violations:
        print("violations:")
        for c, v in violations:
            print(f"  {c.name} point {v.index + 1} ({labels[v.index]}): {v.rule} {v.text}")
    else:
        print("violations: none")
    if cap is not None:
        print(f"capability ({cap.confidence:.0%} intervals, n {cap.n}, mean {cap.mean:.6g}):")
        for name in ("cp", "cpk", "pp", "ppk"):
            idx = getattr(cap, name)
            if idx is not None:
                print(f"  {name.capitalize():<4} {idx.value:.3f}  [{idx.low:.3f}, {idx.high:.3f}]")
        print(
            f"  sigma within {cap.sigma_within:.6g}, overall {cap.sigma_overall:.6g}; ppm out of spec: "
            + ("" if cap.ppm_observed is None else f"observed {cap.ppm_observed:.0f}, ")
            + f"expected {cap.ppm_expected_overall:.0f}"
        )


def cmd_spc_csv(args: argparse.Namespace) -> int:
    series = read_series(args)
    args.frozen = read_limits(args.limits) if args.limits else None
    freeze = freeze_to_file(args) if args.freeze else None
    return chart_and_report(args, series, f"{args.value or 'values'} in {args.csv.name}", freeze)
