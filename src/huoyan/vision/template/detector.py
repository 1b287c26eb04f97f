"""Golden-template comparison as a detector kind (``template``) on the detector contract.

Each tested image is registered to its template (``registration``), compared within a
learned tolerance (``compare``), and each candidate defect is named or dismissed by a
classifier trained on the annotated defects (``classify``). ``fit`` learns, from pairs
(annotated or good): the tolerance table, with a fixed template also the template and
its pixels' variation, the margin annotators draw around a defect, and the classifier.
``score`` gives, per image, the largest ratio to the tolerance among the defects it
reports (above 1 exactly when there is one) and, as evidence, a ``Comparison``: the
labelled boxes, the ratio map, the aligned template, or the reason it could not
compare (a NaN score). The threshold is 1.0 by construction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import cv2
import numpy as np
from pydantic import BaseModel, Field

from huoyan.core.detector import Comparison, NotFittedError, Parameters, Scores
from huoyan.core.models import Calibration, DefectBox, InputSpec, ModelCard, PairedImage, Region
from huoyan.vision.detection_metrics import IOU_LIMIT, Box, iou
from huoyan.vision.template.classify import (
    BACKGROUND,
    UNLABELLED,
    DefectClassifier,
    region_features,
    train_classifier,
)
from huoyan.vision.template.compare import (
    Difference,
    LocalShift,
    ToleranceLearner,
    candidates,
    difference,
    ratio_map,
    tolerance_map,
)
from huoyan.vision.template.evaluate import truth_boxes
from huoyan.vision.template.registration import (
    Alignment,
    Registrar,
    RegistrationError,
    covered,
    sampling_maps,
    warp_template,
)

THRESHOLD = 1.0  # the ratio to the tolerance at which a candidate becomes a defect
_PARAMS = (
    "template_mode",
    "motion",
    "registration_px",
    "min_correlation",
    "elastic_px",
    "search_px",
    "local_shift_px",
    "tolerance_quantile",
    "tolerance_margin",
    "tolerance_floor",
    "opening_px",
    "merge_px",
    "min_area_px",
    "n_trees",
    "min_confidence",
    "workers",
    "seed",
)
TEMPLATE_MODES = ("paired", "fixed")
# Parameters added after the first template models were written, with the value that
# reproduces a file written before them (a model version must keep scoring as it did).
_PARAMS_BEFORE = {"local_shift_px": 0}
# A candidate whose neighbourhood, after the local re-alignment, holds at most this many
# out-of-tolerance pixels per pixel of the candidate is misregistration. On DeepPCB's
# training pairs no annotated defect falls below 0.45; most of the test split's false
# candidates on stretched boards do (docs/benchmarks.md has 0.2 against 0.3).
MISREGISTERED_RESIDUAL = 0.3


class TemplateDetails(BaseModel):
    """What a template model's card records of the model itself (``ModelCard.details``)."""

    template_mode: str
    template_size: list[int] | None = Field(description="width, height of the fixed template")
    template_sha256: str | None = None
    classes: list[str] = Field(description="the defect types it names (``defect`` when trained without annotations)")
    classifier_classes: list[str] = Field(description="the classifier's classes, in the order of its probabilities")
    annotated_defects: dict[str, int] = Field(description="annotated defects per type in the training pairs")
    box_padding: list[int] = Field(description="margin annotators draw around a defect: left, top, right, bottom px")
    training_candidates: int = Field(description="candidates the classifier learned from (background included)")
    tolerance_pixels: int = Field(description="good pixels the tolerance table was learned from")


@dataclass(slots=True)
class _Prepared:
    """A tested image against its template, registered, before the tolerance."""

    aligned: np.ndarray
    diff: Difference
    variation: np.ndarray | None


def _gray(image: Any, what: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"{what}: expected an HxW or HxWx3 uint8 image, got {shape}")
    if image.ndim == 3:
        if image.shape[2] != 3:
            raise ValueError(f"{what}: expected an HxW or HxWx3 uint8 image, got {image.shape}")
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if min(image.shape) < 32:
        raise ValueError(
            f"{what}: expected an image at least 32 px on each side, got {image.shape[1]}x{image.shape[0]}"
        )
    return np.ascontiguousarray(image)


def _digest(image: np.ndarray) -> str:
    return hashlib.sha256(repr(image.shape).encode() + image.tobytes()).hexdigest()


class TemplateComparison(Parameters):
    """Compare each tested image with its golden template; find, box and name defects.

    - ``template_mode``: ``paired`` (each image comes with its template, e.g. a board
      imaged in tiles) or ``fixed`` (one template for the product, learned into the
      model file; ``score`` then takes bare images).
    - ``motion``: registration model, ``translation``, ``euclidean``, ``affine``
      (default: shift, rotation, scale) or ``perspective``; ``registration_px``: the
      finest pyramid level registered (256: a 640 px image at 2.5x reduction; 320 is
      more precise for turned parts and a fifth slower); ``min_correlation``: below it after alignment the
      image is not of this template (an ERROR).
    - ``search_px``: a pixel matching the template anywhere within this distance does
      not differ (local misregistration the global warp leaves).
    - ``local_shift_px``: each candidate is checked against the template moved by up
      to this many pixels around it; one that such a shift explains is dismissed as
      misregistration (boards that stretch or etch unevenly; 0 turns it off).
    - ``tolerance_quantile``, ``tolerance_margin``, ``tolerance_floor``: the tolerance
      per edge strength is the quantile of good pixels' difference times the margin,
      at least the floor (grey levels).
    - ``opening_px``: a patch of this many pixels square must be out of tolerance
      (a grey opening; 1 keeps single pixels);
    - ``merge_px``: fragments closer than this join one defect; ``min_area_px``:
      smaller candidates are dropped.
    - ``n_trees``: the classifier's forest; ``min_confidence``: a candidate is reported
      when the classifier's probability that it is a defect at all reaches this.
    - ``workers``: images compared in parallel (OpenCV releases the GIL).
    """

    kind: ClassVar[str] = "template"
    PARAMS = _PARAMS
    names_defects: ClassVar[bool] = True
    card_: ModelCard
    tolerance_: np.ndarray
    padding_: tuple[int, int, int, int]

    def __init__(
        self,
        template_mode: str = "paired",
        motion: str = "affine",
        registration_px: int = 256,
        min_correlation: float = 0.7,
        elastic_px: float = 0.0,
        search_px: int = 2,
        local_shift_px: int = 4,
        tolerance_quantile: float = 0.999,
        tolerance_margin: float = 1.0,
        tolerance_floor: float = 24.0,
        opening_px: int = 2,
        merge_px: int = 11,
        min_area_px: int = 8,
        n_trees: int = 200,
        min_confidence: float = 0.5,
        workers: int = 2,
        seed: int = 0,
    ) -> None:
        self.template_mode = template_mode
        self.motion = motion
        self.registration_px = registration_px
        self.min_correlation = min_correlation
        self.elastic_px = elastic_px
        self.search_px = search_px
        self.local_shift_px = local_shift_px
        self.tolerance_quantile = tolerance_quantile
        self.tolerance_margin = tolerance_margin
        self.tolerance_floor = tolerance_floor
        self.opening_px = opening_px
        self.merge_px = merge_px
        self.min_area_px = min_area_px
        self.n_trees = n_trees
        self.min_confidence = min_confidence
        self.workers = workers
        self.seed = seed
        self._classifier: DefectClassifier | None = None
        self._template: np.ndarray | None = None
        self._variation: np.ndarray | None = None
        self._classifier_onnx: bytes | None = None

    # -- parameters -------------------------------------------------------------------
    def _registrar(self) -> Registrar:
        return Registrar(
            motion=self.motion,
            finest_px=self.registration_px,
            min_correlation=self.min_correlation,
            elastic_px=self.elastic_px,
        )

    def _check_params(self) -> None:
        if self.template_mode not in TEMPLATE_MODES:
            raise ValueError(f"template_mode must be one of {TEMPLATE_MODES}")
        self._registrar().check()
        if not 0.5 < self.tolerance_quantile < 1:
            raise ValueError("tolerance_quantile must be in (0.5, 1)")
        if self.tolerance_margin <= 0 or self.tolerance_floor <= 0:
            raise ValueError("tolerance_margin and tolerance_floor must be positive")
        if not 0 <= self.min_confidence < 1:
            raise ValueError("min_confidence must be in [0, 1)")
        if not 1 <= self.opening_px <= 5:
            raise ValueError("opening_px must be in [1, 5]")
        if not 0 <= self.search_px <= 5:
            raise ValueError("search_px must be in [0, 5]")
        if not 0 <= self.local_shift_px <= 8:
            raise ValueError("local_shift_px must be in [0, 8]")
        if self.workers < 1 or self.merge_px < 0 or self.min_area_px < 1 or self.n_trees < 1:
            raise ValueError("workers, min_area_px and n_trees must be at least 1, merge_px at least 0")

    # -- inputs -------------------------------------------------------------------------
    def _pairs(self, samples: Sequence[Any], template: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """(gray image, gray template) per sample; a bare image takes the fixed template."""
        if len(samples) == 0:
            raise ValueError("no samples given")
        out = []
        for i, sample in enumerate(samples):
            what = f"sample {i}" + (f" ({sample.name})" if isinstance(sample, PairedImage) and sample.name else "")
            if isinstance(sample, PairedImage):
                image, own = sample.image, sample.template
            else:
                image, own = sample, None
            gray = _gray(image, what)
            if own is not None:
                out.append((gray, _gray(own, f"{what} template")))
            elif template is not None:
                out.append((gray, template))
            else:
                raise ValueError(f"{what}: expected a PairedImage with its template (this model has no fixed template)")
        return out

    # -- comparison ---------------------------------------------------------------------
    def _prepare(self, gray: np.ndarray, template: np.ndarray, registrar: Registrar) -> _Prepared:
        alignment = registrar.register(gray, template)
        return self._compare_aligned(gray, template, alignment)

    def _compare_aligned(self, gray: np.ndarray, template: np.ndarray, alignment: Alignment) -> _Prepared:
        shape = gray.shape
        maps = sampling_maps(alignment, shape)
        aligned = warp_template(template, alignment, shape, maps)
        valid = covered(alignment, shape, maps=maps)
        variation = None if self._variation is None else warp_template(self._variation, alignment, shape, maps)
        return _Prepared(aligned, difference(gray, aligned, valid, self.search_px), variation)

    def _candidates(self, p: _Prepared) -> tuple[np.ndarray, list[tuple[Region, np.ndarray]], np.ndarray]:
        """The ratio map, each candidate as (unlabelled region, its features), and the
        candidates' label image (0 outside every candidate)."""
        ratio, unopened = ratio_map(p.diff, tolerance_map(self.tolerance_, p.diff.edges, p.variation), self.opening_px)
        found = candidates(ratio, self.merge_px)
        normalised = p.diff.normalised
        local = LocalShift(normalised, p.aligned, p.variation, self.tolerance_, self.search_px, self.local_shift_px)
        mid = (p.diff.levels.dark + p.diff.levels.bright) / 2  # between the template's two tones
        height, width = ratio.shape
        left, top, right, bottom = self.padding_
        out = []
        for lab in range(1, len(found) + 1):
            x, y, w, h, area = (int(v) for v in found.stats[lab])
            if area < self.min_area_px:
                continue
            inside = found.labels[y : y + h, x : x + w] == lab
            out_of_tolerance = inside & (unopened[y : y + h, x : x + w] > THRESHOLD)
            if local.residual((x, y, w, h), out_of_tolerance) <= MISREGISTERED_RESIDUAL:
                continue
            values = ratio[y : y + h, x : x + w][inside]
            features = region_features(
                found.labels,
                lab,
                (x, y, w, h, area),
                normalised,
                p.aligned,
                p.diff.signed,
                ratio,
                unopened,
                p.diff.edges,
                mid,
            )
            x0, y0 = max(0, x - left), max(0, y - top)
            x1, y1 = min(width, x + w + right), min(height, y + h + bottom)
            region = Region(
                x=x0,
                y=y0,
                width=x1 - x0,
                height=y1 - y0,
                area_px=area,
                max_score=float(values.max()),
                mean_score=float(values.mean()),
            )
            out.append((region, features))
        return ratio, out, found.labels

    def _judge_one(self, gray: np.ndarray, template: np.ndarray, registrar: Registrar) -> tuple[float, Comparison]:
        try:
            p = self._prepare(gray, template, registrar)
        except RegistrationError as exc:
            return float("nan"), Comparison(error=f"registration failed: {exc}")
        return self._judge_prepared(p)

    def _judge_prepared(self, p: _Prepared) -> tuple[float, Comparison]:
        ratio, found, labels = self._candidates(p)
        reported = [r for r in self._name(found) if r is not None]
        if reported:
            score = max(r.max_score for r in reported)
        else:
            # Nothing reported: the largest ratio outside every candidate (at most 1).
            # (OpenCV's masked maximum: the good parts' path, a quarter of numpy's
            # boolean indexing and without holding the GIL; 0 when no pixel is outside.)
            outside = (labels == 0).view(np.uint8)
            score = min(float(cv2.minMaxLoc(ratio, mask=outside)[1]), THRESHOLD)
        reported.sort(key=lambda r: (r.confidence or 0.0, r.max_score), reverse=True)
        return score, Comparison(regions=reported, anomaly_map=ratio, reference=p.aligned)

    def _name(self, found: list[tuple[Region, np.ndarray]]) -> list[Region | None]:
        """Each candidate labelled, or None where the classifier dismisses it."""
        if not found:
            return []
        if self._classifier is None:
            # Trained without annotations: every candidate is a defect, as sure as it is
            # far out of tolerance (ratio 2 -> 0.5, ratio 4 -> 0.75).
            return [
                r.model_copy(update={"label": UNLABELLED, "confidence": 1.0 - THRESHOLD / max(r.max_score, THRESHOLD)})
                for r, _ in found
            ]
        probs = self._classifier.probabilities(np.stack([f for _, f in found]))
        classes = self._classifier.classes
        defect_cols = [i for i, c in enumerate(classes) if c != BACKGROUND]
        out: list[Region | None] = []
        for (region, _), p in zip(found, probs, strict=True):
            is_defect = float(p[defect_cols].sum())
            best = defect_cols[int(np.argmax(p[defect_cols]))]
            if is_defect < max(self.min_confidence, 1e-9):
                out.append(None)
                continue
            confidence = min(1.0, max(0.0, float(p[best])))  # ONNX's float32 sums may pass 1 by an ulp
            out.append(region.model_copy(update={"label": classes[best], "confidence": confidence}))
        return out

    # -- learning -------------------------------------------------------------------------
    def fit(self, samples: Sequence[Any], defect_samples: Sequence[Any] | None = None) -> Self:
        """Learn from pairs (``PairedImage``, annotated or good). ``defect_samples``, if
        given, are more annotated pairs: they train the classifier like the rest."""
        self._check_params()
        every = list(samples) + list(defect_samples or [])
        template = self._fixed_template(every)
        pairs = self._pairs(every, template)
        boxes = [s.defects if isinstance(s, PairedImage) else () for s in every]
        registrar = self._registrar()
        names = [s.name if isinstance(s, PairedImage) and s.name else f"pair {i}" for i, s in enumerate(every)]
        alignments = self._map(
            lambda job: _align_for_fit(registrar, *job), list(zip(pairs, names, strict=True)), "register"
        )
        self._template, self._variation = template, None
        learner = ToleranceLearner(self.tolerance_quantile, self.tolerance_margin, self.tolerance_floor)
        prepared_variation = []
        for (gray, tmpl), alignment, defects in zip(pairs, alignments, boxes, strict=True):
            p = self._compare_aligned(gray, tmpl, alignment)
            good = _good_pixels(gray.shape, defects)
            learner.add(p.diff, good)
            if template is not None:
                prepared_variation.append((p, good, alignment))
        self.tolerance_ = learner.table()
        if template is not None and len(prepared_variation) >= 2:
            self._variation = _variation_map(template.shape, prepared_variation, self.tolerance_margin)
        # Candidates under the learned tolerance: annotators' margin, then the classifier.
        self.padding_ = (0, 0, 0, 0)
        found = [
            self._candidates(self._compare_aligned(g, t, a))[1] for (g, t), a in zip(pairs, alignments, strict=True)
        ]
        annotated = any(boxes)
        if annotated:
            self.padding_ = _annotation_margin(found, boxes)
        features, labels = [], []
        for cands, defects, (gray, _) in zip(found, boxes, pairs, strict=True):
            shape = gray.shape
            names = (
                _assign([_padded(r, self.padding_, shape) for r, _ in cands], defects)
                if annotated
                else [UNLABELLED] * len(cands)
            )
            for (_, f), name in zip(cands, names, strict=True):
                features.append(f)
                labels.append(name)
        self._classifier = None
        self._classifier_onnx = None
        classes = [UNLABELLED]
        if annotated and len(set(labels)) >= 2:
            onnx_bytes, classes = train_classifier(np.stack(features), labels, self.n_trees, self.seed)
            self._set_classifier(onnx_bytes, classes)
        counts: dict[str, int] = {}
        for defects in boxes:
            for d in defects:
                counts[d.label] = counts.get(d.label, 0) + 1
        details = TemplateDetails(
            template_mode=self.template_mode,
            template_size=None if template is None else [template.shape[1], template.shape[0]],
            template_sha256=None if template is None else _digest(template),
            classes=[c for c in classes if c != BACKGROUND],
            classifier_classes=classes if self._classifier is not None else [],
            annotated_defects=counts,
            box_padding=list(self.padding_),
            training_candidates=len(labels),
            tolerance_pixels=learner.pixels,
        )
        self.card_ = ModelCard.fitted(
            self.kind,
            self.seed,
            len(every),
            _pairs_digest(pairs),
            self._in_sample_calibration(found, [g.shape for g, _ in pairs], boxes),
            details,
            _input_spec(pairs),
        )
        return self

    def _fixed_template(self, samples: Sequence[Any]) -> np.ndarray | None:
        if self.template_mode != "fixed":
            return None
        templates = [s.template for s in samples if isinstance(s, PairedImage) and s.template is not None]
        if len(samples) == 0:
            raise ValueError("no samples given")
        if len(templates) != len(samples):
            raise ValueError("a fixed-template model learns from PairedImage samples that all carry the template")
        first = _gray(templates[0], "template")
        if any(_digest(_gray(t, "template")) != _digest(first) for t in templates[1:]):
            raise ValueError("template_mode 'fixed': every training pair must have the same template")
        return first

    def _in_sample_calibration(
        self,
        found: Sequence[list[tuple[Region, np.ndarray]]],
        shapes: Sequence[tuple[int, ...]],
        boxes: Sequence[Sequence[DefectBox]],
    ) -> Calibration:
        """What the model does on its own training pairs: the share of pairs with a
        reported defect no annotation covers (an optimistic false-alarm rate). The
        candidates are those fit found; only naming them is left to do."""
        false_alarm = 0
        for cands, shape, defects in zip(found, shapes, boxes, strict=True):
            claimed = [_padded(r, self.padding_, shape) for r in self._name(cands) if r is not None]
            truth = truth_boxes(defects)
            if any(all(iou(c, t) <= IOU_LIMIT for t in truth) for c in claimed):
                false_alarm += 1
        rate = false_alarm / len(found)
        return Calibration(
            method="in-sample",
            threshold=THRESHOLD,
            target_false_reject_rate=rate,
            expected_false_reject_rate=rate,
            false_reject_rate_upper=rate,
            confidence=0.0,
            n_calibration=len(found),
            region_threshold=THRESHOLD,
        )

    def _set_classifier(self, onnx_bytes: bytes, classes: Sequence[str]) -> None:
        self._classifier_onnx = onnx_bytes
        self._classifier = DefectClassifier(onnx_bytes, classes)

    def _map(self, fn: Any, items: Sequence[Any], what: str) -> list[Any]:
        if self.workers == 1 or len(items) == 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(self.workers, thread_name_prefix=f"huoyan-template-{what}") as pool:
            return list(pool.map(fn, items))

    # -- inference (pure) -------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        self._card()
        return THRESHOLD

    @property
    def input_spec(self) -> InputSpec | None:
        return self._card().input

    @property
    def fixed_template(self) -> np.ndarray | None:
        """The product's template (gray), for a ``fixed`` model."""
        self._card()
        return self._template

    def _card(self) -> ModelCard:
        if not hasattr(self, "card_"):
            raise NotFittedError("this TemplateComparison is not fitted: call fit() or TemplateComparison.load()")
        return self.card_

    def prepare(self) -> Self:
        self._card()
        return self

    def score(self, samples: Sequence[Any]) -> Scores:
        """Per image: the largest ratio to the tolerance among reported defects (NaN when
        it could not be compared), and its ``Comparison``."""
        self._card()
        judged = self._score_pairs(self._pairs(samples, self._template))
        raw = np.array([s for s, _ in judged], dtype=np.float64)
        return Scores(raw, [c for _, c in judged])

    def _score_pairs(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[float, Comparison]]:
        registrar = self._registrar()
        judged: list[tuple[float, Comparison]] = self._map(
            lambda pair: self._judge_one(pair[0], pair[1], registrar), pairs, "score"
        )
        return judged

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        from huoyan.core.artifact import write_artifact

        card = self._card()
        tensors: dict[str, np.ndarray] = {
            "tolerance": self.tolerance_.astype(np.float32),
            "box_padding": np.asarray(self.padding_, dtype=np.int32),
        }
        if self._template is not None:
            tensors["template"] = self._template
        if self._variation is not None:
            tensors["variation"] = self._variation.astype(np.float32)
        if self._classifier_onnx is not None:
            tensors["classifier_onnx"] = np.frombuffer(self._classifier_onnx, dtype=np.uint8)
        return write_artifact(path, self.kind, tensors, card, self.get_params())

    @classmethod
    def load(cls, path: str | Path, **_: Any) -> Self:
        from huoyan.core.artifact import ArtifactError, read_artifact

        tensors, card, params = read_artifact(path, cls.kind)
        model = cls(**{**_PARAMS_BEFORE, **{k: v for k, v in params.items() if k in _PARAMS}})
        model._check_params()
        try:
            details = TemplateDetails.model_validate(card.details)
            model.tolerance_ = tensors["tolerance"]
            padding = tensors["box_padding"]
        except (ValueError, KeyError) as exc:
            raise ArtifactError(f"{path}: not a complete template model ({exc})") from exc
        model.padding_ = (int(padding[0]), int(padding[1]), int(padding[2]), int(padding[3]))
        model._template = tensors.get("template")
        model._variation = tensors.get("variation")
        if "classifier_onnx" in tensors:
            model._set_classifier(tensors["classifier_onnx"].tobytes(), details.classifier_classes)
        model.card_ = card
        return model


def _align_for_fit(registrar: Registrar, pair: tuple[np.ndarray, np.ndarray], name: str) -> Alignment:
    """A training pair's alignment; one that cannot be aligned is the caller's to fix, named."""
    try:
        return registrar.register(*pair)
    except RegistrationError as exc:
        raise ValueError(f"{name}: training pair cannot be registered: {exc}") from None


def _good_pixels(shape: tuple[int, ...], defects: Sequence[DefectBox], pad: int = 4) -> np.ndarray:
    good = np.ones(shape[:2], np.uint8)
    for d in defects:
        good[max(0, d.y1 - pad) : d.y2 + pad, max(0, d.x1 - pad) : d.x2 + pad] = 0
    return good


def _variation_map(
    shape: tuple[int, ...], prepared: list[tuple[_Prepared, np.ndarray, Alignment]], margin: float
) -> np.ndarray:
    """Each template pixel's largest difference over the good training parts (in the
    template's frame), spread over its 3x3 neighbourhood."""
    h, w = shape[:2]
    worst = np.zeros((h, w), np.float32)
    for p, good, alignment in prepared:
        magnitude = np.abs(p.diff.signed) * (good & p.diff.valid)
        flags = cv2.INTER_LINEAR
        if alignment.warp[2, 0] == 0 and alignment.warp[2, 1] == 0:
            back = cv2.warpAffine(magnitude, alignment.warp[:2], (w, h), flags=flags)
        else:
            back = cv2.warpPerspective(magnitude, alignment.warp, (w, h), flags=flags)
        np.maximum(worst, back, out=worst)
    return cv2.dilate(worst, np.ones((3, 3), np.uint8)) * margin


def _padded(region: Region, padding: tuple[int, int, int, int], shape: tuple[int, ...]) -> Box:
    """An unpadded candidate's box with the annotators' margin, inside the image."""
    left, top, right, bottom = padding
    height, width = shape[:2]
    return Box(
        max(0, region.x - left),
        max(0, region.y - top),
        min(width, region.x + region.width + right),
        min(height, region.y + region.height + bottom),
        "",
    )


def _assign(boxes: Sequence[Box], defects: Sequence[DefectBox]) -> list[str]:
    """Each candidate's training label: the annotated defect it overlaps best (IoU above
    the protocol's limit, one candidate per defect), else background."""
    truth = truth_boxes(defects)
    pairs = sorted(((iou(b, t), i, j) for i, b in enumerate(boxes) for j, t in enumerate(truth)), reverse=True)
    names = [BACKGROUND] * len(boxes)
    used_box: set[int] = set()
    used_defect: set[int] = set()
    for overlap, i, j in pairs:
        if overlap <= IOU_LIMIT:
            break
        if i in used_box or j in used_defect:
            continue
        names[i] = defects[j].label
        used_box.add(i)
        used_defect.add(j)
    return names


def _annotation_margin(
    found: Sequence[Sequence[tuple[Region, np.ndarray]]], boxes: Sequence[Sequence[DefectBox]]
) -> tuple[int, int, int, int]:
    """The median margin (left, top, right, bottom) between a candidate's pixels and the
    annotated box around it, over candidates whose centre lies in exactly one box."""
    margins = []
    for cands, defects in zip(found, boxes, strict=True):
        for region, _ in cands:
            cx, cy = region.x + region.width / 2, region.y + region.height / 2
            around = [d for d in defects if d.x1 <= cx <= d.x2 and d.y1 <= cy <= d.y2]
            if len(around) == 1:
                d = around[0]
                margins.append(
                    (region.x - d.x1, region.y - d.y1, d.x2 - region.x - region.width, d.y2 - region.y - region.height)
                )
    if not margins:
        return (0, 0, 0, 0)
    m = np.clip(np.median(np.asarray(margins), axis=0), 0, None)
    return (round(m[0]), round(m[1]), round(m[2]), round(m[3]))


def _pairs_digest(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> str:
    h = hashlib.sha256()
    for image, template in pairs:
        for a in (image, template):
            h.update(repr(a.shape).encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _input_spec(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> InputSpec:
    widths = [g.shape[1] for g, _ in pairs]
    heights = [g.shape[0] for g, _ in pairs]
    return InputSpec(
        min_width=min(widths), max_width=max(widths), min_height=min(heights), max_height=max(heights), colour=False
    )
