"""Rolling-bearing defect frequencies from geometry and shaft speed.

For a bearing with ``n`` rolling elements of diameter ``d`` on pitch diameter ``D``
and contact angle ``phi``, with the inner ring turning at ``fr`` Hz and the outer
ring fixed (the usual case), the kinematic frequencies (e.g. Randall & Antoni,
"Rolling element bearing diagnostics — A tutorial", MSSP 25 (2011), eq. 1-4) are

    FTF  = fr/2 (1 - d/D cos phi)                 cage (fundamental train)
    BPFO = n fr/2 (1 - d/D cos phi)               ball pass, outer race
    BPFI = n fr/2 (1 + d/D cos phi)               ball pass, inner race
    BSF  = D fr/(2 d) (1 - (d/D cos phi)^2)       ball spin (a ball defect strikes
                                                  both races: 2 x BSF)

Rolling elements slip by 1-2 %, so measured lines sit near, not at, these values.
The shipped geometries are the deep-groove bearings of common test rigs (the CWRU rig
uses the SKF 6205-2RS JEM at the drive end and the 6203-2RS JEM at the fan end;
dimensions as published by the CWRU Bearing Data Center, in inches there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

INCH_MM = 25.4


class BearingGeometry(BaseModel):
    """A rolling bearing's geometry, as a recipe or the CLI gives it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="custom", description="designation, e.g. 'SKF 6205'")
    rolling_elements: int = Field(ge=3, le=100, description="number of balls or rollers")
    element_diameter_mm: float = Field(gt=0, description="ball or roller diameter d")
    pitch_diameter_mm: float = Field(gt=0, description="pitch diameter D")
    contact_angle_deg: float = Field(default=0.0, ge=0, lt=90)

    @model_validator(mode="after")
    def _elements_fit_on_the_pitch(self) -> BearingGeometry:
        if self.element_diameter_mm >= self.pitch_diameter_mm:
            raise ValueError("element_diameter_mm must be smaller than pitch_diameter_mm")
        return self

    def frequencies(self, shaft_hz: float) -> DefectFrequencies:
        """The defect frequencies at ``shaft_hz`` (inner ring turning, outer ring fixed)."""
        if not shaft_hz > 0:
            raise ValueError(f"shaft speed must be positive, got {shaft_hz} Hz")
        ratio = self.element_diameter_mm / self.pitch_diameter_mm * math.cos(math.radians(self.contact_angle_deg))
        n = self.rolling_elements
        return DefectFrequencies(
            shaft=shaft_hz,
            ftf=shaft_hz / 2 * (1 - ratio),
            bpfo=n * shaft_hz / 2 * (1 - ratio),
            bpfi=n * shaft_hz / 2 * (1 + ratio),
            bsf=self.pitch_diameter_mm * shaft_hz / (2 * self.element_diameter_mm) * (1 - ratio**2),
        )


@dataclass(frozen=True, slots=True)
class DefectFrequencies:
    """Shaft speed and the bearing's defect frequencies, Hz."""

    shaft: float
    ftf: float
    bpfo: float
    bpfi: float
    bsf: float


def _inches(name: str, n: int, d_in: float, pitch_in: float) -> BearingGeometry:
    return BearingGeometry(
        name=name, rolling_elements=n, element_diameter_mm=d_in * INCH_MM, pitch_diameter_mm=pitch_in * INCH_MM
    )


BEARINGS: dict[str, BearingGeometry] = {
    "6205": _inches("SKF 6205-2RS JEM", 9, 0.3126, 1.537),
    "6203": _inches("SKF 6203-2RS JEM", 8, 0.2656, 1.122),
}


def bearing(name: str) -> BearingGeometry:
    """A shipped geometry by designation (``6205``, ``SKF 6205``, ``6205-2RS``)."""
    key = name.upper().replace("SKF", "").strip().split("-")[0].strip()
    try:
        return BEARINGS[key]
    except KeyError:
        raise ValueError(
            f"bearing {name!r} is not shipped (shipped: {', '.join(sorted(BEARINGS))}); "
            "give its geometry (rolling_elements, element_diameter_mm, pitch_diameter_mm, contact_angle_deg)"
        ) from None
