"""`huoyan serve`, `user` and `audit`: the REST API and dashboard, its users and keys, the audit trail."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from huoyan.cli.common import (
    RUNTIME_HELP,
    audit_log,
    data_dir_of,
    database_options,
    load_recipe_or_exit,
    open_database_or_exit,
    print_json,
)


def _server_settings(args: argparse.Namespace, recipes: list[Any]) -> Any:
    from huoyan.core.detector import fit_here
    from huoyan.scale.training import RayFitter
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
        box_key=Path(args.box_key) if args.box_key else None,
        fitter=RayFitter(args.ray_address) if getattr(args, "ray_address", None) else fit_here,
    )


def serve(
    settings: Any,
    host: str,
    port: int,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    trusted_proxies: list[str] | None = None,
    on_ready: Callable[[], None] | None = None,
    access_log: bool = True,
) -> None:
    """Run the server in the foreground until Ctrl-C or SIGTERM; ``on_ready`` is called
    once it answers (so what it prints is true when printed). X-Forwarded-For and -Proto
    are believed only from ``trusted_proxies``: otherwise any local client could name
    another address and slip past the per-address login limit. ``access_log`` False
    keeps a line per request out of the terminal (the demo's)."""
    import threading
    import time

    import uvicorn

    from huoyan.server.app import create_app

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=host,
            port=port,
            ssl_certfile=tls_cert,
            ssl_keyfile=tls_key,
            log_level="info" if access_log else "warning",
            access_log=access_log,
            timeout_graceful_shutdown=5,
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=",".join(trusted_proxies or []) or None,
        )
    )

    def tell_when_ready() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started and on_ready is not None:
            on_ready()

    threading.Thread(target=tell_when_ready, daemon=True).start()
    server.run()


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    recipes = [load_recipe_or_exit(r) for r in args.recipe or []]
    settings = _server_settings(args, recipes)
    scheme = "https" if args.tls_cert else "http"

    def ready() -> None:
        print(f"Huoyan dashboard on {scheme}://{args.host}:{args.port}/ (database {settings.database_url})", flush=True)

    serve(settings, args.host, args.port, args.tls_cert, args.tls_key, args.trusted_proxy, on_ready=ready)
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

    engine = open_database_or_exit(args)
    upgrade(engine)
    return Accounts(engine)


def cmd_audit(args: argparse.Namespace) -> int:
    from huoyan.share.checkpoints import CheckpointError, make_checkpoint, read_checkpoint
    from huoyan.share.keys import KeyError_, passphrase_from
    from huoyan.store.database import upgrade
    from huoyan.store.verification import Marks, verify_all

    engine = open_database_or_exit(args)
    upgrade(engine)
    audit = audit_log(args, engine)
    try:
        if args.audit_command == "checkpoint":
            signed = make_checkpoint(engine, audit, Path(args.key), passphrase_from(args.passphrase_env))
            out = Path(args.out) if args.out else _checkpoint_path(args)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(signed, indent=2))
            audit.add(getpass.getuser(), "audit-checkpoint", str(out))
            print(f"signed checkpoint {out}")
            return 0
        outside = Marks()
        if args.checkpoint and not args.public_key:
            raise SystemExit("error: --checkpoint needs --public-key (the signing plant's .pub)")
        for path in args.checkpoint or []:
            marks = read_checkpoint(Path(path), Path(args.public_key).read_bytes()).marks()
            outside.audit += marks.audit
            for station, heads in marks.records.items():
                outside.records.setdefault(station, []).extend(heads)
            for station, heads in marks.reviews.items():
                outside.reviews.setdefault(station, []).extend(heads)
    except (CheckpointError, KeyError_, OSError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    found = verify_all(engine, audit, args.station, outside)
    print_json(found.as_dict())
    return 0 if found.intact else 1


def _checkpoint_path(args: argparse.Namespace) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return data_dir_of(args) / "checkpoints" / f"checkpoint-{stamp}.json"


def cmd_user(args: argparse.Namespace) -> int:
    from huoyan.store.accounts import DEFAULT_KEY_SCOPES, AccountError, Role

    accounts = _accounts(args)
    audit = audit_log(args, accounts.engine)
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
            scopes = args.scope or [s.value for s in DEFAULT_KEY_SCOPES]
            key_id, key = accounts.add_api_key(args.username, args.name, scopes, args.station)
            stations = None if args.station is None else sorted(set(args.station))
            audit.add("cli", "api-key-add", args.username, key_id=key_id, name=args.name, scopes=sorted(set(scopes)),
                      stations=stations)  # fmt: skip
            print(key)
        else:
            for u in accounts.users():
                print(f"{u.username:20} {u.role.value:9} {'active' if u.active else 'disabled'}")
    except AccountError as exc:
        raise SystemExit(f"error: {exc}") from exc
    return 0


def _server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for the plant network)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
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
    p.add_argument(
        "--runtime",
        choices=("onnx", "torch"),
        default="onnx",
        help=RUNTIME_HELP,
    )
    p.add_argument("--batch-size", type=int, default=8, help="the largest micro-batch when parts queue up")
    p.add_argument("--no-training", action="store_true", help="run no training jobs in this server")
    p.add_argument(
        "--ray-address",
        help="fit retraining jobs on this Ray cluster (ray start --head gives it) instead of this server's CPU",
    )
    p.add_argument(
        "--box-key",
        default=os.environ.get("HUOYAN_BOX_KEY"),
        help="this plant's .box.key, to open packages sealed for it (default: $HUOYAN_BOX_KEY; its passphrase "
        "in $HUOYAN_BOX_KEY_PASSPHRASE)",
    )


def add_commands(sub: Any) -> None:
    """Declare this group's commands on the ``huoyan`` parser."""
    from huoyan.store.accounts import Scope

    srv = sub.add_parser("serve", help="REST API and dashboard, hosting the stations of the given recipes")
    srv.add_argument("--recipe", action="append", help="host this recipe's station (repeat for several)")
    _server_options(srv)
    srv.set_defaults(func=cmd_serve)

    user = sub.add_parser("user", help="users of the server and their API keys")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    u_add = user_sub.add_parser("add", help="add a user (password from a prompt, $HUOYAN_PASSWORD or stdin)")
    u_add.add_argument("username", help="the new user's name")
    u_add.add_argument("--role", choices=("operator", "engineer", "admin"), required=True, help="what the user may do")
    u_set = user_sub.add_parser("set", help="change a user's role, enable or disable them, or set a password")
    u_set.add_argument("username", help="the user to change")
    u_set.add_argument("--role", choices=("operator", "engineer", "admin"), help="a new role")
    u_set.add_argument("--active", choices=("yes", "no"), help="no: the user can no longer log in")
    u_set.add_argument("--password", action="store_true", help="set a new password")
    u_key = user_sub.add_parser("key", help="make an API key acting as this user (printed once)")
    u_key.add_argument("username", help="the user the key acts as")
    u_key.add_argument("--name", required=True, help="what the key is for")
    u_key.add_argument(
        "--scope",
        action="append",
        choices=[s.value for s in Scope],
        help="what the key may do within the user's role (repeat; default: upload only)",
    )
    u_key.add_argument(
        "--station",
        action="append",
        help="a station the key may act for (repeat; default: any); for upload and station keys, "
        "e.g. the key of one line's PC",
    )
    u_list = user_sub.add_parser("list", help="list users")
    for p in (u_add, u_set, u_key, u_list):
        database_options(p)
        p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user.set_defaults(func=cmd_user)

    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser(
        "verify",
        help="check the audit trail and every station's record and review chains; exit 1 if any was tampered with",
    )
    verify.add_argument("--station", help="check this station's record chain only")
    verify.add_argument(
        "--checkpoint", action="append", help="a signed checkpoint the chains must still pass through (repeatable)"
    )
    verify.add_argument("--public-key", help="the .pub of the plant that signed the checkpoints")
    database_options(verify)
    checkpoint = audit_sub.add_parser(
        "checkpoint", help="verify everything, then sign the heads of the audit trail and every chain"
    )
    checkpoint.add_argument("--key", required=True, help="the plant's signing key (.key), kept off the servers")
    checkpoint.add_argument("--passphrase-env", help="environment variable holding the key's passphrase")
    checkpoint.add_argument("--out", help="file to write (default: <data-dir>/checkpoints/checkpoint-<time>.json)")
    database_options(checkpoint)
    audit.set_defaults(func=cmd_audit)
