"""`huoyan demo`: the sample line trained, inspected by real stations, then served live."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from huoyan.cli.common import (
    load_good_images,
)
from huoyan.cli.server import serve


def _round(value: Any, digits: int = 1) -> Any:
    return None if value is None else round(value, digits)


def huoyan_command() -> str:
    """How to run this very Huoyan from a fresh shell, where its virtual environment is
    not active: the ``huoyan`` script beside this interpreter (a bare ``huoyan`` would
    not be found)."""
    import shlex
    import sys

    script = Path(sys.executable).with_name("huoyan")
    if script.is_file():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m huoyan.cli"


def demo_recipe(product: str, model: Path, inbox: Path, data_dir: Path) -> str:
    """The recipe the demo writes for each sample-line product."""
    return f"""# Written by `huoyan demo`: a hot-folder station for the sample line's {product}.
station: demo-{product}
product: {product}
recipe: {product}-top
version: "1"
source:
  type: hot_folder
  path: {inbox.resolve()}
  settle_ms: 50
model: {model.resolve()}
decision:
  threshold: calibrated
storage:
  data_dir: {data_dir.resolve()}
  keep_ok_every: 5
part_id:
  from: filename
  pattern: '^(?P<id>\\d+)_'
"""


def cmd_demo(args: argparse.Namespace) -> int:
    import threading

    from huoyan.core.detector import ImageDetector
    from huoyan.core.recipe import load_recipe
    from huoyan.detectors import new_detector
    from huoyan.runner import open_station, print_status, run_station
    from huoyan.sampleline.feeder import feed_folder
    from huoyan.sampleline.generator import generate_line
    from huoyan.store.records import query_records
    from huoyan.vision.dataset import load_category
    from huoyan.vision.evaluate import evaluate
    from huoyan.vision.imageio import list_images

    out = Path(args.out)
    print(f"generating the sample line in {out / 'line'} ...")
    roots = generate_line(out / "line", seed=args.seed)
    data_dir = out / "data"
    summary = []
    for root in roots:
        images, _ = load_good_images(root / "train" / "good")
        start = time.perf_counter()
        model = new_detector(seed=args.seed).fit(images)
        assert isinstance(model, ImageDetector)  # the sample line is images
        fit_s = time.perf_counter() - start
        model_path = model.save(out / "models" / f"{root.name}.safetensors")
        metrics = evaluate(model, load_category(root))
        recipe_path = out / "recipes" / f"{root.name}.yaml"
        recipe_path.parent.mkdir(parents=True, exist_ok=True)
        inbox = out / "stations" / root.name / "inbox"
        recipe_path.write_text(demo_recipe(root.name, model_path, inbox, data_dir))
        recipe = load_recipe(recipe_path)
        opened = open_station(recipe)
        tests = list_images(root / "test", recursive=True)
        feeder = threading.Thread(target=feed_folder, args=(tests, inbox, args.rate), daemon=True)
        print(f"station demo-{root.name}: feeding {len(tests)} test images into {inbox} at {args.rate}/s")
        feeder.start()
        run = run_station(opened, idle_exit=2.0, status=print_status, status_every=2.0)
        feeder.join()
        rows = query_records(opened.engine, station=recipe.station)
        good = [r for r in rows if "_good_" in r["source_name"]]
        bad = [r for r in rows if "_good_" not in r["source_name"]]
        summary.append(
            {
                "product": root.name,
                "fit_seconds": round(fit_s, 1),
                "parts_recorded": len(rows),
                "verdicts": run["verdicts"],
                "false_rejects": sum(r["verdict"] == "NG" for r in good),
                "good_parts": len(good),
                "missed_defects": sum(r["verdict"] == "OK" for r in bad),
                "defective_parts": len(bad),
                "latency_ms_p50": _round(run["latency_ms_p50"]),
                "latency_ms_p99": _round(run["latency_ms_p99"]),
                "image_auroc": round(metrics["image_auroc"], 4),
                "pixel_auroc": round(metrics["pixel_auroc"], 4),
                "recipe": str(recipe_path),
            }
        )
        print(json.dumps(summary[-1]))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    db = (data_dir / "huoyan.db").resolve()
    print(f"summary: {out / 'summary.json'}")
    print(f"records: {huoyan_command()} records --db sqlite:///{db} --verdict NG")
    if args.no_serve:
        return 0
    recipes = [load_recipe(out / "recipes" / f"{root.name}.yaml") for root in roots]
    feeds = [(list_images(root / "test", recursive=True), out / "stations" / root.name / "inbox") for root in roots]
    serve_demo(args, recipes, feeds, data_dir)
    return 0


def serve_demo(
    args: argparse.Namespace, recipes: list[Any], feeds: list[tuple[list[Path], Path]], data_dir: Path
) -> None:
    """The dashboard over the demo stations, with the sample line fed into them until Ctrl-C."""
    import itertools
    import logging
    import secrets
    import threading

    from huoyan.sampleline.feeder import feed_folder
    from huoyan.server.platform import Settings
    from huoyan.store.accounts import Accounts, Role
    from huoyan.store.database import make_engine, resolve_url, upgrade

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    url = resolve_url(None, data_dir)
    engine = make_engine(url)
    upgrade(engine)
    accounts = Accounts(engine)
    password = args.password or secrets.token_urlsafe(9)
    if accounts.get("demo") is None:
        accounts.add_user("demo", password, Role.ADMIN, "huoyan demo")
    else:
        accounts.update("demo", Role.ADMIN, True, password)
    engine.dispose()
    stop = threading.Event()
    for files, inbox in feeds:
        cycle = itertools.cycle(files)  # the line keeps running: the test parts come round again
        threading.Thread(target=feed_folder, args=(cycle, inbox, args.live_rate, stop), daemon=True).start()
    settings = Settings(database_url=url, data_dir=data_dir, recipes=recipes)

    def ready() -> None:  # last, once the server answers, and with no request log after it
        print()
        print(f"dashboard: http://{args.host}:{args.port}/  (login: demo / {password})")
        print(f"the sample line is fed at {args.live_rate} parts/s per station; Ctrl-C stops", flush=True)

    try:
        serve(settings, args.host, args.port, on_ready=ready, access_log=False)
    finally:
        stop.set()


def add_commands(sub: Any) -> None:
    """Declare this group's commands on the ``huoyan`` parser."""
    demo = sub.add_parser("demo", help="sample line -> train -> hot-folder station -> records -> summary")
    demo.add_argument("--out", default="huoyan-demo", help="folder for the demo's data, models and database")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the sample line")
    demo.add_argument("--rate", type=float, default=20.0, help="parts per second fed into each hot folder")
    demo.add_argument("--no-serve", action="store_true", help="stop after the summary (no dashboard)")
    demo.add_argument("--host", default="127.0.0.1", help="address the dashboard listens on")
    demo.add_argument("--port", type=int, default=8000, help="port the dashboard listens on")
    demo.add_argument("--live-rate", type=float, default=2.0, help="parts per second per station while serving")
    demo.add_argument("--password", help="the demo user's password (default: a new random one, printed)")
    demo.set_defaults(func=cmd_demo)
