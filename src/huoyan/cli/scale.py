"""``huoyan batch`` and ``huoyan fit-many``: re-inspection and training on Ray."""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from huoyan.cli.common import load_recipe_or_exit, parse_since, progress_bar


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "batch",
        help="re-inspect a folder, or the kept images of stored records, with a model on Ray (resumable)",
        description="Scores every image again with MODEL on a pool of Ray actors and stores the results as a "
        "re-inspection run beside the original verdicts (the dashboard's Re-inspections page). Started again "
        "with the same run name, it goes on where it stopped and stores each image once.",
    )
    p.add_argument("model", help="model file (.safetensors) to re-inspect with")
    p.add_argument("folder", nargs="?", help="folder of images to re-inspect (or --records)")
    p.add_argument("--records", action="store_true", help="re-inspect the images the database kept of its records")
    p.add_argument("--station", help="with --records: only this station's records")
    p.add_argument("--recipe-id", help="with --records: only records judged under this recipe id")
    p.add_argument("--since", help="with --records: from this ISO time or age (30m, 2h, 7d)")
    p.add_argument("--until", help="with --records: before this ISO time or age")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--db", help="database URL (default: $HUOYAN_DATABASE_URL, else SQLite in huoyan-data)")
    where.add_argument(
        "--recipe", help="judge by this recipe (preprocess, decision rules, threshold) and use its database"
    )
    p.add_argument("--data-dir", help="folder of the records' images (default: the recipe's data_dir or huoyan-data)")
    p.add_argument("--name", help="the run's name; the same name resumes it (default: from the model and the source)")
    p.add_argument("--address", help="a running Ray cluster to use (ray start --head gives it); default: local Ray")
    p.add_argument("--workers", type=int, default=2, help="actors scoring at once, one core each (default: 2)")
    p.add_argument("--batch-size", type=int, default=8, help="images per batch an actor scores at once (default: 8)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_batch)

    f = sub.add_parser(
        "fit-many",
        help="fit one model per training folder at once on Ray (a local Ray, or a cluster with --address)",
        description="Each folder (of good images, or an MVTec category: its train/good) is fitted as a Ray task of "
        "one CPU and written to OUTDIR/<folder name>.safetensors, the file `huoyan fit` writes for the same "
        "images and parameters. The folders must be readable at the same paths on every node.",
    )
    f.add_argument("folders", nargs="+", help="training folders, one model each (named after the folder)")
    f.add_argument("-o", "--output", required=True, help="folder to write the models to")
    f.add_argument("--detector", default="patchcore", help="the detector kind of every model (default: patchcore)")
    f.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a detector parameter for every model, as `huoyan fit` takes it (e.g. image_size=224); repeatable",
    )
    f.add_argument("--address", help="a running Ray cluster to use; default: a local Ray of --workers CPUs")
    f.add_argument("--workers", type=int, default=2, help="with a local Ray: fits at once, one core each (default: 2)")
    f.add_argument("--json", action="store_true", help="one JSON object per model")
    f.set_defaults(func=cmd_fit_many)


def _default_recipe(model: Path, folder: str) -> Any:
    from huoyan.core.recipe import Recipe

    return Recipe.model_validate(
        {
            "station": "batch",
            "product": "batch",
            "recipe": "batch",
            "version": "1",
            "source": {"type": "replay", "path": folder},
            "model": str(model),
            "storage": {"keep_ng": False, "keep_ok_every": 0},
        }
    )


def _check(args: argparse.Namespace) -> None:
    """Refuse what cannot work before Ray or the model is started."""
    if args.workers < 1 or args.batch_size < 1:
        raise SystemExit("error: --workers and --batch-size are whole numbers of at least 1")
    if not Path(args.model).is_file():
        raise SystemExit(f"error: {args.model}: no such model file")
    if bool(args.folder) == bool(args.records):
        raise SystemExit("error: give a FOLDER to re-inspect, or --records (not both)")
    if args.folder and not Path(args.folder).is_dir():
        raise SystemExit(f"error: {args.folder}: not a folder")
    if args.folder and (args.station or args.recipe_id or args.since or args.until):
        raise SystemExit("error: --station, --recipe-id, --since and --until select records; use them with --records")


def cmd_batch(args: argparse.Namespace) -> int:
    _check(args)
    from huoyan.detectors import load_station_detector
    from huoyan.runner import open_database
    from huoyan.runner.recipes import make_inspector
    from huoyan.scale.batch import BatchItem, folder_items, run_batch
    from huoyan.store.blobs import BlobStore, file_sha256
    from huoyan.store.database import DatabaseConfigError
    from huoyan.store.records import RecordFilter, data_paths
    from huoyan.store.reinspections import RunConflict, archived_images, open_run, verdict_table

    model = Path(args.model)
    recipe = load_recipe_or_exit(args.recipe) if args.recipe else _default_recipe(model, args.folder or ".")
    if args.recipe:  # the recipe judges; its own storage policy would only encode images nobody keeps
        recipe = recipe.model_copy(update={"storage": recipe.storage.model_copy(update={"keep_ng": False})})
    try:
        engine = open_database(recipe if args.recipe else args.db, migrate=True)
    except DatabaseConfigError as exc:
        raise SystemExit(f"error: {exc}") from exc
    if args.records:
        where = RecordFilter(
            station=args.station,
            recipe=args.recipe_id,
            since=parse_since(args.since),
            until=parse_since(args.until, "--until"),
        )
        archived, without = archived_images(engine, where)
        data_dir = Path(args.data_dir) if args.data_dir else Path(recipe.storage.data_dir)
        blobs = BlobStore(data_paths(data_dir)[0])
        items = [
            BatchItem(a.key, str(blobs.path(a.image_sha256)), a.source_name, a.inspection_id, a.verdict, a.score)
            for a in archived
        ]
        source: dict[str, Any] = {
            "records": {k: v for k, v in vars(where).items() if v is not None and k != "extra"},
            "without_image": without,
        }
    else:
        items, without = folder_items(Path(args.folder)), 0
        source = {"folder": str(Path(args.folder).resolve())}
    if not items:
        raise SystemExit("error: nothing to re-inspect: no files in the folder, or no kept images in the selection")
    try:  # the model and recipe are checked here, once, before any actor starts
        inspector = make_inspector(load_station_detector(model, recipe.detector), recipe, "")
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    sha = file_sha256(model)
    # The default name is the command's, as typed: "--since 30d" names the same run tomorrow, so it resumes.
    asked = {"folder": source.get("folder"), "station": args.station, "recipe_id": args.recipe_id,
             "since": args.since, "until": args.until}  # fmt: skip
    source_digest = hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()
    name = args.name or f"{model.stem}-{sha[:8]}-{source_digest[:8]}"
    try:
        run = open_run(
            engine, name, (sha, model.name), inspector.threshold, (recipe.recipe, recipe.version), source,
            len(items), getpass.getuser(),
        )  # fmt: skip
    except RunConflict as exc:
        raise SystemExit(f"error: {exc}") from exc
    with progress_bar(len(items), "img", f"re-inspecting ({name})") as bar:
        report = run_batch(
            engine, run, model, recipe, items, address=args.address, workers=args.workers,
            batch_size=args.batch_size, progress=bar.update,
        )  # fmt: skip
    table = verdict_table(engine, run.id)
    summary = {
        "run": name,
        "run_id": run.id,
        "selected": report.selected,
        "stored_before": report.already,
        "scored_now": report.scored,
        "without_image": without,
        "verdicts": _totals(table, by_original=False),
        "changed": {f"{o}->{v}": n for (o, v), n in sorted(table.items(), key=str) if o and o != v},
    }
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    return 0


def _totals(table: dict[tuple[str | None, str], int], by_original: bool) -> dict[str, int]:
    out: dict[str, int] = {}
    for (original, verdict), n in table.items():
        key = (original or "-") if by_original else verdict
        out[key] = out.get(key, 0) + n
    return dict(sorted(out.items()))


def _print_summary(s: dict[str, Any]) -> None:
    out = sys.stdout
    out.write(f"run {s['run']} (id {s['run_id']}): {s['selected']} images, {s['scored_now']} scored now, ")
    out.write(f"{s['stored_before']} stored before\n")
    if s["without_image"]:
        out.write(f"{s['without_image']} selected records kept no image and were left out\n")
    out.write("verdicts: " + ", ".join(f"{k} {n}" for k, n in s["verdicts"].items()) + "\n")
    if s["changed"]:
        out.write("changed:  " + ", ".join(f"{k} {n}" for k, n in s["changed"].items()) + "\n")


def _params(kind: str, given: list[str]) -> dict[str, Any]:
    """NAME=VALUE options checked against the kind's parameters (values read as YAML: 224, 0.1, true)."""
    import yaml

    from huoyan.detectors import UnknownDetectorKind, default_params, new_detector

    try:
        known = default_params(kind)
    except UnknownDetectorKind as exc:
        raise SystemExit(f"error: {exc}") from exc
    params: dict[str, Any] = {}
    for item in given:
        name, sep, value = item.partition("=")
        if not sep or name not in known:
            raise SystemExit(f"error: --param {item!r}: give NAME=VALUE with NAME one of {', '.join(sorted(known))}")
        params[name] = yaml.safe_load(value)
    try:
        new_detector(kind, **params)  # a value the kind refuses is said now, not after the first fit
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"error: --param: {exc}") from exc
    return params


def cmd_fit_many(args: argparse.Namespace) -> int:
    from huoyan.scale.training import FitJob, FitResult, fit_many

    if args.workers < 1:
        raise SystemExit("error: --workers is a whole number of at least 1")
    params = _params(args.detector, args.param)
    jobs = [FitJob(Path(f).resolve().name, Path(f).resolve()) for f in args.folders]
    missing = [str(j.folder) for j in jobs if not j.folder.is_dir()]
    if missing:
        raise SystemExit(f"error: not a folder: {', '.join(missing)}")
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise SystemExit("error: two training folders have the same name; each model is named after its folder")
    out = Path(args.output)

    def said(result: FitResult) -> None:
        bar.update(1)
        for skipped in result.skipped:
            print(f"skipped: {skipped}", file=sys.stderr)
        if args.json:
            print(json.dumps({"name": result.name, "model": str(result.path) if result.path else None,
                              "sha256": result.sha256, "card": result.card, "error": result.error}))  # fmt: skip
        elif result.error:
            print(f"{result.name}: not fitted: {result.error}")
        else:
            card = result.card or {}
            cal = card.get("calibration", {})
            print(f"{result.name}: {result.path} from {card.get('train_samples')} images, "
                  f"threshold {cal.get('threshold', float('nan')):.4g}")  # fmt: skip

    with progress_bar(len(jobs), "model", "fitting") as bar:
        results = fit_many(
            jobs, args.detector, params, out, address=args.address, workers=args.workers,
            on_done=said,
        )  # fmt: skip
    return 1 if any(r.error for r in results) else 0
