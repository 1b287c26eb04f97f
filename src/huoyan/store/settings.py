"""The plant's settings: small JSON values by key (the shift calendar, counter resets,
how far evidence retention has gone), each with who set it and when."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from huoyan.store.database import put_row
from huoyan.store.schema import PlantSettingRow


def read_setting(engine: Engine, key: str) -> dict[str, Any] | None:
    """The setting's value, or None if it was never set."""
    with Session(engine) as s:
        row = s.get(PlantSettingRow, key)
        return dict(row.value) if row is not None else None


def update_setting(
    engine: Engine, key: str, change: Callable[[dict[str, Any]], dict[str, Any]], by: str
) -> dict[str, Any]:
    """Set the value to ``change(current value, {} if unset)`` in one transaction that
    holds the row, so two writers of different parts of a value do not lose each other's."""
    now = datetime.now(UTC)
    with Session(engine) as s, s.begin():
        # An unset key is set to {} first (kept if another writer's row is there), so the
        # row exists to be held: two first writers cannot both insert it.
        put_row(s, PlantSettingRow, {"key": key, "value": {}, "updated_by": by, "updated_at": now}, ["key"])
        row = s.get_one(PlantSettingRow, key, with_for_update=True)
        value = change(dict(row.value))
        row.value, row.updated_by, row.updated_at = value, by, now
    return value
