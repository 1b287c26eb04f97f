"""Vibration condition monitoring as a detector kind (``vibration``) on the detector contract.

Learned from healthy running only. Each window of one channel (``SignalWindow``) is
analysed (``analysis``: time-domain statistics, band energies, velocity RMS, the
envelope spectrum of its most impulsive band and each fault family's strength), and
its raw score is the distance of its features from healthy running (``scoring``). The
threshold is set by the same conformal calibration as the image detectors
(``huoyan.core.calibration``), on cross-fitted healthy scores (``scoring``: each
window scored by a scorer that never saw it or its overlapping neighbours). The
evidence of each window is a ``Condition`` with its diagnosis (``diagnosis``): the
fault family that rises above healthy running.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from pydantic import BaseModel, Field

from huoyan.core.calibration import calibrate
from huoyan.core.detector import Condition, NotFittedError, Parameters, Scores
from huoyan.core.models import ModelCard, SignalWindow
from huoyan.signals.analysis import Analysis, Settings, analyse
from huoyan.signals.bearings import BearingGeometry, bearing
from huoyan.signals.diagnosis import FAMILIES, diagnose
from huoyan.signals.features import ACCELERATION_UNITS, ISO_ZONES, iso_zone
from huoyan.signals.readers import Recording
from huoyan.signals.scoring import SCORERS, HealthyModel, cross_fitted_scores
from huoyan.signals.windows import window_samples, windows

_PARAMS = (
    "window_s",
    "hop_s",
    "sample_rate",
    "rpm",
    "bearing",
    "units",
    "machine_class",
    "n_bands",
    "min_band_hz",
    "max_envelope_hz",
    "min_band_share",
    "harmonics",
    "slip",
    "scorer",
    "min_rise_db",
    "min_z",
    "false_reject_rate",
    "confidence",
    "folds",
    "seed",
)
MIN_FIT_WINDOWS = 4  # healthy windows a scorer is fitted on, at the least


class VibrationDetails(BaseModel):
    """What a vibration model's card records of the model itself (``ModelCard.details``)."""

    sample_rate: float
    window_samples: int
    channel: str = Field(default="", description="the channel the healthy recordings were read from")
    features: list[str] = Field(description="the features scored, in order")
    bearing: dict[str, Any] | None = Field(description="the bearing geometry diagnosed")
    rpm: float | None = Field(description="shaft speed in the healthy recordings")
    defect_frequencies: dict[str, float] | None = Field(description="at that speed, Hz")
    healthy_velocity_rms_mm_s: float = Field(description="median over the healthy windows")
    healthy_iso_zone: str
    healthy_windows: int = Field(description="windows the model was fitted on (each also scored cross-fitted)")
    families: list[str] = Field(description="fault families it can diagnose")


def _geometry(value: str | dict[str, Any] | None) -> BearingGeometry | None:
    if value is None:
        return None
    if isinstance(value, str):
        return bearing(value)
    return BearingGeometry.model_validate(value)


class VibrationMonitor(Parameters):
    """Judge windows of one vibration channel against healthy running, and diagnose them.

    - ``window_s``, ``hop_s``: the windows it is fitted on and judges (seconds);
      ``sample_rate``: Hz (None: the training windows' rate); ``rpm``: shaft speed where
      a window carries none; ``bearing``: a shipped designation (``6205``, ``6203``) or
      a geometry (``BearingGeometry``'s fields), None for no bearing diagnosis;
      ``units``: of the acceleration (``g`` or ``m/s2``); ``machine_class``: for the
      ISO 20816 zone.
    - ``n_bands``: band energies; ``min_band_hz``, ``min_band_share``,
      ``max_envelope_hz``: the kurtogram's narrowest band, the least share of energy a
      band must hold, and the envelope spectrum's range; ``harmonics`` and ``slip``:
      lines per family and their tolerance (rolling elements slip 1-2 %).
    - ``scorer``: ``ledoit-wolf`` or ``diagonal``; ``min_rise_db``, ``min_z``: how far a
      family must rise above healthy running to be the diagnosis.
    - ``false_reject_rate``, ``confidence``: the threshold; ``folds``: time blocks of
      the cross-fitted calibration.
    """

    kind: ClassVar[str] = "vibration"
    PARAMS = _PARAMS
    names_defects: ClassVar[bool] = False
    judges_signals: ClassVar[bool] = True
    card_: ModelCard
    kept_: np.ndarray
    healthy_: HealthyModel
    healthy_mean_: np.ndarray
    healthy_std_: np.ndarray

    def __init__(
        self,
        window_s: float = 0.5,
        hop_s: float = 0.25,
        sample_rate: float | None = None,
        rpm: float | None = None,
        bearing: str | dict[str, Any] | None = None,
        units: str = "g",
        machine_class: str = "I",
        n_bands: int = 12,
        min_band_hz: float = 1000.0,
        max_envelope_hz: float = 1000.0,
        min_band_share: float = 0.01,
        harmonics: int = 3,
        slip: float = 0.02,
        scorer: str = "ledoit-wolf",
        min_rise_db: float = 6.0,
        min_z: float = 3.0,
        false_reject_rate: float = 0.005,
        confidence: float = 0.95,
        folds: int = 5,
        seed: int = 0,
    ) -> None:
        self.window_s = window_s
        self.hop_s = hop_s
        self.sample_rate = sample_rate
        self.rpm = rpm
        self.bearing = bearing
        self.units = units
        self.machine_class = machine_class
        self.n_bands = n_bands
        self.min_band_hz = min_band_hz
        self.max_envelope_hz = max_envelope_hz
        self.min_band_share = min_band_share
        self.harmonics = harmonics
        self.slip = slip
        self.scorer = scorer
        self.min_rise_db = min_rise_db
        self.min_z = min_z
        self.false_reject_rate = false_reject_rate
        self.confidence = confidence
        self.folds = folds
        self.seed = seed
        self._settings: Settings | None = None
        self._details: tuple[ModelCard, VibrationDetails] | None = None

    # -- parameters -------------------------------------------------------------------
    def _check_params(self) -> None:
        if not self.window_s > 0 or not self.hop_s > 0:
            raise ValueError("window_s and hop_s must be positive")
        if self.sample_rate is not None and not self.sample_rate > 0:
            raise ValueError("sample_rate must be positive")
        if self.rpm is not None and not self.rpm > 0:
            raise ValueError("rpm must be positive")
        if self.units not in ACCELERATION_UNITS:
            raise ValueError(f"units must be one of {', '.join(ACCELERATION_UNITS)}")
        if self.machine_class not in ISO_ZONES:
            raise ValueError(f"machine_class must be one of {', '.join(ISO_ZONES)}")
        if self.scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {', '.join(SCORERS)}")
        if not 1 <= self.n_bands <= 64 or not 1 <= self.harmonics <= 10:
            raise ValueError("n_bands must be in [1, 64] and harmonics in [1, 10]")
        if not 0 <= self.slip < 0.2 or not 0 <= self.min_band_share < 0.5:
            raise ValueError("slip must be in [0, 0.2) and min_band_share in [0, 0.5)")
        if not 2 <= self.folds <= 20:
            raise ValueError("folds must be in [2, 20]")
        _geometry(self.bearing)

    def _parameters_changed(self, names: set[str]) -> None:
        self._settings = None  # built from the parameters

    def settings(self) -> Settings:
        """What the analysis of a window depends on, built once per set of parameters
        (``score`` runs per window on a live line)."""
        if self._settings is None:
            self._settings = self._new_settings()
        return self._settings

    def _new_settings(self) -> Settings:
        return Settings(
            units=self.units,
            machine_class=self.machine_class,
            n_bands=self.n_bands,
            min_band_hz=self.min_band_hz,
            max_envelope_hz=self.max_envelope_hz,
            min_band_share=self.min_band_share,
            harmonics=self.harmonics,
            slip=self.slip,
            bearing=_geometry(self.bearing),
            rpm=self.rpm,
        )

    def for_machine(self, bearing: str | dict[str, Any] | None, machine_class: str | None) -> Self:
        """This model on the machine a station's recipe describes: the bearing must be the
        one it was fitted for (its defect lines are among the features), the ISO class
        may be the recipe's. ``ValueError`` names the recipe's field."""
        if bearing is not None:
            try:
                wanted = _geometry(bearing)
            except ValueError as exc:
                raise ValueError(f"machine.bearing: {exc}") from exc
            fitted = _geometry(self.bearing)
            if fitted is None or wanted is None or _dimensions(fitted) != _dimensions(wanted):
                has = "no bearing" if fitted is None else f"{fitted.name} {_dimensions(fitted)}"
                raise ValueError(
                    f"machine.bearing: the model was fitted for {has}, not {wanted.name if wanted else bearing} "
                    f"{_dimensions(wanted) if wanted else ''}; refit it with --bearing for this machine"
                )
        if machine_class is not None:
            if machine_class not in ISO_ZONES:
                raise ValueError(f"machine.machine_class: one of {', '.join(ISO_ZONES)}")
            self.set_params(machine_class=machine_class)
        return self

    # -- inputs -----------------------------------------------------------------------
    def _windows(self, samples: Sequence[Any], rate: float | None, length: int | None) -> list[SignalWindow]:
        if len(samples) == 0:
            raise ValueError("no windows given")
        out: list[SignalWindow] = []
        for i, w in enumerate(samples):
            what = f"window {i}" + (f" ({w.source} at {w.start_s:.3f} s)" if isinstance(w, SignalWindow) else "")
            if not isinstance(w, SignalWindow):
                raise ValueError(f"{what}: expected a SignalWindow, got {type(w).__name__}")
            x = w.samples
            if not isinstance(x, np.ndarray) or x.ndim != 1 or x.dtype.kind != "f":
                raise ValueError(f"{what}: expected 1-D float samples, got {getattr(x, 'shape', type(x).__name__)}")
            if not np.isfinite(x).all():
                raise ValueError(f"{what}: expected finite samples (NaN or inf found)")
            # Without a rate of the model's, every window at the first one's: one rate for all.
            expected_rate = rate if rate is not None else self.sample_rate or (out[0].sample_rate if out else None)
            if expected_rate is not None and abs(w.sample_rate - expected_rate) > 1e-6 * expected_rate:
                raise ValueError(f"{what}: expected {expected_rate:g} Hz, got {w.sample_rate:g} Hz")
            n = length if length is not None else window_samples(self.window_s, w.sample_rate)
            if x.size != n:
                raise ValueError(f"{what}: expected {n} samples ({self.window_s:g} s), got {x.size}")
            out.append(w)
        return out

    def windows_of(self, recording: Recording) -> list[SignalWindow]:
        """A recording cut into the windows this model judges."""
        return list(windows(recording, self.window_s, self.hop_s))

    # -- learning ---------------------------------------------------------------------
    def fit(self, samples: Sequence[Any], defect_samples: Sequence[Any] | None = None) -> Self:
        """Learn healthy running from windows of healthy recordings (``defect_samples``,
        windows of known faults, only add their scores' F1 threshold to the card)."""
        self._check_params()
        healthy = self._windows(samples, None, None)
        rate = healthy[0].sample_rate
        if len(healthy) < MIN_FIT_WINDOWS + 2:
            raise ValueError(
                f"at least {MIN_FIT_WINDOWS + 2} healthy windows are needed, got {len(healthy)}: "
                "record longer, or shorten window_s or hop_s"
            )
        settings = self.settings()
        analyses = [analyse(w, settings) for w in healthy]
        features = np.stack([a.features for a in analyses])
        kept = np.flatnonzero(np.isfinite(features).all(axis=0))
        cal_scores = cross_fitted_scores(healthy, features[:, kept], self.scorer, self.folds, MIN_FIT_WINDOWS)
        self.kept_ = kept
        self.healthy_ = HealthyModel.fit(features[:, kept], self.scorer)
        family = features[:, -len(FAMILIES) :]
        self.healthy_mean_ = family.mean(axis=0)
        self.healthy_std_ = family.std(axis=0)
        defect_scores = None
        if defect_samples:
            defect_scores = self._raw(
                np.stack([analyse(w, settings).features for w in self._windows(defect_samples, rate, None)])
            )
        calibration = calibrate(cal_scores, self.false_reject_rate, self.confidence, defect_scores)
        geometry = settings.bearing
        rpm = next((w.rpm for w in healthy if w.rpm is not None), self.rpm)
        v_rms = float(np.median([a.velocity_rms_mm_s for a in analyses]))
        names = settings.feature_names()
        details = VibrationDetails(
            sample_rate=rate,
            window_samples=healthy[0].samples.size,
            channel=healthy[0].channel if len({w.channel for w in healthy}) == 1 else "",
            features=[names[i] for i in kept],
            bearing=None if geometry is None else geometry.model_dump(),
            rpm=rpm,
            defect_frequencies=_frequencies(geometry, rpm),
            healthy_velocity_rms_mm_s=v_rms,
            healthy_iso_zone=iso_zone(v_rms, self.machine_class),
            healthy_windows=len(healthy),
            families=[f for f, m in zip(FAMILIES, self.healthy_mean_, strict=True) if np.isfinite(m)],
        )
        self.card_ = ModelCard.fitted(self.kind, self.seed, len(healthy), _digest(healthy), calibration, details)
        return self

    def _raw(self, features: np.ndarray) -> np.ndarray:
        chosen = features[:, self.kept_]
        if not np.isfinite(chosen).all():
            raise ValueError("expected every feature the model was fitted on (a window without its shaft speed?)")
        return self.healthy_.distance(chosen)

    # -- judging ----------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        return self._fitted().calibration.threshold

    def _fitted(self) -> ModelCard:
        card = getattr(self, "card_", None)
        if card is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted; call fit or load first")
        return card

    def prepare(self) -> Self:
        self._fitted()
        return self

    def details(self) -> VibrationDetails:
        """The card's details, read once per fitted or loaded card."""
        card = self._fitted()
        if self._details is None or self._details[0] is not card:
            self._details = (card, VibrationDetails.model_validate(card.details))
        return self._details[1]

    def score(self, samples: Sequence[Any]) -> Scores:
        """Raw scores and, per window, a ``Condition`` with its diagnosis."""
        details = self.details()
        windows = self._windows(samples, details.sample_rate, details.window_samples)
        settings = self.settings()
        analyses = [analyse(w, settings) for w in windows]
        raw = self._raw(np.stack([a.features for a in analyses]))
        names = settings.feature_names()
        return Scores(raw, [self._condition(a, names) for a in analyses])

    def _condition(self, a: Analysis, names: list[str]) -> Condition:
        features = {n: float(v) for n, v in zip(names, a.features, strict=True) if np.isfinite(v)}
        return Condition(
            features=features,
            measurements={
                "rms": 10 ** features["log_rms"],
                "peak": 10 ** features["log_peak"],
                "crest": features["crest"],
                "kurtosis": features["kurtosis"],
                "skewness": features["skewness"],
                "velocity_rms_mm_s": a.velocity_rms_mm_s,
                "envelope_kurtosis": a.envelope.kurtosis,
            },
            velocity_rms_mm_s=a.velocity_rms_mm_s,
            iso_zone=a.iso_zone,
            iso_limits=ISO_ZONES[self.machine_class],
            envelope_hz=a.envelope.frequencies,
            envelope=a.envelope.amplitudes,
            band_hz=a.envelope.band,
            diagnosis=diagnose(a.evidence, self.healthy_mean_, self.healthy_std_, self.min_rise_db, self.min_z),
        )

    # -- files ------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        from huoyan.core.artifact import write_artifact

        card = self._fitted()
        tensors = {
            "mean": self.healthy_.mean,
            "scale": self.healthy_.scale,
            "precision": self.healthy_.precision,
            "kept": self.kept_.astype(np.int64),
            "healthy_mean": self.healthy_mean_,
            "healthy_std": self.healthy_std_,
        }
        return write_artifact(path, self.kind, tensors, card, self.get_params())

    @classmethod
    def load(cls, path: str | Path, **_: Any) -> Self:
        from huoyan.core.artifact import ArtifactError, read_artifact

        tensors, card, params = read_artifact(path, cls.kind)
        model = cls(**{k: v for k, v in params.items() if k in _PARAMS})
        try:
            model.kept_ = tensors["kept"]
            model.healthy_ = HealthyModel(tensors["mean"], tensors["scale"], tensors["precision"])
            model.healthy_mean_, model.healthy_std_ = tensors["healthy_mean"], tensors["healthy_std"]
            details = VibrationDetails.model_validate(card.details)
        except (KeyError, ValueError) as exc:
            raise ArtifactError(f"{path}: not a complete vibration model ({exc})") from exc
        n = model.kept_.size
        healthy = model.healthy_
        if healthy.mean.shape != (n,) or healthy.precision.shape != (n, n) or len(details.features) != n:
            raise ArtifactError(f"{path}: the model's tensors contradict its card ({n} features)")
        model.card_ = card
        return model


def _dimensions(g: BearingGeometry) -> tuple[int, float, float, float]:
    """What makes two geometries the same bearing (their names may differ)."""
    return (
        g.rolling_elements,
        round(g.element_diameter_mm, 3),
        round(g.pitch_diameter_mm, 3),
        round(g.contact_angle_deg, 2),
    )


def _frequencies(geometry: BearingGeometry | None, rpm: float | None) -> dict[str, float] | None:
    if geometry is None or rpm is None:
        return None
    f = geometry.frequencies(rpm / 60)
    return {"shaft": f.shaft, "ftf": f.ftf, "bpfo": f.bpfo, "bpfi": f.bpfi, "bsf": f.bsf}


def _digest(windows: Sequence[SignalWindow]) -> str:
    h = hashlib.sha256()
    for w in windows:
        h.update(f"{w.sample_rate}:{w.samples.size}:".encode())
        h.update(np.ascontiguousarray(w.samples).tobytes())
    return h.hexdigest()
