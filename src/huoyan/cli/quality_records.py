"""``huoyan spc records``: a control chart of what a station recorded, aggregated in the database.

Counts (``ng-rate``: NG among judged parts; ``defects``: regions per judged part) chart by
hour, shift, day or lot; measured values (OK parts' scores, region areas, sensor
features) chart per part or as subgroups of a period. Limits frozen earlier for the
station, metric and chart are used unless ``--estimate`` asks for Phase I again.
"""

from __future__ import annotations

import argparse
from typing import Any

from huoyan.cli.common import database_options, open_database_or_exit, parse_since


def add_records_command(kinds: Any) -> None:
    from huoyan.cli.quality import add_chart_options
    from huoyan.quality.charts import CHARTS
    from huoyan.store.quality import COUNT_METRICS, FEATURE_PREFIX, GROUPINGS, VALUE_METRICS

    p = kinds.add_parser(
        "records",
        help="chart a station's records (NG rate, scores, region areas, sensor features)",
        description="Chart a station's records, aggregated in the database.",
    )
    database_options(p)
    p.add_argument("--station", required=True, help="the station whose records to chart")
    p.add_argument("--since", default="8h", help="ISO time or age such as 8h, 7d (default: 8h)")
    p.add_argument("--until", help="ISO time or age; default: now")
    p.add_argument("--chart", choices=CHARTS, default="p", help="the chart (default: p)")
    p.add_argument(
        "--metric",
        default="ng-rate",
        help=f"what to chart: {', '.join(COUNT_METRICS + VALUE_METRICS)} or {FEATURE_PREFIX}<name> "
        "(a sensor feature, e.g. feature:rms or feature:DE/kurtosis); default ng-rate",
    )
    p.add_argument(
        "--by",
        choices=GROUPINGS,
        default="shift",
        help="one point per part (values only), hour, shift (the plant's calendar), day or lot (default: shift)",
    )
    p.add_argument("--limit", type=int, default=10_000, help="--by part: the newest N values (default 10000)")
    p.add_argument("--estimate", action="store_true", help="Phase I: estimate the limits, ignore frozen ones")
    p.add_argument("--freeze", action="store_true", help="freeze the limits computed here as the next version")
    add_chart_options(p)
    p.set_defaults(func=cmd_spc_records, kind=None)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def cmd_spc_records(args: argparse.Namespace) -> int:
    import getpass

    from huoyan.cli.quality import chart_and_report
    from huoyan.store import quality as Q

    args.kind = args.chart
    engine = open_database_or_exit(args)
    calendar = Q.shift_calendar(engine)
    window = Q.Window(args.station, parse_since(args.since), parse_since(args.until) if args.until else _now())
    try:
        series = Q.series_of(engine, window, args.metric, args.chart, args.by, calendar, args.limit)
    except Q.QualityQueryError as exc:
        raise SystemExit(f"error: {exc}") from None
    if not series.labels:
        raise SystemExit(f"error: station {args.station} has no {args.metric} records since {args.since}")
    args.frozen = None if args.estimate else Q.frozen_limits(engine, args.station, args.metric, args.chart)
    freeze = None
    if args.freeze:
        who = args.who or getpass.getuser()

        def freeze(limits: Any) -> Any:
            return Q.freeze_limits(engine, args.station, args.metric, limits, who)

    title = f"{args.metric} of station {args.station} by {args.by}"
    return chart_and_report(args, series, title, freeze)
