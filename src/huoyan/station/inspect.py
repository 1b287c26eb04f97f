"""One micro-batch of arrivals to one stored record each: decode, preprocess, score, decide, keep.

The detector scores; the decider (``huoyan.decision``, through ``core.detector.Decider``)
turns each score and map into the verdict; this module keeps what the recipe keeps.

Runs in a worker thread, off the event loop. Any failure of one part (corrupt file,
image smaller than the ROI) becomes that part's ERROR record; a failure of the detector
itself becomes an ERROR record for each part of the batch. No arrival is left without
a record.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from huoyan.core.detector import Decider, ImageDetector
from huoyan.core.models import Judgement, PairedImage, Region, SignalWindow, Verdict
from huoyan.core.recipe import LotId, Recipe
from huoyan.core.records import (
    Arrival,
    Evidence,
    EvidenceKind,
    InspectionRecord,
    StoredRecord,
    media_type_of,
    utcnow,
)
from huoyan.station import preprocess
from huoyan.station.templates import TemplateLibrary

# Heat maps are stored as 8-bit PNG of score / threshold: 128 is the NG threshold,
# 255 is twice it or more. Compact, viewable, and still quantitative.
HEATMAP_SCALE = 128.0
# What a record takes over from the decider's judgement (the source name is the arrival's).
JUDGED = tuple(name for name in Judgement.model_fields if name != "source_name")


class Decoder(Protocol):
    def __call__(self, data: bytes, name: str, max_pixels: int | None = None) -> np.ndarray: ...


def encode_png(image: np.ndarray) -> bytes:
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    # Level 1: a third of the default's CPU time for files a few percent larger.
    ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def heatmap_u8(raw_map: np.ndarray, threshold: float) -> np.ndarray:
    return np.clip(raw_map / threshold * HEATMAP_SCALE, 0, 255).astype(np.uint8)


class Previewer(Protocol):
    """Draws a small picture of a judged part for the live view (``huoyan.vision.overlay``)."""

    def __call__(self, image: np.ndarray, heat: np.ndarray | None, regions: Sequence[Region]) -> bytes: ...


@dataclass(slots=True)
class Prepared:
    """An arrival decoded and preprocessed for the model, or the reason it could not be."""

    arrival: Arrival
    image: np.ndarray | None
    error: str | None = None
    template: np.ndarray | None = None  # the part's own golden template, for a template model
    windows: list[SignalWindow] | None = None  # a recording cut into a sensor model's windows
    parts: list[tuple[str, Prepared]] | None = None  # a part of several channels: each channel's


def lot_of(a: Arrival, policy: LotId) -> str | None:
    """The part's lot: given with it (the upload's field, the trigger's payload) or read
    from its file name by the recipe's rule."""
    trigger = a.meta.get("trigger")
    given = a.meta.get("lot") or (trigger.get(policy.key) if isinstance(trigger, dict) else None)
    if given not in (None, ""):
        return str(given)
    if policy.source == "filename" and policy.pattern:
        m = _compiled(policy.pattern).search(Path(a.source_name).name)
        if m is not None:
            return m.group("lot") if "lot" in m.groupdict() else m.group(0)
    return None


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def record_for(
    a: Arrival, recipe: Recipe, model_sha256: str | None, threshold: float, **fields: object
) -> InspectionRecord:
    """The record of an arrival, judged now under ``recipe`` and its model: what every
    inspector (images, sensor windows, several channels) fills in alike."""
    decided = utcnow()
    return InspectionRecord(
        key=a.key,
        seq=a.seq,
        station_id=recipe.station,
        recipe_id=recipe.recipe,
        recipe_version=recipe.version,
        model_sha256=model_sha256,
        threshold=threshold,
        part_id=a.part_id,
        lot=lot_of(a, recipe.lot),
        source_name=a.source_name,
        arrived_at=a.arrived_at,
        decided_at=decided,
        latency_ms=(decided - a.arrived_at).total_seconds() * 1000,
        trigger=a.meta.get("trigger"),
        **fields,  # type: ignore[arg-type]
    )


def keeps(recipe: Recipe, verdict: Verdict, seq: int | None) -> bool:
    """Whether the recipe keeps the evidence of a part with this verdict and sequence number."""
    policy = recipe.storage
    if verdict != Verdict.OK:
        return policy.keep_ng
    n = policy.keep_ok_every
    return n > 0 and (seq or 0) % n == 0


@dataclass
class Inspector:
    detector: ImageDetector
    decider: Decider
    recipe: Recipe
    model_sha256: str
    decode: Decoder
    preview: Previewer | None = None  # set while someone watches the line live
    templates: TemplateLibrary | None = None  # each part's template, for a model without a fixed one

    @property
    def threshold(self) -> float:
        return self.decider.threshold

    def _record(self, a: Arrival, **fields: object) -> InspectionRecord:
        return record_for(a, self.recipe, self.model_sha256, self.threshold, **fields)

    def _keep_image(self, verdict: Verdict, seq: int | None) -> bool:
        return keeps(self.recipe, verdict, seq)

    def _error(self, a: Arrival, message: str) -> StoredRecord:
        blobs: dict[str, bytes] = {}
        evidence = []
        if a.data and self._keep_image(Verdict.ERROR, a.seq):
            evidence.append(_keep(blobs, EvidenceKind.IMAGE, a.data))  # the bad file itself, for diagnosis
        rec = self._record(a, verdict=Verdict.ERROR, error=message, evidence=evidence)
        return StoredRecord(rec, blobs)

    def prepare(self, a: Arrival) -> Prepared:
        """Decode and preprocess one part. The pipeline calls this as parts arrive, on
        another thread, so decoding overlaps the previous batch's inference."""
        cfg = self.recipe.preprocess
        try:
            image = a.image if a.image is not None else self.decode(a.data or b"", a.source_name, cfg.max_image_pixels)
            image = preprocess.apply(image, cfg)
            spec = self.detector.input_spec
            problem = None if spec is None else spec.mismatch(image)
            if problem is not None:
                return Prepared(a, None, problem)
            template = None if self.templates is None else self.templates.for_part(a.source_name)
            return Prepared(a, image, template=template)
        except Exception as exc:  # every failure of one part is that part's ERROR record
            return Prepared(a, None, str(exc) or type(exc).__name__)

    def run(self, batch: Sequence[Prepared]) -> list[StoredRecord]:
        out: dict[int, StoredRecord] = {}
        ready = [(i, p) for i, p in enumerate(batch) if p.image is not None]
        for i, p in enumerate(batch):
            if p.image is None:
                out[i] = self._error(p.arrival, p.error or "not decoded")
        if ready:
            try:
                scores, maps = self.detector.score([_sample(p) for _, p in ready])
                for (i, p), s, m in zip(ready, scores, maps, strict=True):
                    out[i] = self._judge(p.arrival, p.image, float(s), m)  # type: ignore[arg-type]
            except Exception as exc:
                for i, p in ready:
                    out[i] = self._error(p.arrival, f"inspection failed: {exc}")
        return [out[i] for i in range(len(batch))]

    def _judge(self, a: Arrival, image: np.ndarray, score: float, model_map: np.ndarray) -> StoredRecord:
        thr = self.threshold
        result = self.decider.judge(image, score, model_map, a.source_name)
        verdict = result.verdict
        blobs: dict[str, bytes] = {}
        evidence = []
        keep = self._keep_image(verdict, a.seq)
        wanted = keep or self.preview is not None  # most OK parts need no heat map at all
        heat = heatmap_u8(result.anomaly_map, thr) if wanted and result.anomaly_map is not None else None
        if keep:
            data = a.data if a.data and a.image is None and not self._changed_by_preprocess() else encode_png(image)
            evidence.append(_keep(blobs, EvidenceKind.IMAGE, data))
            if heat is not None:
                evidence.append(_keep(blobs, EvidenceKind.ANOMALY_MAP, encode_png(heat)))
            if result.reference is not None:
                evidence.append(_keep(blobs, EvidenceKind.REFERENCE, encode_png(result.reference)))
        # The judgement's own fields as they are (regions, rule outcomes): no dump and re-parse per part.
        judged = {name: getattr(result, name) for name in JUDGED}
        rec = self._record(a, **judged, evidence=evidence)
        preview = None if self.preview is None else self.preview(image, heat, result.regions)
        return StoredRecord(rec, blobs, preview)

    def _changed_by_preprocess(self) -> bool:
        p = self.recipe.preprocess
        return p.roi is not None or p.rotate != 0 or p.resize is not None


def _sample(p: Prepared) -> object:
    """What the detector scores: the image, or the image with its own template."""
    return p.image if p.template is None else PairedImage(p.image, p.template)  # type: ignore[arg-type]


def _keep(blobs: dict[str, bytes], kind: EvidenceKind, data: bytes) -> Evidence:
    """Add ``data`` to the blobs to store and say what it is."""
    sha = hashlib.sha256(data).hexdigest()
    blobs[sha] = data
    return Evidence(kind=kind, sha256=sha, media_type=media_type_of(data))
