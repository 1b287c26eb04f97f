"""Engines and migrations: SQLite in WAL mode by default, PostgreSQL when a URL says so."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session

ENV_URL = "HUOYAN_DATABASE_URL"
MIGRATIONS = Path(__file__).with_name("migrations")


class DatabaseConfigError(ValueError):
    """The database URL cannot be used."""


def resolve_url(url: str | None, data_dir: Path | None = None) -> str:
    """The URL to use: explicit, then $HUOYAN_DATABASE_URL, then SQLite in ``data_dir``."""
    url = url or os.environ.get(ENV_URL)
    if url:
        if url.startswith("postgresql://"):
            # SQLAlchemy's default PostgreSQL driver is psycopg2; we ship psycopg 3.
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url
    folder = data_dir or Path("huoyan-data")
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'huoyan.db').resolve()}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers (records CLI, dashboard) run beside the station; FULL syncs each
    # commit so a power cut, not only a killed process, keeps every committed record.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str, busy_timeout_s: float = 5.0) -> Engine:
    """An engine that survives server restarts (pre-ping) and, for SQLite, waits on locks."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseConfigError(f"not a database URL: {url!r}") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": max(1, int(busy_timeout_s))})
    raise DatabaseConfigError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql")


def put_row(
    session: Session, table: Any, values: Mapping[str, Any], keys: Sequence[str], update: Sequence[str] = ()
) -> None:
    """Insert ``values`` as a row of ``table``, or where a row with the same ``keys`` (a
    unique index) is there already, set its ``update`` columns (none: leave it as it is).

    One statement (INSERT ... ON CONFLICT), not a select followed by an insert: two writers
    of the same new row (stations starting together that share a model) would both find
    none, and the second insert would fail on the unique index. With ON CONFLICT the second
    waits for the first to commit and then keeps or updates its row."""
    # Each dialect's own insert (their ON CONFLICT clauses are alike but not shared).
    build: Any = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = build(table).values(**values)
    if update:
        statement = statement.on_conflict_do_update(
            index_elements=list(keys), set_={column: statement.excluded[column] for column in update}
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    session.execute(statement)


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


# Any fixed number: the key of the PostgreSQL advisory lock that migrations take turns on.
_MIGRATION_LOCK = 0x487579616E


@contextmanager
def _migrating_alone(engine: Engine) -> Iterator[None]:
    """Hold PostgreSQL's advisory lock for migrations: the stations of a new line, started
    together, would each create the schema at once and all but one fail. The lock is held
    by a connection of its own (the migration's transaction is Alembic's) and goes with it
    if the process dies. SQLite needs none: its writers take turns on the file."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock:
        lock.execute(text("select pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
        try:
            yield
        finally:
            lock.execute(text("select pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Bring the schema to ``revision`` and return the revision now in force."""
    with _migrating_alone(engine):
        command.upgrade(_alembic_config(engine), revision)
    return current_revision(engine) or ""


def downgrade(engine: Engine, revision: str) -> str:
    """Take the schema back to ``revision`` (an older release's), keeping what that schema can hold."""
    with _migrating_alone(engine):
        command.downgrade(_alembic_config(engine), revision)
    return current_revision(engine) or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config(create_engine("sqlite://"))).get_current_head()
    assert head is not None
    return head
