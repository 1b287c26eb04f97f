"""The station's evidence retention (``storage.retention``), applied every hour.

Each hour's run removes the evidence files of the parts that expired since the last one
(``store.retention``), on the station's own blob store. What it removed goes to the audit
trail (an entry for every run that removed something) and the log, not to the station's
alarms: a routine hourly clean-up is nothing for an operator to acknowledge.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from huoyan.core.recipe import Retention
from huoyan.core.records import StationEvent
from huoyan.runner.hourly import HourlyCheck
from huoyan.store.audit import AuditLog
from huoyan.store.blobs import BlobStore
from huoyan.store.retention import apply_retention

log = logging.getLogger(__name__)


class RetentionWatch(HourlyCheck):
    """Applies the station's retention rule when the first part of a new hour arrives."""

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
        if report.blobs_removed:
            log.info(
                "%s: retention removed %d evidence files (%.1f MB) of %d parts past storage.retention",
                self.station_id,
                report.blobs_removed,
                report.bytes_removed / 1e6,
                report.records,
            )
        return None
