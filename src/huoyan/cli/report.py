"""``huoyan report``: a shift or lot report of a station, as PDF and/or self-contained HTML."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from huoyan.cli.common import database_options, load_recipe_or_exit, open_database_or_exit, parse_since


def add_commands(sub: Any) -> None:
    p = sub.add_parser("report", help="a shift or lot report of a station as PDF or HTML")
    database_options(p)
    p.add_argument("--station", required=True, help="the station to report on")
    period = p.add_mutually_exclusive_group(required=True)
    period.add_argument("--shift", help="a shift of the plant's calendar, e.g. '2026-11-30 A'")
    period.add_argument("--lot", help="a lot id")
    period.add_argument("--since", help="from this ISO time or age (8h, 7d) until --until or now")
    p.add_argument("--until", help="with --since: ISO time or age")
    p.add_argument("--pdf", type=Path, help="write the report as PDF here")
    p.add_argument("--html", type=Path, help="write the report as one self-contained HTML file here")
    p.add_argument("--by", help="who the report is for the record (default: the login name)")
    p.set_defaults(func=cmd_report)


def picture_reader(blobs_dir: Path) -> Any:
    """Examples drawn from a station's blob store (its data_dir/blobs)."""
    from huoyan.store.blobs import BlobStore
    from huoyan.vision.overlay import record_overlay

    store = BlobStore(blobs_dir)
    return lambda record: record_overlay(record, store.get, max_side=480, fmt=".jpg")


def cmd_report(args: argparse.Namespace) -> int:
    from huoyan.quality.html import render_html
    from huoyan.quality.pdf import render_pdf
    from huoyan.store.records import data_paths
    from huoyan.store.reporting import shift_report

    if not args.pdf and not args.html:
        raise SystemExit("error: say where to write the report: --pdf FILE, --html FILE or both")
    engine = open_database_or_exit(args)
    data_dir = Path(args.data_dir) if args.data_dir else None
    if data_dir is None and args.recipe:
        data_dir = Path(load_recipe_or_exit(args.recipe).storage.data_dir)
    picture = picture_reader(data_paths(data_dir or Path("huoyan-data"))[0])
    try:
        data = shift_report(
            engine,
            picture,
            args.station,
            shift=args.shift,
            lot=args.lot,
            since=parse_since(args.since),
            until=parse_since(args.until) if args.until else None,
            by=args.by or getpass.getuser(),
        )
    except (ValueError, LookupError) as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.pdf:
        with args.pdf.open("wb") as fh:
            render_pdf(data, fh)
        print(f"wrote {args.pdf}", file=sys.stderr)
    if args.html:
        args.html.write_text(render_html(data), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    c = data.counts
    print(
        f"{data.station} {data.title}: {sum(c.values())} parts, OK {c.get('OK', 0)}, NG {c.get('NG', 0)}, "
        f"ERROR {c.get('ERROR', 0)}; {len(data.alarms)} alarms"
    )
    return 0
