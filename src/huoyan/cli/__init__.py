"""The ``huoyan`` command line, one module per command group.

``engine``: fit, predict, evaluate, sample-line. ``station``: run, records, db, feed.
``server``: serve, user, audit. ``quality``: spc. ``report``: report. ``share``: keys, pkg.
``demo``: the sample line end to end. ``scale``: batch, fit-many. ``export``: export. ``update``: update. Each module
declares its own commands and options (``add_commands``); this one assembles them.
"""

from __future__ import annotations

import argparse

from huoyan import __version__
from huoyan.cli import demo, engine, export, quality, report, scale, server, share, station, update

GROUPS = (engine, update, export, demo, station, server, quality, report, share, scale)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="huoyan", description="Huoyan intelligent inspection")
    parser.add_argument("--version", action="version", version=f"huoyan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
