"""The ``huoyan`` command line: fit, predict, evaluate, run a station, records, db, feed, sample-line, demo."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from huoyan import __version__


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _train_folder(path: Path) -> Path:
    """Accept an image folder or an MVTec-layout category (uses its train/good)."""
    nested = path / "train" / "good"
    return nested if nested.is_dir() else path


def _load_good_images(folder: Path) -> tuple[list[Any], list[str]]:
    from huoyan.vision.imageio import ImageError, list_images, read_image

    if not folder.is_dir():
        raise SystemExit(f"error: {folder} is not a folder")
    images, errors = [], []
    for p in list_images(folder):
        try:
            images.append(read_image(p))
        except ImageError as exc:
            errors.append(str(exc))
    return images, errors


def cmd_fit(args: argparse.Namespace) -> int:
    from huoyan.vision.patchcore import PatchCore

    folder = _train_folder(Path(args.train_dir))
    images, errors = _load_good_images(folder)
    for e in errors:
        print(f"skipped: {e}", file=sys.stderr)
    defects: list[Any] = []
    for d in args.defects or []:
        imgs, errs = _load_good_images(Path(d))
        defects += imgs
        for e in errs:
            print(f"skipped: {e}", file=sys.stderr)
    model = PatchCore(
        backbone=args.backbone,
        image_size=args.image_size,
        coreset_ratio=args.coreset_ratio,
        coreset_size=args.coreset_size,
        false_reject_rate=args.false_reject_rate,
        confidence=args.confidence,
        calibration_fraction=args.calibration_fraction,
        calibration_in_bank=args.calibration_in_bank,
        bank_dtype=args.bank_dtype,
        seed=args.seed,
        runtime=args.runtime,
    )
    start = time.perf_counter()
    try:
        model.fit(images, defects or None)
    except ValueError as exc:
        raise SystemExit(f"error: {folder}: {exc}") from exc
    elapsed = time.perf_counter() - start
    path = model.save(args.output)
    card = model.card_
    assert card is not None
    if args.json:
        _print_json({"model": str(path), "fit_seconds": elapsed, "card": card.model_dump(mode="json")})
    else:
        cal = card.calibration
        print(f"model: {path}")
        print(f"bank from {card.bank_images} of {card.train_images} images in {elapsed:.1f} s: ", end="")
        print(f"{card.bank_size} x {card.feature_dim}")
        print(
            f"threshold {cal.threshold:.4g} ({cal.method}, n={cal.n_calibration}): "
            f"expected false-reject rate {cal.expected_false_reject_rate:.3%}, "
            f"<= {cal.false_reject_rate_upper:.3%} at {cal.confidence:.0%} confidence"
        )
        if cal.f1_metrics:
            print(f"F1-optimal threshold {cal.f1_threshold:.4g}: {cal.f1_metrics}")
    return 0


def _load_model(path: str, args: argparse.Namespace) -> Any:
    from huoyan.vision.artifact import ArtifactError
    from huoyan.vision.backbone import BackboneUnavailable
    from huoyan.vision.patchcore import PatchCore

    try:
        model = PatchCore.load(path, runtime=getattr(args, "runtime", "onnx")).prepare()
    except (ArtifactError, BackboneUnavailable) as exc:
        raise SystemExit(f"error: {exc}") from exc
    if getattr(args, "min_area", None) is not None:
        model.min_region_area = args.min_area
    if getattr(args, "mm_per_px", None) is not None:
        model.mm_per_px = args.mm_per_px
    return model


def cmd_predict(args: argparse.Namespace) -> int:
    from huoyan.vision.files import RESULTS_FILE, predict_files

    model = _load_model(args.model, args)
    counts: Counter[str] = Counter()
    start = time.perf_counter()
    for row in predict_files(model, args.inputs, args.out):
        counts[row["verdict"]] += 1
        if not args.json and row["verdict"] == "ERROR":
            print(f"error: {row['error']}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    summary = {
        "results": str(Path(args.out) / RESULTS_FILE),
        "counts": dict(counts),
        "seconds": elapsed,
    }
    if args.json:
        _print_json(summary)
    else:
        print(f"{sum(counts.values())} inputs: {dict(counts)} in {elapsed:.1f} s -> {summary['results']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from huoyan.vision.dataset import load_category
    from huoyan.vision.evaluate import evaluate

    model = _load_model(args.model, args)
    try:
        category = load_category(args.category_dir)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from exc
    result = evaluate(model, category)
    if args.json:
        _print_json(result)
    else:
        for key in (
            "image_auroc",
            "pixel_auroc",
            "aupro",
            "f1_max",
            "false_reject_rate",
            "miss_rate",
            "images_per_second",
        ):
            print(f"{key:>18}: {result[key]:.4f}")
    return 0


def cmd_sample_line(args: argparse.Namespace) -> int:
    from huoyan.sampleline.generator import generate_line

    roots = generate_line(
        args.out, n_train=args.train, n_test_good=args.test_good, n_test_defect=args.test_defect, seed=args.seed
    )
    for r in roots:
        print(r)
    return 0


def _recipe(path: str) -> Any:
    from huoyan.core.recipe import RecipeError, load_recipe

    try:
        return load_recipe(path)
    except RecipeError as exc:
        raise SystemExit(f"error: {exc}") from exc


def _setup_logging(verbose: bool) -> None:
    import logging

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cmd_run(args: argparse.Namespace) -> int:
    from huoyan.runner import open_station, print_status, run_station
    from huoyan.store.records import RecipeConflict
    from huoyan.vision.artifact import ArtifactError

    _setup_logging(args.verbose)
    recipe = _recipe(args.recipe)
    try:
        opened = open_station(recipe, args.db, batch_size=args.batch_size, runtime=args.runtime)
    except (ArtifactError, RecipeConflict, FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    on_start = _stdin_triggers(opened.source) if args.triggers_from_stdin else None
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


def _parse_since(text: str | None) -> Any:
    from datetime import UTC, datetime, timedelta

    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return datetime.now(UTC) - timedelta(seconds=float(text[:-1]) * units[text[-1]])
    try:
        ts = datetime.fromisoformat(text)
    except ValueError as exc:
        raise SystemExit(
            f"error: --since {text!r}: use an ISO time (2026-11-26T08:00) or an age (30m, 2h, 7d)"
        ) from exc
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _database(args: argparse.Namespace) -> Any:
    from huoyan.runner import open_database
    from huoyan.store.database import DatabaseConfigError

    target = _recipe(args.recipe) if getattr(args, "recipe", None) else args.db
    try:
        return open_database(target, migrate=False)
    except DatabaseConfigError as exc:
        raise SystemExit(f"error: {exc}") from exc


def cmd_records(args: argparse.Namespace) -> int:
    from huoyan.store.database import current_revision
    from huoyan.store.records import query_records

    engine = _database(args)
    if current_revision(engine) is None:
        raise SystemExit("error: no Huoyan records in this database (run `huoyan db upgrade` or a station first)")
    rows = query_records(engine, args.station, _parse_since(args.since), args.verdict, args.limit)
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


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from huoyan.store.database import upgrade

    print(f"database at revision {upgrade(_database(args))}")
    return 0


def cmd_feed(args: argparse.Namespace) -> int:
    from huoyan.runner import feed_folder
    from huoyan.vision.imageio import list_images

    files = list_images(Path(args.folder), recursive=True)
    if not files:
        raise SystemExit(f"error: no images under {args.folder}")
    n = feed_folder(files, Path(args.inbox), args.rate)
    print(f"fed {n} images into {args.inbox}")
    return 0


def _server_settings(args: argparse.Namespace, recipes: list[Any]) -> Any:
    from huoyan.server.platform import Settings
    from huoyan.store.database import resolve_url

    first = recipes[0] if recipes else None
    data_dir = Path(args.data_dir) if args.data_dir else Path(first.storage.data_dir) if first else Path("huoyan-data")
    url = args.db or resolve_url(first.storage.database if first else None, data_dir)
    return Settings(
        database_url=url,
        data_dir=data_dir,
        recipes=recipes,
        runtime=args.runtime,
        batch_size=args.batch_size,
        secure_cookies=args.secure_cookies or bool(args.tls_cert),
        train_worker=not args.no_training,
    )


def serve(
    settings: Any,
    host: str,
    port: int,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    trusted_proxies: list[str] | None = None,
) -> None:
    """Run the server in the foreground until Ctrl-C or SIGTERM. X-Forwarded-For and
    -Proto are believed only from ``trusted_proxies``: otherwise any local client could
    name another address and slip past the per-address login limit."""
    import uvicorn

    from huoyan.server.app import create_app

    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        log_level="info",
        timeout_graceful_shutdown=5,
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=",".join(trusted_proxies or []) or None,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    recipes = [_recipe(r) for r in args.recipe or []]
    settings = _server_settings(args, recipes)
    scheme = "https" if args.tls_cert else "http"
    print(f"Huoyan dashboard on {scheme}://{args.host}:{args.port}/ (database {settings.database_url})", flush=True)
    serve(settings, args.host, args.port, args.tls_cert, args.tls_key, args.trusted_proxy)
    return 0


def _password(args: argparse.Namespace) -> str:
    import getpass
    import os

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if os.environ.get("HUOYAN_PASSWORD"):
        return os.environ["HUOYAN_PASSWORD"]
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("error: the passwords differ")
    return first


def _accounts(args: argparse.Namespace) -> Any:
    from huoyan.store.accounts import Accounts
    from huoyan.store.database import upgrade

    engine = _database(args)
    upgrade(engine)
    return Accounts(engine)


def _audit_log(args: argparse.Namespace, engine: Any) -> Any:
    """The audit trail, keyed as the server keys it (``--data-dir``, else the recipe's data_dir)."""
    from huoyan.store.audit import AuditLog, audit_key

    if args.data_dir:
        data_dir = Path(args.data_dir)
    else:
        data_dir = Path(_recipe(args.recipe).storage.data_dir) if args.recipe else Path("huoyan-data")
    return AuditLog(engine, audit_key(data_dir))


def cmd_audit(args: argparse.Namespace) -> int:
    from huoyan.store.database import upgrade

    engine = _database(args)
    upgrade(engine)
    check = _audit_log(args, engine).verify()
    print(
        json.dumps(
            {
                "intact": check.intact,
                "entries": check.entries,
                "head_sha256": check.head_sha256,
                "keyed_from_id": check.keyed_from_id,
                "first_bad_id": check.first_bad_id,
                "problem": check.problem,
            },
            indent=2,
        )
    )
    return 0 if check.intact else 1


def cmd_user(args: argparse.Namespace) -> int:
    from huoyan.store.accounts import DEFAULT_KEY_SCOPES, AccountError, Role

    accounts = _accounts(args)
    audit = _audit_log(args, accounts.engine)
    try:
        if args.user_command == "add":
            user = accounts.add_user(args.username, _password(args), Role(args.role), "cli")
            audit.add("cli", "user-add", user.username, role=user.role.value)
            print(f"user {user.username} added with role {user.role.value}")
        elif args.user_command == "set":
            password = _password(args) if args.password else None
            active = None if args.active is None else args.active == "yes"
            role = Role(args.role) if args.role else None
            user = accounts.update(args.username, role, active, password)
            audit.add("cli", "user-change", user.username, role=user.role.value, active=user.active)
            print(f"user {user.username}: role {user.role.value}, {'active' if user.active else 'disabled'}")
        elif args.user_command == "key":
            key_id, key = accounts.add_api_key(args.username, args.name, args.scope or DEFAULT_KEY_SCOPES)
            audit.add("cli", "api-key-add", args.username, key_id=key_id, name=args.name, scopes=args.scope)
            print(key)
        else:
            for u in accounts.users():
                print(f"{u.username:20} {u.role.value:9} {'active' if u.active else 'disabled'}")
    except AccountError as exc:
        raise SystemExit(f"error: {exc}") from exc
    return 0


def _round(value: Any, digits: int = 1) -> Any:
    return None if value is None else round(value, digits)


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

    from huoyan.core.recipe import load_recipe
    from huoyan.runner import feed_folder, open_station, print_status, run_station
    from huoyan.sampleline.generator import generate_line
    from huoyan.store.records import query_records
    from huoyan.vision.dataset import load_category
    from huoyan.vision.evaluate import evaluate
    from huoyan.vision.imageio import list_images
    from huoyan.vision.patchcore import PatchCore

    out = Path(args.out)
    print(f"generating the sample line in {out / 'line'} ...")
    roots = generate_line(out / "line", seed=args.seed)
    data_dir = out / "data"
    summary = []
    for root in roots:
        images, _ = _load_good_images(root / "train" / "good")
        start = time.perf_counter()
        model = PatchCore(seed=args.seed).fit(images)
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
    print(f"records: huoyan records --db sqlite:///{db} --verdict NG")
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

    from huoyan.runner import feed_folder
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
    print()
    print(f"dashboard: http://{args.host}:{args.port}/  (login: demo / {password})")
    print(f"the sample line is fed at {args.live_rate} parts/s per station; Ctrl-C stops", flush=True)
    try:
        serve(settings, args.host, args.port)
    finally:
        stop.set()


def _server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for the plant network)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--db", help="database URL (default: the first recipe's, $HUOYAN_DATABASE_URL, or SQLite)")
    p.add_argument("--data-dir", help="folder for trained model versions (default: the first recipe's data_dir)")
    p.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", help="... and this key")
    p.add_argument(
        "--secure-cookies", action="store_true", help="mark cookies Secure and send HSTS (behind an HTTPS proxy)"
    )
    p.add_argument(
        "--trusted-proxy",
        action="append",
        metavar="ADDRESS",
        help="believe X-Forwarded-For from this reverse proxy's address (repeat; default: from none)",
    )
    p.add_argument("--runtime", choices=("onnx", "torch"), default="onnx")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-training", action="store_true", help="run no training jobs in this server")


def _database_options(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--db", help="database URL")
    where.add_argument("--recipe", help="use this recipe's database")
    p.add_argument("--data-dir", help="folder of the audit key (default: the recipe's data_dir, or huoyan-data)")


def build_parser() -> argparse.ArgumentParser:
    from huoyan.store.accounts import Scope
    from huoyan.vision.backbone import BACKBONES

    parser = argparse.ArgumentParser(prog="huoyan", description="Huoyan intelligent inspection")
    parser.add_argument("--version", action="version", version=f"huoyan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="learn a model from good images")
    fit.add_argument("train_dir", help="folder of good images, or an MVTec category (uses train/good)")
    fit.add_argument("-o", "--output", required=True, help="model file to write (.safetensors)")
    fit.add_argument("--backbone", default="efficientnet-lite0", choices=sorted(BACKBONES))
    fit.add_argument("--image-size", type=int, default=224)
    fit.add_argument("--coreset-ratio", type=float, default=0.1)
    fit.add_argument("--coreset-size", type=int, default=None)
    fit.add_argument("--false-reject-rate", type=float, default=0.005)
    fit.add_argument("--confidence", type=float, default=0.95)
    fit.add_argument("--calibration-fraction", type=float, default=0.2, help="share held out for the threshold")
    fit.add_argument(
        "--calibration-in-bank",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after calibrating, add what the held-out images' patches add to the bank (more accurate, a larger bank)",
    )
    fit.add_argument(
        "--bank-dtype", choices=("float32", "float16"), default="float16", help="float16 halves the bank's bytes"
    )
    fit.add_argument("--defects", nargs="*", help="folders of labelled defect images (adds the F1-optimal threshold)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--runtime", choices=("onnx", "torch"), default="onnx")
    fit.add_argument("--json", action="store_true")
    fit.set_defaults(func=cmd_fit)

    pred = sub.add_parser("predict", help="score, localise and judge images")
    pred.add_argument("model")
    pred.add_argument("inputs", nargs="+", help="image files or folders")
    pred.add_argument("--out", required=True, help="folder for results.jsonl and maps/")
    pred.add_argument("--min-area", type=int, default=None, help="minimum region area in pixels")
    pred.add_argument("--mm-per-px", type=float, default=None)
    pred.add_argument("--runtime", choices=("onnx", "torch"), default="onnx")
    pred.add_argument("--json", action="store_true")
    pred.set_defaults(func=cmd_predict)

    ev = sub.add_parser("evaluate", help="metrics on an MVTec-layout category")
    ev.add_argument("model")
    ev.add_argument("category_dir")
    ev.add_argument("--runtime", choices=("onnx", "torch"), default="onnx")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_evaluate)

    line = sub.add_parser("sample-line", help="write the synthetic sample line")
    line.add_argument("out")
    line.add_argument("--train", type=int, default=60)
    line.add_argument("--test-good", type=int, default=20)
    line.add_argument("--test-defect", type=int, default=6)
    line.add_argument("--seed", type=int, default=0)
    line.set_defaults(func=cmd_sample_line)

    demo = sub.add_parser("demo", help="sample line -> train -> hot-folder station -> records -> summary")
    demo.add_argument("--out", default="huoyan-demo")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--rate", type=float, default=20.0, help="parts per second fed into each hot folder")
    demo.add_argument("--no-serve", action="store_true", help="stop after the summary (no dashboard)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--live-rate", type=float, default=2.0, help="parts per second per station while serving")
    demo.add_argument("--password", help="the demo user's password (default: a new random one, printed)")
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="run a station from a recipe, in the foreground")
    run.add_argument("recipe", help="recipe YAML file")
    run.add_argument("--db", help="database URL (default: the recipe's, $HUOYAN_DATABASE_URL, or SQLite)")
    run.add_argument("--batch-size", type=int, default=8, help="largest micro-batch when parts queue up")
    run.add_argument("--runtime", choices=("onnx", "torch"), default="onnx")
    run.add_argument("--idle-exit", type=float, default=None, help="stop after this many seconds without parts")
    run.add_argument("--max-parts", type=int, default=None, help="stop after this many parts")
    run.add_argument("--triggers-from-stdin", action="store_true", help="camera trigger mode: one line per trigger")
    run.add_argument("--quiet", action="store_true", help="no live status line")
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=cmd_run)

    rec = sub.add_parser("records", help="list stored inspections")
    where = rec.add_mutually_exclusive_group()
    where.add_argument("--db", help="database URL")
    where.add_argument("--recipe", help="use this recipe's database")
    rec.add_argument("--station")
    rec.add_argument("--since", help="ISO time or age such as 30m, 2h, 7d")
    rec.add_argument("--verdict", choices=("OK", "NG", "ERROR", "ok", "ng", "error"))
    rec.add_argument("--limit", type=int)
    rec.add_argument("--json", action="store_true", help="one JSON object per line")
    rec.set_defaults(func=cmd_records)

    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="apply migrations up to the newest schema")
    up_where = up.add_mutually_exclusive_group()
    up_where.add_argument("--db", help="database URL")
    up_where.add_argument("--recipe", help="use this recipe's database")
    up.set_defaults(func=cmd_db_upgrade)

    srv = sub.add_parser("serve", help="REST API and dashboard, hosting the stations of the given recipes")
    srv.add_argument("--recipe", action="append", help="host this recipe's station (repeat for several)")
    _server_options(srv)
    srv.set_defaults(func=cmd_serve)

    user = sub.add_parser("user", help="users of the server and their API keys")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    u_add = user_sub.add_parser("add", help="add a user (password from a prompt, $HUOYAN_PASSWORD or stdin)")
    u_add.add_argument("username")
    u_add.add_argument("--role", choices=("operator", "engineer", "admin"), required=True)
    u_set = user_sub.add_parser("set", help="change a user's role, enable or disable them, or set a password")
    u_set.add_argument("username")
    u_set.add_argument("--role", choices=("operator", "engineer", "admin"))
    u_set.add_argument("--active", choices=("yes", "no"))
    u_set.add_argument("--password", action="store_true", help="set a new password")
    u_key = user_sub.add_parser("key", help="make an API key acting as this user (printed once)")
    u_key.add_argument("username")
    u_key.add_argument("--name", required=True, help="what the key is for")
    u_key.add_argument(
        "--scope",
        action="append",
        choices=[s.value for s in Scope],
        help="what the key may do within the user's role (repeat; default: upload only)",
    )
    u_list = user_sub.add_parser("list", help="list users")
    for p in (u_add, u_set, u_key, u_list):
        _database_options(p)
        p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user.set_defaults(func=cmd_user)

    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the keyed hash chain; exit 1 if it was tampered with")
    _database_options(verify)
    audit.set_defaults(func=cmd_audit)

    feed = sub.add_parser("feed", help="copy a folder's images into a hot folder at a fixed rate")
    feed.add_argument("folder")
    feed.add_argument("inbox")
    feed.add_argument("--rate", type=float, default=5.0, help="images per second")
    feed.set_defaults(func=cmd_feed)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
