"""What the command groups share: JSON output, recipes and databases named on the command line, logging."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

RUNTIME_HELP = (
    "what runs a float32 CNN: onnx (ONNX Runtime, faster on a CPU) or torch; "
    "a model fitted with --backbone-precision bfloat16 always runs in OpenVINO"
)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def load_good_images(folder: Path) -> tuple[list[Any], list[str]]:
    """The folder's images and why each other file was left out (``vision.dataset.good_images``),
    with a progress bar."""
    from huoyan.vision.dataset import good_images

    if not folder.is_dir():
        raise SystemExit(f"error: {folder} is not a folder")
    files = sum(1 for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
    with progress_bar(files, "image", f"reading {folder.name}") as bar:
        return good_images(folder, on_file=lambda: bar.update(1))


def load_recipe_or_exit(path: str) -> Any:
    from huoyan.core.recipe import RecipeError, load_recipe

    try:
        return load_recipe(path)
    except RecipeError as exc:
        raise SystemExit(f"error: {exc}") from exc


def setup_logging(verbose: bool) -> None:
    import logging

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def parse_since(text: str | None, option: str = "--since") -> Any:
    """An ISO time, or an age (30m, 2h, 7d) counted back from now, as UTC."""
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
            f"error: {option} {text!r}: use an ISO time (2026-11-26T08:00) or an age (30m, 2h, 7d)"
        ) from exc
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def open_database_or_exit(args: argparse.Namespace) -> Any:
    from huoyan.runner import open_database
    from huoyan.store.database import DatabaseConfigError

    target = load_recipe_or_exit(args.recipe) if getattr(args, "recipe", None) else args.db
    try:
        return open_database(target, migrate=False)
    except DatabaseConfigError as exc:
        raise SystemExit(f"error: {exc}") from exc


def audit_log(args: argparse.Namespace, engine: Any) -> Any:
    """The audit trail, keyed as the server keys it (``--data-dir``, else the recipe's data_dir)."""
    from huoyan.store.audit import AuditLog, audit_key

    return AuditLog(engine, audit_key(data_dir_of(args)))


def data_dir_of(args: argparse.Namespace) -> Path:
    """``--data-dir``, else the recipe's data_dir, else huoyan-data: where the audit key and blobs are."""
    if args.data_dir:
        return Path(args.data_dir)
    return Path(load_recipe_or_exit(args.recipe).storage.data_dir) if args.recipe else Path("huoyan-data")


def database_options(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--db", help="database URL")
    where.add_argument("--recipe", help="use this recipe's database")
    p.add_argument("--data-dir", help="folder of the audit key (default: the recipe's data_dir, or huoyan-data)")


def progress_bar(total: int | None, unit: str, what: str) -> Any:
    """A progress bar with time left on stderr, drawn only on a terminal (scripts and
    pipes see nothing); ``.update(n)`` moves it, ``with`` closes it."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=what, file=sys.stderr, disable=None, leave=False, dynamic_ncols=True)
