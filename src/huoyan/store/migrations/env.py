"""Alembic environment: runs against the engine handed over by ``huoyan.store.database``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from huoyan.store.schema import Base

config = context.config
engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
