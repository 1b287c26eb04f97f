"""Frozen SPC control limits carried in a package (``spc/limits.json``), so that a station
at another plant judges its charts against the limits proven at the first one.

Exported: the newest frozen version of each of a station's metrics and charts. Imported
into a station (the dashboard's import, with a station named): each is frozen there as
that station's next version, with a note naming the package and who froze it first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from huoyan.quality.charts import Limits
from huoyan.store.quality import freeze_limits, newest_frozen

FILE = "spc/limits.json"


def limits_file(engine: Engine, station: str) -> bytes:
    """The station's newest frozen limits as the package's JSON; ValueError if it has none."""
    found = newest_frozen(engine, station)
    if not found:
        raise ValueError(f"station {station} has no frozen control limits to carry")
    return json.dumps(
        [{"metric": metric, "note": note, **limits.as_dict()} for metric, limits, note in found], indent=2
    ).encode()


def freeze_carried(engine: Engine, content: Path, station: str, who: str, source: str) -> list[dict[str, Any]]:
    """Freeze the limits a verified package carries for ``station``; what was frozen."""
    path = content / FILE
    if not path.is_file():
        return []
    frozen = []
    for item in json.loads(path.read_text()):
        carried = Limits.from_dict(item)
        note = f"from {source}: version {carried.version} frozen by {carried.frozen_by} at {carried.frozen_at}"
        mine = freeze_limits(engine, station, str(item["metric"]), carried, who, note)
        frozen.append({"metric": item["metric"], "chart": mine.chart, "version": mine.version})
    return frozen
