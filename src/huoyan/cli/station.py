"""`huoyan run`, `records`, `retention`, `db` and `feed`: a station in the foreground and its records."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from huoyan.cli.common import (
    RUNTIME_HELP,
    load_recipe_or_exit,
    open_database_or_exit,
    parse_since,
    setup_logging,
)


def cmd_run(args: argparse.Namespace) -> int:
    from huoyan.core.artifact import ArtifactError
    from huoyan.runner import open_station, print_status, run_station
    from huoyan.store.records import RecipeConflict

    setup_logging(args.verbose)
    recipe = load_recipe_or_exit(args.recipe)
    key = _server_key(args.server) if args.server else ""
    try:
        opened = open_station(recipe, args.db, batch_size=args.batch_size, runtime=args.runtime)
    except (ArtifactError, RecipeConflict, FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    starts = [_stdin_triggers(opened.source)] if args.triggers_from_stdin else []
    if args.server:
        starts.append(_server_link(opened, recipe, args.server, key))

    def on_start(loop: Any) -> None:
        for start in starts:
            start(loop)

    print(
        f"station {recipe.station}: recipe {recipe.recipe} v{recipe.version}, model {opened.model_sha256[:12]}, "
        f"source {recipe.source.type}",
        file=sys.stderr,
    )
    summary = run_station(
        opened, args.idle_exit, args.max_parts, None if args.quiet else print_status, on_start=on_start
    )
    print(json.dumps(summary))
    return 0


def _server_key(url: str) -> str:
    """The station's API key for the server at ``url`` ($HUOYAN_SERVER_KEY), checked before the station opens."""
    import os

    from huoyan.runner.link import KEY_ENV

    key = os.environ.get(KEY_ENV)
    if not key:
        raise SystemExit(f"error: --server needs the station's API key in ${KEY_ENV} (a key with scope 'station')")
    if not url.startswith(("http://", "https://")):
        raise SystemExit(f"error: --server {url!r}: give the server's URL, e.g. https://huoyan.plant.local:8000")
    return key


def _server_link(opened: Any, recipe: Any, url: str, key: str) -> Any:
    """Report to the server at ``url`` from the station's own loop."""
    from huoyan.runner.link import ServerLink

    link = ServerLink(opened, recipe, url, key).attach()
    tasks: list[Any] = []  # the loop keeps only a weak reference to a task
    return lambda loop: tasks.append(loop.create_task(link.run()))


def _stdin_triggers(source: Any) -> Any:
    """Trigger-mode cameras: each stdin line takes one picture; a JSON object is its payload."""
    import asyncio
    import threading

    from huoyan.station.sources import Camera

    if not isinstance(source, Camera) or source.cfg.mode != "trigger":
        raise SystemExit("error: --triggers-from-stdin needs a camera source in trigger mode")

    def pump(loop: asyncio.AbstractEventLoop) -> None:
        for line in sys.stdin:
            text = line.strip()
            try:
                payload = json.loads(text) if text.startswith("{") else ({"part_id": text} if text else {})
            except json.JSONDecodeError:
                print(f"ignored trigger, not JSON: {text!r}", file=sys.stderr)
                continue
            loop.call_soon_threadsafe(source.trigger, payload)
        loop.call_soon_threadsafe(source.stop)

    return lambda loop: threading.Thread(target=pump, args=(loop,), daemon=True).start()


def _current_schema_or_exit(engine: Any) -> Any:
    """``engine``, if its database has this release's schema."""
    from huoyan.store.database import current_revision, head_revision

    revision = current_revision(engine)
    if revision is None:
        raise SystemExit("error: no Huoyan records in this database (run `huoyan db upgrade` or a station first)")
    if revision != head_revision():
        raise SystemExit(
            f"error: this database has the schema of an earlier release (revision {revision}); "
            "run `huoyan db upgrade` first"
        )
    return engine


def cmd_records(args: argparse.Namespace) -> int:
    from huoyan.store.records import query_records

    engine = _current_schema_or_exit(open_database_or_exit(args))
    rows = query_records(engine, args.station, parse_since(args.since), args.verdict, args.limit, newest_first=True)
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            score = "-" if row["score"] is None else f"{row['normalised_score']:.2f}"
            print(
                f"{row['arrived_at'][:23]}  {row['station_id']}  {row['part_id'] or '-'}  {row['verdict']:5}  "
                f"{score:>6}  {row['source_name']}  {row['error'] or ''}"
            )
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    from huoyan.core.recipe import Retention
    from huoyan.runner import open_database
    from huoyan.store.audit import AuditLog, audit_key
    from huoyan.store.blobs import BlobStore
    from huoyan.store.records import data_paths
    from huoyan.store.retention import apply_retention

    recipe = load_recipe_or_exit(args.recipe)
    rule = recipe.storage.retention
    rule = Retention(
        ok_days=args.ok_days if args.ok_days is not None else rule.ok_days,
        ng_days=args.ng_days if args.ng_days is not None else rule.ng_days,
    )
    if not (rule.ok_days or rule.ng_days):
        raise SystemExit("error: no retention period: set storage.retention in the recipe, or --ok-days / --ng-days")
    data_dir = Path(args.data_dir) if args.data_dir else Path(recipe.storage.data_dir)
    engine = _current_schema_or_exit(open_database(args.db or recipe, migrate=False))
    audit = AuditLog(engine, audit_key(data_dir))
    report = apply_retention(
        engine,
        BlobStore(data_paths(data_dir)[0]),
        recipe.station,
        rule,
        dry_run=args.dry_run,
        audit=audit,
        actor="cli",
    )
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        verb = "would remove" if report.dry_run else "removed"
        print(
            f"station {report.station_id}: {report.records} parts past the retention periods; {verb} "
            f"{report.blobs_removed} evidence files ({report.bytes_removed / 1e6:.1f} MB), kept "
            f"{report.blobs_kept} still in use, {report.blobs_missing} gone already"
        )
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from huoyan.store.database import upgrade

    print(f"database at revision {upgrade(open_database_or_exit(args))}")
    return 0


def cmd_feed(args: argparse.Namespace) -> int:
    from huoyan.sampleline.feeder import feed_folder
    from huoyan.vision.imageio import list_images

    files = list_images(Path(args.folder), recursive=True)
    if not files:
        raise SystemExit(f"error: no images under {args.folder}")
    n = feed_folder(files, Path(args.inbox), args.rate)
    print(f"fed {n} images into {args.inbox}")
    return 0


def _days(text: str) -> int:
    days = int(text)
    if days < 1:
        raise argparse.ArgumentTypeError("a retention period is at least 1 day")
    return days


def add_commands(sub: Any) -> None:
    """Declare this group's commands on the ``huoyan`` parser."""
    run = sub.add_parser("run", help="run a station from a recipe, in the foreground")
    run.add_argument("recipe", help="recipe YAML file")
    run.add_argument("--db", help="database URL (default: the recipe's, $HUOYAN_DATABASE_URL, or SQLite)")
    run.add_argument("--batch-size", type=int, default=8, help="largest micro-batch when parts queue up")
    run.add_argument(
        "--runtime",
        choices=("onnx", "torch"),
        default="onnx",
        help=RUNTIME_HELP,
    )
    run.add_argument("--idle-exit", type=float, default=None, help="stop after this many seconds without parts")
    run.add_argument("--max-parts", type=int, default=None, help="stop after this many parts")
    run.add_argument("--triggers-from-stdin", action="store_true", help="camera trigger mode: one line per trigger")
    run.add_argument(
        "--server",
        help="report to this central `huoyan serve` (URL) and take its commands; API key in $HUOYAN_SERVER_KEY",
    )
    run.add_argument("--quiet", action="store_true", help="no live status line")
    run.add_argument("-v", "--verbose", action="store_true", help="log what the station does")
    run.set_defaults(func=cmd_run)

    rec = sub.add_parser("records", help="list stored inspections, newest first")
    where = rec.add_mutually_exclusive_group()
    where.add_argument("--db", help="database URL")
    where.add_argument("--recipe", help="use this recipe's database")
    rec.add_argument("--station", help="only this station's records")
    rec.add_argument("--since", help="ISO time or age such as 30m, 2h, 7d")
    rec.add_argument("--verdict", choices=("OK", "NG", "ERROR", "ok", "ng", "error"), help="only this verdict")
    rec.add_argument("--limit", type=int, help="the newest N records")
    rec.add_argument("--json", action="store_true", help="one JSON object per line")
    rec.set_defaults(func=cmd_records)

    ret = sub.add_parser(
        "retention",
        help="remove the evidence files of parts past the recipe's storage.retention (the records stay)",
    )
    ret.add_argument("recipe", help="the station's recipe: its station, database, data folder and periods")
    ret.add_argument("--db", help="database URL (default: the recipe's)")
    ret.add_argument(
        "--data-dir", help="the blob store's data folder (default: the recipe's; a server's for its copies)"
    )
    ret.add_argument("--ok-days", type=_days, help="override the recipe's storage.retention.ok_days")
    ret.add_argument("--ng-days", type=_days, help="override the recipe's storage.retention.ng_days")
    ret.add_argument("--dry-run", action="store_true", help="count what would go; remove nothing")
    ret.add_argument("--json", action="store_true", help="the report as JSON")
    ret.set_defaults(func=cmd_retention)

    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="apply migrations up to the newest schema")
    up_where = up.add_mutually_exclusive_group()
    up_where.add_argument("--db", help="database URL")
    up_where.add_argument("--recipe", help="use this recipe's database")
    up.set_defaults(func=cmd_db_upgrade)

    feed = sub.add_parser("feed", help="copy a folder's images into a hot folder at a fixed rate")
    feed.add_argument("folder", help="folder of images to feed")
    feed.add_argument("inbox", help="the station's hot folder")
    feed.add_argument("--rate", type=float, default=5.0, help="images per second")
    feed.set_defaults(func=cmd_feed)
