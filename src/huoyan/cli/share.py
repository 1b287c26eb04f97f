"""`huoyan keys` and `huoyan pkg`: a plant's signing keys, its trust store, signed packages.

Every export, import and refusal, and every key trusted, goes to the audit trail of the
database named by ``--db`` (or ``--recipe``)."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import Any

from huoyan.cli.common import audit_log, data_dir_of, database_options, open_database_or_exit, parse_since

TRUST_FILE = "trust.json"


def _audit(args: argparse.Namespace) -> Any:
    from huoyan.store.database import upgrade

    engine = open_database_or_exit(args)
    upgrade(engine)
    return audit_log(args, engine)


def _trust_path(args: argparse.Namespace) -> Path:
    return Path(args.trust) if args.trust else Path(args.data_dir or "huoyan-data") / TRUST_FILE


def cmd_keys(args: argparse.Namespace) -> int:
    from huoyan.share.keys import KeyError_, Role, TrustStore, new_keypair, passphrase_from

    try:
        if args.keys_command == "new":
            private, public = new_keypair(args.name, Path(args.dir), passphrase_from(args.passphrase_env))
            print(f"private key {private} (keep it on this plant's signing machine)\npublic key {public}")
            return 0
        path = _trust_path(args)
        store = TrustStore.load(path)
        if args.keys_command == "trust":
            box = Path(args.box_key).read_bytes() if args.box_key else None
            entry = store.trust(args.name, Path(args.public_key).read_bytes(), [Role(r) for r in args.role], box)
            store.save(path)
            _audit(args).add(
                getpass.getuser(), "key-trusted", entry.name, fingerprint=entry.fingerprint, roles=args.role
            )
        for k in store.keys:
            print(f"{k.name:20} {k.fingerprint[:16]}…  {', '.join(r.value for r in k.roles)}")
    except (KeyError_, OSError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    return 0


def _selection(args: argparse.Namespace, engine: Any) -> Any:
    """The records to carry, from the export's options (None without ``--records``)."""
    from huoyan.share.records import RecordSelection, Redaction, pseudonym_key
    from huoyan.store.audit import audit_key
    from huoyan.store.blobs import BlobStore
    from huoyan.store.records import RecordFilter, data_paths

    if not args.records:
        return None
    try:
        policy = Redaction.parse(args.redact)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from exc
    data_dir = data_dir_of(args)
    where = RecordFilter(
        station=args.station,
        since=parse_since(args.since),
        until=parse_since(args.until, "--until"),
        verdict=args.verdict,
    )
    blobs = BlobStore(data_paths(data_dir)[0]) if args.images else None
    return RecordSelection(engine, where, args.limit, blobs, policy, pseudonym_key(audit_key(data_dir)))


def _extras(args: argparse.Namespace, engine: Any) -> dict[str, bytes | Path]:
    """Files carried beside the model: a station's frozen control limits (``--spc-of``),
    the recipe's golden templates (``--with-templates``)."""
    from huoyan.core.recipe import load_recipe
    from huoyan.share.limits import FILE, limits_file

    extras: dict[str, bytes | Path] = {FILE: limits_file(engine, args.spc_of)} if args.spc_of else {}
    if args.with_templates:
        recipe = load_recipe(Path(args.recipe_file)) if args.recipe_file else None
        if recipe is None or recipe.templates is None:
            raise ValueError("--with-templates needs --recipe-file naming a recipe with a 'templates' folder")
        extras.update({f"templates/{p.name}": p for p in sorted(recipe.templates.folder.iterdir()) if p.is_file()})
    return extras


def cmd_pkg(args: argparse.Namespace) -> int:
    from huoyan.share.keys import KeyError_, TrustStore, box_private, passphrase_from
    from huoyan.share.package import PackageRefused, export_package, import_audited

    who = getpass.getuser()
    audit = _audit(args)
    if args.pkg_command == "pseudonym":
        from huoyan.share.records import pseudonym, pseudonym_key
        from huoyan.store.audit import audit_key

        print(pseudonym(pseudonym_key(audit_key(data_dir_of(args))), args.kind, args.value))
        return 0
    trust = TrustStore.load(_trust_path(args))
    if args.pkg_command == "export":
        recipient = None
        if args.seal_for:
            recipient = trust.named(args.seal_for)
            if recipient is None:
                raise SystemExit(f"error: {args.seal_for} is not in the trust store {_trust_path(args)}")
        try:
            manifest = export_package(
                Path(args.out),
                name=args.name,
                version=args.version,
                publisher=args.publisher,
                private_key=Path(args.key),
                passphrase=passphrase_from(args.passphrase_env),
                model=Path(args.model) if args.model else None,
                recipe=Path(args.recipe_file) if args.recipe_file else None,
                exported_by=who,
                valid_days=args.valid_days,
                seal_for=recipient,
                records=_selection(args, audit.engine),
                extras=_extras(args, audit.engine),
            )
        except (KeyError_, OSError, ValueError) as exc:
            raise SystemExit(f"error: {exc}") from exc
        audit.add(
            who, "package-exported", f"{manifest.name} v{manifest.version}", files=len(manifest.files),
            sealed_for=args.seal_for, records=manifest.records,
        )  # fmt: skip
        carried = f", {manifest.records['count']} records" if manifest.records else ""
        print(f"signed package {args.out}: {manifest.name} v{manifest.version}, {len(manifest.files)} files{carried}")
        return 0
    try:
        box = box_private(Path(args.box_key), passphrase_from(args.passphrase_env)) if args.box_key else None
    except KeyError_ as exc:
        raise SystemExit(f"error: {exc}") from exc
    try:
        target = import_audited(Path(args.package), trust, Path(args.into), audit, who, str(args.package), box)
    except PackageRefused as exc:
        raise SystemExit(f"refused: {exc}") from exc
    except OSError as exc:  # verified, but it could not be copied in (a full disk, a folder in the way)
        raise SystemExit(f"error: not installed: {exc}") from exc
    print(f"installed in {target}")
    return 0


def add_commands(sub: Any) -> None:
    keys = sub.add_parser("keys", help="this plant's signing keys and the trust store of other plants' keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="make an ECDSA P-256 key pair (<name>.key, <name>.pub)")
    new.add_argument("name", help="the key's name, e.g. this plant's (plant-a)")
    new.add_argument("--dir", default=".", help="folder to write the two files to (default: here)")
    new.add_argument("--passphrase-env", help="environment variable holding the private key's passphrase")
    trust = keys_sub.add_parser("trust", help="trust another plant's public key for some roles")
    trust.add_argument("name", help="who holds the key, e.g. plant-a")
    trust.add_argument("public_key", help="the .pub file")
    trust.add_argument(
        "--role", action="append", required=True, choices=["publish-models", "receive-data"],
        help="what the key's holder is trusted for (repeat for several)",
    )  # fmt: skip
    trust.add_argument("--box-key", help="its .box.pub: packages sealed for it are encrypted to this key")
    listed = keys_sub.add_parser("list", help="the trusted keys")
    for p in (trust, listed):
        p.add_argument("--trust", help="trust store file (default: <data-dir>/trust.json)")
        database_options(p)
    keys.set_defaults(func=cmd_keys)

    pkg = sub.add_parser("pkg", help="signed packages of a model and its recipe, between plants")
    pkg_sub = pkg.add_subparsers(dest="pkg_command", required=True)
    export = pkg_sub.add_parser("export", help="bundle and sign a model and its recipe")
    export.add_argument("out", help="package folder to make (must not exist)")
    export.add_argument("--name", required=True, help="package name, e.g. the recipe id")
    export.add_argument("--version", type=int, required=True, help="must grow with every package of this name")
    export.add_argument("--publisher", required=True, help="this plant's name, as others trust its key")
    export.add_argument("--key", required=True, help="this plant's private key (.key)")
    export.add_argument("--passphrase-env", help="environment variable holding the key's passphrase")
    export.add_argument("--model", help="model artifact (.safetensors) to include")
    export.add_argument("--recipe-file", help="recipe file to include (with its model)")
    export.add_argument(
        "--spc-of", metavar="STATION", help="include this station's frozen SPC control limits (with the model)"
    )
    export.add_argument(
        "--with-templates", action="store_true", help="include the golden templates of --recipe-file's 'templates'"
    )
    chosen = export.add_argument_group("records (sealed for a receiver only: --for)")
    chosen.add_argument("--records", action="store_true", help="include inspection records, with their reviews")
    chosen.add_argument("--station", help="records of this station only")
    chosen.add_argument("--since", help="records that arrived at or after this time (ISO, or an age: 7d)")
    chosen.add_argument("--until", help="records that arrived before this time (ISO, or an age: 1d)")
    chosen.add_argument("--verdict", choices=["OK", "NG", "ERROR"], help="records with this verdict only")
    chosen.add_argument("--limit", type=int, default=10_000, help="at most this many records, oldest first")
    chosen.add_argument("--images", action="store_true", help="include the images and anomaly maps they rest on")
    chosen.add_argument(
        "--redact", default="",
        help="what to do with part ids (part_ids=keep|strip|pseudonym, default pseudonym), reviewers' names "
        "(people=keep|strip|pseudonym, default strip) and reviewers' notes (comments=keep|strip, default strip), "
        "e.g. part_ids=strip,people=pseudonym",
    )  # fmt: skip
    export.add_argument("--valid-days", type=int, default=365, help="days until the package expires")
    export.add_argument("--for", dest="seal_for", help="seal (encrypt) for this trusted receiver (receive-data role)")
    imp = pkg_sub.add_parser("import", help="verify a package and install it; a refused one changes nothing")
    imp.add_argument("package", help="package folder (content/ and content.sig)")
    imp.add_argument("--into", required=True, help="folder of installed packages (<publisher>/<name>/<version>)")
    imp.add_argument("--box-key", help="this plant's .box.key, to open a package sealed for it")
    imp.add_argument("--passphrase-env", help="environment variable holding the box key's passphrase")
    named = pkg_sub.add_parser("pseudonym", help="the pseudonym this plant's exports give a part id or a name")
    named.add_argument("value", help="the part id (or reviewer's name, record key, source name)")
    named.add_argument("--kind", default="part", choices=["part", "person", "record", "source"], help="what it is")
    database_options(named)
    for p in (export, imp):
        p.add_argument("--trust", help="trust store file (default: <data-dir>/trust.json)")
        database_options(p)
    pkg.set_defaults(func=cmd_pkg)
