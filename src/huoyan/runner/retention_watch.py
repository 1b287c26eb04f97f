"""The station's evidence retention (``storage.retention``), applied every hour.

Each hour's run removes the evidence files of the parts that expired since the last one
(``store.retention``), on the station's own blob store, and tells the station how much it
removed (an information event; nothing to acknowledge). The audit trail gets an entry
for every run that removed something.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from huoyan.core.recipe import Retention
from huoyan.core.records import Severity, StationEvent
from huoyan.runner.hourly import HourlyCheck
from huoyan.store.audit import AuditLog
from huoyan.store.blobs import BlobStore
from huoyan.store.retention import apply_retention

KIND = "retention"


class RetentionWatch(HourlyCheck):
    failures = (SQLAlchemyError, OSError)
    failed = "evidence retention did not run"

    def __init__(
        self,
        engine: Engine,
        blobs: BlobStore,
        station_id: str,
        rule: Retention,
        audit: AuditLog | None,
        emit: Callable[[StationEvent], None],
    ) -> None:
        super().__init__(station_id, emit, "huoyan-retention")
        self.engine = engine
        self.blobs = blobs
        self.rule = rule
        self.audit = audit

    def check(self, until: datetime) -> StationEvent | None:
        report = apply_retention(
            self.engine, self.blobs, self.station_id, self.rule, audit=self.audit, actor=f"station:{self.station_id}"
        )
        if not report.blobs_removed:
            return None
        message = (
            f"retention removed {report.blobs_removed} evidence files ({report.bytes_removed / 1e6:.1f} MB) "
            f"of {report.records} parts past storage.retention"
        )
        return StationEvent(
            station_id=self.station_id, kind=KIND, severity=Severity.INFO, message=message, active=False
        )
