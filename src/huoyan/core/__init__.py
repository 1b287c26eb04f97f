"""Small typed models that every stage of Huoyan depends on (and nothing else)."""

from huoyan.core.models import (
    Calibration,
    Frame,
    InspectionResult,
    ModelCard,
    Region,
    Verdict,
)

__all__ = ["Calibration", "Frame", "InspectionResult", "ModelCard", "Region", "Verdict"]
