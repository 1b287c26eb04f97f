"""The score-drift alarm: is the model still seeing the line it was calibrated on?

Each OK part's score is compared, as it is decided, with a reference distribution of good
parts' scores (``huoyan.quality.drift``): the active model's calibration scores, kept in
its card, or, for a model whose card has none (made before they were kept, or a template
model), the first ``BASELINE`` OK scores it gave on this line. When the rank-normalised
EWMA leaves its limits the station raises the ``score-drift`` alarm, which goes where every
station alarm goes (records, the line's channels, the dashboard); it clears when the EWMA
comes back. A new model or threshold starts a new comparison.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from huoyan.core.models import Verdict
from huoyan.core.records import InspectionRecord, Severity, StationEvent
from huoyan.quality.drift import BASELINE, DriftMonitor, Reference

log = logging.getLogger(__name__)

KIND = "score-drift"


class DriftWatch:
    """A record listener: feeds OK scores to a ``DriftMonitor`` and raises or clears the alarm."""

    def __init__(
        self,
        station_id: str,
        emit: Callable[[StationEvent], None],
        card_of: Callable[[str], dict[str, Any] | None] = lambda sha: None,
        baseline: int = BASELINE,
    ) -> None:
        self.station_id = station_id
        self.emit = emit
        self.card_of = card_of  # the model card of a model (by sha256), if the station knows it
        self.baseline = baseline
        self._key: tuple[str | None, float | None] | None = None
        self._monitor: DriftMonitor | None = None
        self._collected: list[float] = []
        self._seen = 0

    def __call__(self, record: InspectionRecord) -> None:
        if record.verdict != Verdict.OK or record.score is None or record.channels:
            return  # a fused record has no single model's score to compare
        key = (record.model_sha256, record.threshold)
        if key != self._key:
            self._restart(key)
        self._seen += 1
        if self._monitor is None:
            self._collected.append(record.score)
            if len(self._collected) >= self.baseline:
                reference = Reference.of_scores(self._collected, threshold=record.threshold)
                self._monitor = DriftMonitor(reference)
                log.info("%s: drift reference from the first %d OK scores", self.station_id, len(self._collected))
            return
        change = self._monitor.add(record.score)
        if change is None:
            return
        m = self._monitor
        if change:
            side = "higher" if m.ewma > 0 else "lower"
            message = (
                f"OK scores have drifted {side} than the model's reference ({m.reference.size} good parts): "
                f"EWMA of rank-normalised scores {m.ewma:+.2f} beyond its limit after {self._seen} OK parts "
                "(lighting, focus, material or a model that no longer fits the parts)"
            )
            self.emit(StationEvent(station_id=self.station_id, kind=KIND, severity=Severity.ALARM, message=message))
        else:
            message = f"OK scores are back in line with the model's reference (EWMA {m.ewma:+.2f})"
            self.emit(
                StationEvent(
                    station_id=self.station_id, kind=KIND, severity=Severity.INFO, message=message, active=False
                )
            )

    def _restart(self, key: tuple[str | None, float | None]) -> None:
        if self._monitor is not None and self._monitor.out:
            self.emit(
                StationEvent(
                    station_id=self.station_id,
                    kind=KIND,
                    severity=Severity.INFO,
                    message="model or threshold changed; score drift is watched anew",
                    active=False,
                )
            )
        self._key, self._monitor, self._collected, self._seen = key, None, [], 0
        sha, threshold = key
        calibration = ((self.card_of(sha) if sha else None) or {}).get("calibration") or {}
        quantiles = calibration.get("score_quantiles")
        if quantiles:
            reference = Reference.of_quantiles(quantiles, int(calibration.get("n_calibration") or 0), threshold)
            self._monitor = DriftMonitor(reference)
