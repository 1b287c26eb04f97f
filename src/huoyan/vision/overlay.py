"""Heat-map overlays for people: the part's image with its anomaly map and regions drawn on.

Heat maps arrive as 8-bit arrays in which ``level`` marks the NG threshold (the
station stores them that way). Pixels below three quarters of the threshold stay
untouched, so a good part looks like itself; above, the colour map's weight grows
with the score up to 60 % at 1.25 times the threshold.
The live view and the records browser draw with the same function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from huoyan.core.models import Region
from huoyan.core.records import InspectionRecord

BOX_COLOUR = (255, 40, 40)  # RGB


def render_overlay(
    image: np.ndarray,
    heat: np.ndarray | None,
    regions: Sequence[Region] = (),
    level: float = 128.0,
    max_side: int | None = None,
) -> np.ndarray:
    """An HxWx3 RGB picture: ``image`` blended with ``heat`` (uint8, ``level`` = threshold)
    and a box around each region (with its label, if named), scaled so that its longer
    side is at most ``max_side``."""
    rgb = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    h, w = rgb.shape[:2]
    scale = 1.0 if not max_side or max(h, w) <= max_side else max_side / max(h, w)
    if scale != 1.0:
        # Linear, not area, interpolation: a third of the time, and a preview needs no more.
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
    picture = np.ascontiguousarray(rgb)
    if heat is not None:
        heat = heat if heat.ndim == 2 else heat[..., 0]
        heat = cv2.resize(heat, (picture.shape[1], picture.shape[0]), interpolation=cv2.INTER_LINEAR)
        colour = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        weight = np.clip((heat.astype(np.float32) - 0.75 * level) / (0.5 * level), 0.0, 0.6)
        picture = cv2.blendLinear(picture, colour, 1.0 - weight, weight)
    else:
        picture = picture.copy()
    thickness = max(1, round(max(picture.shape[:2]) / 200))
    for g in regions:
        p1 = (round(g.x * scale), round(g.y * scale))
        p2 = (round((g.x + g.width) * scale), round((g.y + g.height) * scale))
        cv2.rectangle(picture, p1, p2, BOX_COLOUR, thickness)
        if g.label:  # a named defect: its type above the box
            text = g.label
            y = p1[1] - 3 if p1[1] > 12 else p2[1] + 11
            cv2.putText(picture, text, (p1[0], y), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * thickness, BOX_COLOUR, thickness)
    return picture


def encode(picture: np.ndarray, fmt: str = ".jpg", quality: int = 80) -> bytes:
    """PNG or JPEG bytes of an RGB picture."""
    bgr = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == ".jpg" else []
    ok, buf = cv2.imencode(fmt, bgr, params)
    if not ok:
        raise ValueError(f"cannot encode {fmt}")
    return buf.tobytes()


def record_overlay(
    record: InspectionRecord,
    read_blob: Callable[[str], bytes],
    max_side: int | None = None,
    channel: str | None = None,
    fmt: str = ".png",
) -> bytes:
    """A stored record's image with its heat map and regions drawn on, encoded: what the
    records browser shows and what a shift report prints. ``read_blob`` reads a blob by
    sha256 (FileNotFoundError if gone); a record without a kept image is a LookupError."""
    from huoyan.core.records import EvidenceKind
    from huoyan.vision.imageio import decode_image

    picture_ev = record.evidence_of(EvidenceKind.IMAGE, channel)
    if picture_ev is None:
        raise LookupError("no image kept for this inspection (see storage.keep_ok_every)")
    heat_ev = record.evidence_of(EvidenceKind.ANOMALY_MAP, channel)
    picture = decode_image(read_blob(picture_ev.sha256), "image")
    heat = decode_image(read_blob(heat_ev.sha256), "heatmap")[..., 0] if heat_ev else None
    return encode(render_overlay(np.asarray(picture), heat, record.regions, max_side=max_side), fmt)
