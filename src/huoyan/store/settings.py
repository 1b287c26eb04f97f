"""The plant's settings: small JSON values by key (the shift calendar, counter resets,
how far evidence retention has gone), each with who set it and when."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

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
    with Session(engine) as s, s.begin():
        row = s.get(PlantSettingRow, key, with_for_update=True)
        value = change(dict(row.value) if row is not None else {})
        now = datetime.now(UTC)
        if row is None:
            s.add(PlantSettingRow(key=key, value=value, updated_by=by, updated_at=now))
        else:
            row.value, row.updated_by, row.updated_at = value, by, now
    return value
