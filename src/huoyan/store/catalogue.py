"""Defect types per product: the catalogue reviewers pick from.

Reviewers typing types by hand write "scratch", "Scratch" and "scrach" for one defect, and
every report and retraining set then counts three. An engineer keeps each product's list
of defect types here (plant-wide, in the database); once a product has one, a review of
its parts names a type from it or none, and the dashboard offers the list to pick from.
A product without a list takes any type, as before.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from huoyan.core.text import Message
from huoyan.store.schema import PlantSettingRow, StationRow
from huoyan.store.settings import update_setting

KEY = "defect-types"


def _all(s: Session) -> dict[str, list[str]]:
    row = s.get(PlantSettingRow, KEY)
    return {str(k): [str(t) for t in v] for k, v in (row.value if row is not None else {}).items()}  # type: ignore[attr-defined]


def defect_types(engine: Engine, product: str) -> list[str]:
    """The product's defect types, in the engineer's order (empty: any type is taken)."""
    with Session(engine) as s:
        return _all(s).get(product, [])


def product_of(session: Session, station: str) -> str | None:
    return session.scalar(select(StationRow.product).where(StationRow.id == station))


def station_defect_types(engine: Engine, station: str) -> tuple[str | None, list[str]]:
    """The product a station makes and its defect types."""
    with Session(engine) as s:
        product = product_of(s, station)
        return product, (_all(s).get(product, []) if product else [])


def set_defect_types(engine: Engine, product: str, types: list[str], by: str) -> list[str]:
    """Keep the product's list (trimmed, one NFC spelling, repeats dropped, order kept)."""
    clean: list[str] = []
    for t in types:
        name = unicodedata.normalize("NFC", " ".join(t.split()))
        if name and name.casefold() not in {c.casefold() for c in clean}:
            clean.append(name)

    def change(current: dict[str, Any]) -> dict[str, Any]:
        kept = {name: listed for name, listed in current.items() if name != product}
        return {**kept, product: clean} if clean else kept

    update_setting(engine, KEY, change, by)
    return clean


def check_label(session: Session, station: str, label: str) -> Message | None:
    """Why ``label`` is not a type of the station's product (None if it is, or if the
    product keeps no list)."""
    product = product_of(session, station)
    types = _all(session).get(product, []) if product else []
    if types and label not in types:
        return Message(
            "'{label}' is not a defect type of {product}; its types are: {types}",
            label=label, product=product, types=", ".join(types),
        )  # fmt: skip
    return None
