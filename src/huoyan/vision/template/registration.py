"""Registration: bring the golden template onto the tested image, or say why it cannot.

Coarse to fine on an image pyramid: phase correlation on the coarsest level finds the
translation (it tolerates large shifts and illumination changes), then OpenCV's ECC
(enhanced correlation coefficient, Evangelidis & Psarakis 2008) refines the chosen
motion model (translation, Euclidean, affine or perspective) level by level up to
``finest_px``. ECC maximises a correlation that ignores gain and offset, so a re-lit
part registers as well as the original. The warp maps tested-image pixels to template
pixels; ``warp_template`` resamples the template (and anything in its frame) into the
tested image's frame, so defect boxes are in the tested image's own coordinates.

A registration that does not converge, correlates poorly or implies an implausible
motion raises ``RegistrationError`` with the reason: the station records an ERROR,
never a flood of false defects from a misaligned comparison.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

MOTIONS = {
    "translation": cv2.MOTION_TRANSLATION,
    "euclidean": cv2.MOTION_EUCLIDEAN,
    "affine": cv2.MOTION_AFFINE,
    "perspective": cv2.MOTION_HOMOGRAPHY,
}
COARSEST_PX = 160  # phase correlation's level: large shifts are a few pixels here
ELASTIC_SHARE = 0.25  # largest residual displacement, as a share of elastic_px
TURN_CHECK_BELOW = 0.9  # the coarse correlation under which a turn or scale is looked for


class RegistrationError(ValueError):
    """The tested image could not be aligned with its template."""


@dataclass(frozen=True, slots=True)
class Alignment:
    """A 3x3 warp from tested-image pixels to template pixels, and how well it fits
    (ECC's correlation coefficient at the finest level, 1 is perfect)."""

    warp: np.ndarray
    correlation: float
    # Smooth residual displacement after the warp (``elastic_px``): tested-image pixel x
    # is template pixel warp(x + flow(x)); full-resolution pixels, on a coarse grid.
    flow: np.ndarray | None = None

    @property
    def shift(self) -> tuple[float, float]:
        return float(self.warp[0, 2]), float(self.warp[1, 2])

    @property
    def rotation_deg(self) -> float:
        return math.degrees(math.atan2(self.warp[1, 0] - self.warp[0, 1], self.warp[0, 0] + self.warp[1, 1]))

    @property
    def scale(self) -> float:
        return float(math.sqrt(abs(np.linalg.det(self.warp[:2, :2]))))


@dataclass(frozen=True, slots=True)
class Registrar:
    """How to register (the template detector's parameters, gathered)."""

    motion: str = "affine"
    finest_px: int = 256
    min_correlation: float = 0.7
    max_shift: float = 0.25  # of the image's longer side
    max_rotation_deg: float = 10.0
    max_scale_change: float = 0.2
    iterations: int = 40
    elastic_px: float = 0.0  # smoothing scale of the residual displacement field; 0: rigid only

    def check(self) -> None:
        if self.motion not in MOTIONS:
            raise ValueError(f"registration motion {self.motion!r}: choose one of {', '.join(MOTIONS)}")
        if self.finest_px < COARSEST_PX:
            raise ValueError(f"registration finest_px must be at least {COARSEST_PX}")
        if not 0 < self.min_correlation < 1:
            raise ValueError("min_correlation must be in (0, 1)")

    def register(self, image: np.ndarray, template: np.ndarray) -> Alignment:
        """Align ``template`` (gray uint8) to ``image`` (gray uint8, the same size)."""
        if image.shape != template.shape:
            h, w = image.shape[:2]
            th, tw = template.shape[:2]
            raise RegistrationError(f"image is {w}x{h} px but its template is {tw}x{th} px")
        levels = _pyramid_factors(max(image.shape), self.finest_px)
        motion = MOTIONS[self.motion]
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, self.iterations, 1e-4)
        side = max(image.shape)

        def refine(
            a: np.ndarray, b: np.ndarray, start: np.ndarray, before: float | None = None, kind: int = motion
        ) -> tuple[float, np.ndarray]:
            """ECC from ``start`` (whose correlation is ``before``, if known); never worse
            than ``start`` itself, by one measure (the correlation of the whole image,
            unblurred: ECC's own is over the overlap it chose). Gauss-Newton steps on
            sharp edges can overshoot into a worse optimum, and a pattern of parallel
            stripes has none (it slides along itself): then the start stands."""
            if before is None:
                before = _correlation(a, b, start)
            n = 3 if kind == cv2.MOTION_HOMOGRAPHY else 2
            try:
                _, found = cv2.findTransformECC(  # type: ignore[call-overload]  # no mask, with a blur
                    a, b, start[:n].copy(), kind, criteria, None, 5
                )
            except cv2.error:
                return before, start
            warp = start.copy()
            warp[:n] = found
            after = _correlation(a, b, warp)
            return (after, warp) if after > before else (before, start)

        coarse = levels[0]
        a, b = _shrink(image, coarse), _shrink(template, coarse)
        # Starts on the coarsest level: none; phase correlation's shift (robust to large
        # shifts, but on a periodic pattern it may pick a neighbouring period); and, where
        # the motion may turn the part, the turn and scale that the Fourier-Mellin
        # transform finds, then the shift after them (a few degrees move a 640 px board's
        # corners further than its traces are apart).
        starts = [np.eye(3, dtype=np.float32)]
        window = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_32F)
        shift = _shift(a, b, window)
        if shift is not None and math.hypot(*shift) * coarse <= self.max_shift * side:
            starts.append(_similarity(a.shape, 0.0, 1.0, shift))
        scored = [(_correlation(a, b, w), w) for w in starts]
        # A part that a shift alone fits well is not turned: the turn is only looked for
        # when it is not.
        if motion != cv2.MOTION_TRANSLATION and max(c for c, _ in scored) < TURN_CHECK_BELOW:
            for angle, scale in _turns(a, b, window, self.max_rotation_deg, self.max_scale_change):
                turned = _similarity(a.shape, angle, scale, (0.0, 0.0))
                moved = _shift(a, _warped(b, turned, a.shape), window)
                if moved is not None:
                    warp = _similarity(a.shape, angle, scale, moved)
                    scored.append((_correlation(a, b, warp), warp))
        # The start that fits better is refined: first as a translation, then with the full motion.
        before, start = max(scored, key=lambda cw: cw[0])
        if motion != cv2.MOTION_TRANSLATION:
            before, start = refine(a, b, start, before, cv2.MOTION_TRANSLATION)
        correlation, warp = refine(a, b, start, before)
        previous = coarse
        for factor in levels[1:]:
            warp = _rescale(warp, previous / factor)
            previous = factor
            a, b = _shrink(image, factor), _shrink(template, factor)
            correlation, warp = refine(a, b, warp)
        warp = _rescale(warp, previous)
        alignment = Alignment(warp, float(correlation))
        self._plausible(alignment, max(image.shape))
        if self.elastic_px > 0:
            alignment = Alignment(warp, float(correlation), self._residual_flow(image, template, warp, coarse))
        return alignment

    def _residual_flow(self, image: np.ndarray, template: np.ndarray, warp: np.ndarray, factor: float) -> np.ndarray:
        """What the global warp leaves, as a smooth displacement field: DIS optical flow
        (Kroeger et al. 2016) on the coarse level, blurred at ``elastic_px`` so that it
        follows the part's stretch and never a defect a few pixels wide."""
        small = cv2.resize(image, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA)
        scaled = _rescale(warp, 1 / factor)
        shape = small.shape
        moved = _warped(cv2.resize(template, (shape[1], shape[0]), interpolation=cv2.INTER_AREA), scaled, shape)
        flow = _flow_engine().calc(small, moved, None)
        # Optical flow is unreliable where the pattern gives it nothing to hold on to
        # (flat laminate, along a trace, at the border): a stretch moves a pixel by a
        # small part of the distance over which it varies, so larger vectors are cut
        # to that before the field is smoothed.
        limit = ELASTIC_SHARE * self.elastic_px / factor
        np.clip(flow, -limit, limit, out=flow)
        flow = cv2.GaussianBlur(flow, (0, 0), max(0.5, self.elastic_px / factor))
        return flow * factor

    def _plausible(self, alignment: Alignment, side: int) -> None:
        if not alignment.correlation >= self.min_correlation:
            raise RegistrationError(
                f"image does not match its template (correlation {alignment.correlation:.2f} "
                f"< {self.min_correlation:.2f} after alignment)"
            )
        dx, dy = alignment.shift
        if math.hypot(dx, dy) > self.max_shift * side:
            raise RegistrationError(f"implausible alignment: shift of {dx:.0f}, {dy:.0f} px")
        if abs(alignment.rotation_deg) > self.max_rotation_deg:
            raise RegistrationError(f"implausible alignment: rotation of {alignment.rotation_deg:.1f} degrees")
        if abs(alignment.scale - 1) > self.max_scale_change:
            raise RegistrationError(f"implausible alignment: scale of {alignment.scale:.2f}")


def _pyramid_factors(side: int, finest_px: int) -> list[float]:
    """Downscaling factors, coarsest first: the power of two that brings the longer side
    near ``COARSEST_PX``, the powers of two below it, and last the factor that brings it
    to ``finest_px`` exactly (1 = full resolution). ECC's cost grows with the pixels of
    its level, so the finest level need not be a power of two."""
    finest = max(1.0, side / finest_px)
    coarsest = 1.0
    while side / (coarsest * 2) >= COARSEST_PX:
        coarsest *= 2
    if coarsest <= finest:
        return [finest]
    factors = [coarsest]
    f = coarsest / 2
    while f > finest:
        factors.append(f)
        f /= 2
    factors.append(finest)
    return factors


def _shrink(image: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1:
        return image.astype(np.float32)
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32)


def _rescale(warp: np.ndarray, ratio: float) -> np.ndarray:
    """The same warp for an image ``ratio`` times larger (pixel coordinates scale by it)."""
    if ratio == 1:
        return warp
    s = np.diag([ratio, ratio, 1.0]).astype(np.float32)
    return (s @ warp @ np.linalg.inv(s)).astype(np.float32)


_FLOW = threading.local()


def _flow_engine() -> Any:
    """One DIS instance per thread (it is not safe to share between threads)."""
    engine = getattr(_FLOW, "engine", None)
    if engine is None:
        engine = _FLOW.engine = cv2.DISOpticalFlow_create(  # type: ignore[attr-defined]  # not in the stubs
            cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST
        )
    return engine


@functools.lru_cache(maxsize=8)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return xs, ys


def sampling_maps(alignment: Alignment, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """For an elastic alignment, where each tested-image pixel lies in the template
    (``cv2.remap``'s maps); None for a rigid one (a plain warp is faster)."""
    if alignment.flow is None:
        return None
    h, w = shape[:2]
    flow = cv2.resize(alignment.flow, (w, h), interpolation=cv2.INTER_LINEAR)
    xs, ys = _grid(h, w)
    points = np.dstack([xs + flow[..., 0], ys + flow[..., 1]])
    if _affine(alignment.warp):
        mapped = cv2.transform(points, alignment.warp[:2])
    else:
        mapped = cv2.perspectiveTransform(points, alignment.warp)
    map_x, map_y = cv2.split(mapped)
    return map_x, map_y


def _shift(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> tuple[float, float] | None:
    """Phase correlation's shift of ``b`` against ``a``, None when it is under half a pixel."""
    # Copies: OpenCV 5.0's phaseCorrelate applies the window to its inputs in place.
    (dx, dy), _ = cv2.phaseCorrelate(a.copy(), b.copy(), window)
    return (float(dx), float(dy)) if math.hypot(dx, dy) >= 0.5 else None


def _similarity(shape: tuple[int, ...], angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """A 3x3 warp from tested-image pixels to template pixels: turned by ``angle_deg``
    and scaled about the centre, then shifted."""
    h, w = shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, scale)
    warp = np.vstack([m, [0, 0, 1]]).astype(np.float32)
    warp[0, 2] += shift[0]
    warp[1, 2] += shift[1]
    return warp


def _log_polar_spectrum(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    spectrum = np.fft.fftshift(np.abs(np.fft.fft2(image * window)))
    spectrum = np.log1p(spectrum).astype(np.float32)
    h, w = spectrum.shape
    return cv2.warpPolar(spectrum, (w, h), (w / 2, h / 2), min(w, h) / 2, cv2.WARP_POLAR_LOG | cv2.INTER_LINEAR)


def _turns(
    a: np.ndarray, b: np.ndarray, window: np.ndarray, max_deg: float, max_scale_change: float
) -> list[tuple[float, float]]:
    """The turn and scale between ``a`` and ``b`` by the Fourier-Mellin transform (the
    magnitude spectrum ignores the shift; in log-polar form a turn and a scale become a
    shift), both ways round since the spectrum cannot tell them apart; [] when there is
    no turn or scale to speak of, or more than the limits allow."""
    pa, pb = _log_polar_spectrum(a, window), _log_polar_spectrum(b, window)
    (d_logr, d_angle), _ = cv2.phaseCorrelate(pa, pb)
    h, w = pa.shape
    angle = d_angle * 360.0 / h
    angle = (angle + 90.0) % 180.0 - 90.0  # the spectrum repeats every half turn
    scale = math.exp(d_logr * math.log(min(w, h) / 2) / w)
    if abs(angle) < 0.1 and abs(scale - 1) < 0.002:
        return []
    if abs(angle) > max_deg or abs(scale - 1) > max_scale_change:
        return []
    return [(angle, scale), (-angle, 1 / scale)]


def _affine(warp: np.ndarray) -> bool:
    """The warp has no perspective part (a plain check: np.allclose costs more than the warp)."""
    return bool(warp[2, 0] == 0 and warp[2, 1] == 0 and warp[2, 2] == 1)


def _correlation(a: np.ndarray, b: np.ndarray, warp: np.ndarray) -> float:
    """ECC's correlation coefficient of ``a`` and ``b`` under ``warp`` (NaN-free)."""
    value = float(cv2.computeECC(a, _warped(b, warp, a.shape)))
    return value if math.isfinite(value) else 0.0


def _warped(image: np.ndarray, warp: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    h, w = shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    if _affine(warp):
        return cv2.warpAffine(image, warp[:2], (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpPerspective(image, warp, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def warp_template(
    template: np.ndarray,
    alignment: Alignment,
    shape: tuple[int, ...],
    maps: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """``template`` (or a map in its frame) resampled into the tested image's frame;
    ``maps`` from ``sampling_maps`` for an elastic alignment."""
    if maps is not None:
        return cv2.remap(template, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return _warped(template, alignment.warp, shape)


def covered(
    alignment: Alignment,
    shape: tuple[int, ...],
    margin: int = 2,
    maps: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Pixels of the tested image that the template covers (uint8 0/1), less a margin."""
    h, w = shape[:2]
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    ones = np.ones((h, w), np.uint8)
    if maps is not None:
        inside = cv2.remap(ones, maps[0], maps[1], cv2.INTER_NEAREST, borderValue=0)
    elif _affine(alignment.warp):
        inside = cv2.warpAffine(ones, alignment.warp[:2], (w, h), flags=flags, borderValue=0)
    else:
        inside = cv2.warpPerspective(ones, alignment.warp, (w, h), flags=flags, borderValue=0)
    if margin:
        inside = cv2.erode(inside, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8), borderValue=0)
    return inside
