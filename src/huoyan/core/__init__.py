"""Small typed models that every stage of Huoyan depends on (and nothing else)."""

from huoyan.core.models import (
    Calibration,
    Frame,
    InspectionResult,
    ModelCard,
    Region,
    Verdict,
)
from huoyan.core.records import Arrival, InspectionRecord, Severity, StationEvent, StoredRecord

__all__ = [
    "Arrival",
    "Calibration",
    "Frame",
    "InspectionRecord",
    "InspectionResult",
    "ModelCard",
    "Region",
    "Severity",
    "StationEvent",
    "StoredRecord",
    "Verdict",
]
