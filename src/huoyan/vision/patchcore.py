"""PatchCore-class anomaly detector learned from good parts only.

The estimator follows the detector contract (``huoyan.core.detector``, scikit-learn's):
``__init__`` stores explicit parameters, ``fit`` validates them and learns (memory bank,
calibrated threshold, model card), ``score`` is pure and returns raw scores with their
anomaly maps. The work is split as in anomalib: feature extraction (``backbone``,
``features``, ``runtime``), scoring (``coreset``, ``search``), anomaly map
(``anomaly_map``) and calibration. Verdicts and regions are the decision stage's
(``huoyan.decision``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self, cast

import numpy as np
import torch

from huoyan.core import progress
from huoyan.core.artifact import sha256
from huoyan.core.calibration import calibrate
from huoyan.core.detector import NotFittedError, Parameters, Scores
from huoyan.core.models import Calibration, InputSpec, ModelCard
from huoyan.vision.anomaly_map import IMAGE_SCORES, image_scores, patch_grid_to_map
from huoyan.vision.artifact import BankUpdate, PatchCoreDetails
from huoyan.vision.backbone import BACKBONES, DEFAULT_STRIDES, build_backbone, feature_dim
from huoyan.vision.coreset import coreset_size, greedy_coreset
from huoyan.vision.edge_runner import resize_to
from huoyan.vision.features import fuse
from huoyan.vision.lighting import LIGHTINGS
from huoyan.vision.runtime import FeatureRuntime, check_backbone_precision, make_runtime
from huoyan.vision.search import NearestNeighbourIndex, Precision

BANK_DTYPES = ("float32", "float16")
# The estimator's parameters, in ``__init__``'s order: what ``get_params`` reports and saves.
_PARAMS = (
    "backbone",
    "image_size",
    "coreset_ratio",
    "coreset_size",
    "false_reject_rate",
    "confidence",
    "calibration_fraction",
    "bank_dtype",
    "seed",
    "runtime",
    "blur_sigma",
    "batch_size",
    "calibration_in_bank",
    "calibration",
    "augment",
    "search_precision",
    "lighting",
    "backbone_precision",
    "image_score",
)
SEARCH_PRECISIONS = ("float32", "bfloat16")
CALIBRATIONS = ("auto", "holdout", "leave-one-out")
# Copies of each bank image: as taken, mirrored, and (rot90) turned by quarter turns.
AUGMENTS = ("none", "flips", "rot90")
# Up to this many good images, "auto" calibrates leave-one-out on a bank of every patch
# (20 images at 224 px: 15.7k rows, the size of a 200-image bank at ratio 0.1).
FEW_SHOT_IMAGES = 20


def augmented(images: Sequence[np.ndarray], augment: str) -> list[np.ndarray]:
    """``images`` followed by their copies, copy by copy (all first copies, then all second)."""
    if augment == "none":
        return list(images)
    turns: list[Any] = [lambda x: x[:, ::-1], lambda x: x[::-1], lambda x: x[::-1, ::-1]]
    if augment == "rot90":
        turns += [lambda x, k=k: np.rot90(x, k) for k in (1, 3)] + [
            lambda x, k=k: np.rot90(x[:, ::-1], k) for k in (1, 3)
        ]
    return [*images, *(np.ascontiguousarray(turn(img)) for turn in turns for img in images)]


def content_sha256(images: Sequence[np.ndarray]) -> str:
    """Order-sensitive hash of decoded training images (shape and pixels)."""
    h = hashlib.sha256()
    for img in images:
        h.update(repr(img.shape).encode())
        h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


class PatchCore(Parameters):
    """Learn normal appearance from good images; score new ones and say where they differ.

    Parameters are explicit and stored unchanged, as in scikit-learn:

    - ``backbone``: ``efficientnet-lite0`` (default), ``-lite1`` or ``-lite2``.
    - ``image_size``: square model input size in pixels.
    - ``coreset_ratio`` / ``coreset_size``: memory bank kept by greedy k-center selection
      (a size wins over a ratio; ``coreset_ratio=None`` and no size keeps every patch).
    - ``false_reject_rate``, ``confidence``: calibration target and the confidence of the
      reported bound (see ``calibration``).
    - ``calibration_fraction``: share of the good images held out of the bank to set
      the threshold (at least 2 images).
    - ``calibration_in_bank``: after calibrating, those images join the bank too (the
      bank's greedy selection goes on over their patches). On by default: it is what
      brings magnetic tile level with anomalib (image AUROC +0.02), for a ~20% larger
      bank and search; the threshold's bound holds conservatively.
    - ``bank_dtype``: ``float16`` (default) or ``float32``. float16 halves the artifact
      and the bank in memory, and is searched in place at float32 speed; scores moved by
      < 1e-4 of AUROC on magnetic tile. The model is calibrated with the rounded bank,
      so saved and in-memory scores agree.
    - ``runtime``: ``onnx`` (fastest here) or ``torch`` for the backbone.
    - ``augment``: copies of each bank image that join the bank: ``none`` (default),
      ``flips`` (mirrored left-right, up-down and both: 4x the patches) or ``rot90`` (also
      quarter turns: 8x). Only for parts whose mirror image or turned image is still a
      good part (textures, symmetric parts), never for parts with a handedness.
    - ``calibration``: how the threshold's good-part scores are obtained. ``holdout``: the
      ``calibration_fraction`` above. ``leave-one-out`` (for few images): the bank keeps
      every patch of every image (no coreset) and each image is scored against the bank of
      the others, so all of them calibrate (see ``_fit_leave_one_out``). ``auto``:
      leave-one-out up to ``FEW_SHOT_IMAGES`` images, holdout above. ``holdout`` is the
      default, so that a coreset ratio or calibration fraction given is never ignored.
    - ``search_precision``: ``float32`` (default: the exact nearest distance) or
      ``bfloat16``: the bank is searched with bfloat16 products where the CPU has AVX-512
      BF16 (twice the float32 rate), every candidate for the nearest row is measured again
      in float32, so a patch's distance is a real row's float32 distance, equal to the exact
      one unless that row lost a near tie (docs/benchmarks.md measures how often, and that
      AUROC does not move); float32 on other CPUs. Set before ``fit``, the threshold is
      calibrated with the search the model runs with.
    - ``lighting``: ``fixed`` (default), ``image`` (each image brought to a common
      brightness and contrast) or ``shading`` (also its slow shading divided out) before
      the backbone, for lines whose lighting drifts or whose good parts differ in shade;
      never where a part's overall shade is itself a defect (``vision.lighting``).
    - ``backbone_precision``: ``float32`` (default) or ``bfloat16``: the backbone runs in
      OpenVINO with bfloat16 arithmetic (1.6-1.7x the float32 backbone; features within
      about 5%, docs/benchmarks.md measures what it costs in AUROC). Needs
      ``huoyan[edge]`` and a CPU with AVX-512 BF16 or AMX, where it is fitted and where it
      runs: elsewhere ``fit`` and ``load`` refuse it. Set before ``fit``: the bank and the
      threshold come from the features the model runs with.
    - ``image_score``: ``max`` (default: the map's maximum) or ``max-mean`` (the geometric
      mean of the map's maximum and its mean, for textures whose defects are large and
      faint; ``anomaly_map``). With ``max-mean`` the threshold is calibrated on that score
      and the map is scaled (``map_scale_``) so that it crosses the threshold where the
      map's maximum crosses its own calibrated level: a good part shows a region no more
      often than the false-reject target, and the decision stage cuts regions at the one
      threshold. A part can then be NG by its score with no pixel above the threshold
      (a faint defect spread over the part); a recipe's ``min_region_area_px`` passes it.
    """

    def __init__(
        self,
        backbone: str = "efficientnet-lite0",
        image_size: int = 224,
        coreset_ratio: float | None = 0.1,
        coreset_size: int | None = None,
        false_reject_rate: float = 0.005,
        confidence: float = 0.95,
        calibration_fraction: float = 0.2,
        bank_dtype: str = "float16",
        seed: int = 0,
        runtime: str = "onnx",
        blur_sigma: float = 4.0,
        batch_size: int = 8,
        calibration_in_bank: bool = True,
        calibration: str = "holdout",
        augment: str = "none",
        search_precision: str = "float32",
        lighting: str = "fixed",
        backbone_precision: str = "float32",
        image_score: str = "max",
    ) -> None:
        self.backbone = backbone
        self.image_size = image_size
        self.coreset_ratio = coreset_ratio
        self.coreset_size = coreset_size
        self.false_reject_rate = false_reject_rate
        self.confidence = confidence
        self.calibration_fraction = calibration_fraction
        self.bank_dtype = bank_dtype
        self.seed = seed
        self.runtime = runtime
        self.blur_sigma = blur_sigma
        self.batch_size = batch_size
        self.calibration_in_bank = calibration_in_bank
        self.calibration = calibration
        self.augment = augment
        self.search_precision = search_precision
        self.lighting = lighting
        self.backbone_precision = backbone_precision
        self.image_score = image_score
        self._runtime: FeatureRuntime | None = None
        self._index: NearestNeighbourIndex | None = None

    kind: ClassVar[str] = "patchcore"
    PARAMS = _PARAMS
    names_defects: ClassVar[bool] = False  # its regions are cut from the anomaly map
    # Learned by ``fit`` (or read by ``load``), never set in ``__init__``.
    bank_: np.ndarray
    card_: ModelCard
    map_scale_: float  # the map's units -> the score's (1.0 for ``image_score="max"``)

    def _parameters_changed(self, names: set[str]) -> None:
        if {"backbone", "image_size", "runtime", "lighting", "backbone_precision"} & names:
            self._runtime = None  # rebuilt for the new input on next use
        if "search_precision" in names and hasattr(self, "bank_"):
            self._set_bank(self.bank_)

    def _check_params(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {sorted(BACKBONES)}")
        if self.bank_dtype not in BANK_DTYPES:
            raise ValueError(f"bank_dtype must be one of {BANK_DTYPES}")
        if not 0 < self.calibration_fraction < 1:
            raise ValueError("calibration_fraction must be in (0, 1)")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}")
        if self.search_precision not in SEARCH_PRECISIONS:
            raise ValueError(f"search_precision must be one of {SEARCH_PRECISIONS}")
        if self.lighting not in LIGHTINGS:
            raise ValueError(f"lighting must be one of {LIGHTINGS}")
        if self.image_score not in IMAGE_SCORES:
            raise ValueError(f"image_score must be one of {IMAGE_SCORES}")
        check_backbone_precision(self.backbone_precision)
        if self.image_size < 32 or self.image_size % 16:
            raise ValueError("image_size must be a multiple of 16 and at least 32")

    @staticmethod
    def _check_images(images: Sequence[np.ndarray]) -> None:
        """HxWx3 uint8 RGB images, at least one: anything else is a caller's mistake, named."""
        if len(images) == 0:
            raise ValueError("no images given")
        for i, img in enumerate(images):
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
                shape = getattr(img, "shape", type(img).__name__)
                raise ValueError(f"image {i}: expected an HxWx3 RGB array, got {shape}")
            if img.dtype != np.uint8:
                raise ValueError(
                    f"image {i}: expected uint8 pixels, got {img.dtype} (decode with huoyan.vision.imageio)"
                )

    # -- feature extraction -------------------------------------------------------
    def _features_runtime(self) -> FeatureRuntime:
        if self._runtime is None:
            model = build_backbone(self.backbone, self.image_size, DEFAULT_STRIDES, self.lighting)
            self._feature_dim = feature_dim(model)
            self._runtime = make_runtime(self.runtime, model, self.image_size, self.backbone_precision)
        return self._runtime

    def prepare(self) -> Self:
        """Build the backbone runtime now (start-up cost) rather than on the first image."""
        self._features_runtime()
        return self

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """HxWx3 uint8 RGB images -> N x 3 x S x S float32, mean = std = 0.5.

        The resize rule is declared once, in the exported model's standalone runner
        (``edge_runner.resize_to``), so the station and an edge export cannot drift apart.
        """
        s = self.image_size
        batch = np.empty((len(images), 3, s, s), dtype=np.float32)
        for i, img in enumerate(images):
            batch[i] = resize_to(img, s).transpose(2, 0, 1)
        batch *= 1.0 / 127.5
        batch -= 1.0
        return batch

    def feature_maps(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The backbone's averaged maps, finest first (N x C x h x w each)."""
        runtime = self._features_runtime()
        batches = []
        for start in range(0, len(images), self.batch_size):
            batches.append(runtime(self.preprocess(images[start : start + self.batch_size])))
            progress.report("features", min(start + self.batch_size, len(images)), len(images))
        return [np.concatenate(maps) for maps in zip(*batches, strict=True)]

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Patch features, N x h x w x D (h = w = image_size / 8)."""
        return fuse(self.feature_maps(images))

    # -- learning -------------------------------------------------------------------
    def fit(self, images: Sequence[np.ndarray], defect_samples: Sequence[np.ndarray] | None = None) -> Self:
        """Learn from good images, holding some out to calibrate the threshold.

        A seeded ``calibration_fraction`` of the images (at least 2) stays out of the
        memory bank until the threshold is set; their scores are exchangeable with those
        of future good parts, which is what the conformal threshold needs
        (``calibration``). Then, with ``calibration_in_bank``, they join it. Scoring training images
        against a bank with their own patches removed was tried and rejected: the
        coreset had dropped their neighbours from other images, so such scores ran far
        above real good parts (magnetic tile: every defect passed). ``defect_samples``,
        if given, add the F1-optimal threshold and its rates to the calibration report.
        """
        self._check_params()
        leave_one_out = self.calibration == "leave-one-out" or (
            self.calibration == "auto" and len(images) <= FEW_SHOT_IMAGES
        )
        if leave_one_out:
            return self._fit_leave_one_out(images, defect_samples)
        n_cal = max(2, round(len(images) * self.calibration_fraction))
        if len(images) - n_cal < 1:
            raise ValueError(f"fit needs at least {n_cal + 1} good images ({n_cal} are held out to calibrate)")
        self._check_images(images)
        order = np.random.default_rng(self.seed).permutation(len(images))
        cal_idx, bank_idx = np.sort(order[:n_cal]), np.sort(order[n_cal:])
        bank_images = [images[i] for i in bank_idx]
        feats = self.embed(augmented(bank_images, self.augment))
        d = feats.shape[-1]
        flat = feats.reshape(-1, d)
        k = coreset_size(flat.shape[0], self.coreset_ratio, self.coreset_size)
        coreset = greedy_coreset(flat, k, seed=self.seed)
        chosen = flat[coreset.indices]
        bank = chosen.astype(self.bank_dtype)
        self._set_bank(bank)
        cal_images = [images[i] for i in cal_idx]
        cal_maps = self.feature_maps(cal_images)  # scored now, and joins the bank below
        cal, map_scale = self._calibrate(*self._score_and_peak(self._distance_maps(cal_maps)), defect_samples)
        if self.calibration_in_bank:
            # Calibrated, the held-out images join the bank: the bank's own greedy selection
            # goes on over their patches, taking only those its centres leave farther away
            # than its covering radius (at most the main bank's ratio). A bank that only
            # grows can only lower a good part's nearest distance, so the threshold keeps
            # its false-reject bound (conservatively); defects are judged against all the
            # good images, as anomalib's bank does.
            held = fuse(cal_maps).reshape(-1, d)
            k_held = max(1, round(k * held.shape[0] / flat.shape[0]))
            extra = greedy_coreset(held, k_held, seed=self.seed, covered_by=chosen, radius=coreset.radius)
            bank = np.concatenate([bank, held[extra.indices].astype(self.bank_dtype)])
            self._set_bank(bank)
            bank_images = [*bank_images, *cal_images]
        ratio = self.coreset_ratio if self.coreset_size is None else None
        return self._fitted(images, cal, map_scale, len(bank_images), ratio, coreset.radius, "held-out")

    def _fitted(
        self,
        images: Sequence[np.ndarray],
        cal: Calibration,
        map_scale: float,
        bank_images: int,
        coreset_ratio: float | None,
        coreset_radius: float,
        calibration_scores: str,
    ) -> Self:
        """The card of the bank just built, whichever way the threshold was calibrated."""
        details = PatchCoreDetails(
            backbone=self.backbone,
            layers=list(DEFAULT_STRIDES),
            image_size=self.image_size,
            feature_dim=self.bank_.shape[1],
            bank_size=self.bank_.shape[0],
            bank_dtype=self.bank_dtype,
            coreset_ratio=coreset_ratio,
            bank_images=bank_images,
            coreset_radius=coreset_radius,
            calibration_scores=calibration_scores,
            map_scale=map_scale,
        )
        self.map_scale_ = map_scale
        self.card_ = ModelCard.fitted(
            self.kind, self.seed, len(images), content_sha256(images), cal, details, InputSpec.of(images)
        )
        return self

    def _fit_leave_one_out(
        self, images: Sequence[np.ndarray], defect_samples: Sequence[np.ndarray] | None = None
    ) -> Self:
        """Few good images: every one calibrates, none is spent on it alone.

        The bank is every patch of every image (a deterministic, symmetric construction:
        no coreset, whose choices depend on all the images at once). Image i is scored
        against the bank of the others. For a new good part, the scores of the n + 1
        parts, each against the bank of all the others, are exchangeable; each computed
        score here is against a bank with one image fewer, so it can only be higher (a
        smaller bank is never nearer). The conformal threshold of these scores is thus
        at least the exchangeable one, and the stated bound holds, conservatively, for the
        model that keeps all n images (``tests/test_few_shot.py`` checks it on repeated
        draws). The cost is n searches against banks of n - 1 images at fit time.
        """
        if len(images) < 2:
            raise ValueError("fit needs at least 2 good images to calibrate leave-one-out")
        self._check_images(images)
        maps = self.feature_maps(images)
        d = sum(m.shape[1] for m in maps)
        per_image = fuse(maps).reshape(len(images), -1, d)
        copies = augmented(images, self.augment)[len(images) :]
        if copies:  # each image's own copies join with it, so the construction stays symmetric
            extra = self.embed(copies).reshape(len(copies) // len(images), len(images), -1, d)
            per_image = np.concatenate([per_image, *extra], axis=1)
        good_scores, good_peaks = np.empty(len(images)), np.empty(len(images))
        for i in range(len(images)):
            self._set_bank(np.delete(per_image, i, axis=0).reshape(-1, d).astype(self.bank_dtype))
            score, peak = self._score_and_peak(self._distance_maps([m[i : i + 1] for m in maps]))
            good_scores[i], good_peaks[i] = score[0], peak[0]
            progress.report("calibration", i + 1, len(images))
        bank = per_image.reshape(-1, d).astype(self.bank_dtype)
        self._set_bank(bank)
        cal, map_scale = self._calibrate(good_scores, good_peaks, defect_samples)
        return self._fitted(images, cal, map_scale, len(images), None, 0.0, "leave-one-out")

    def _score_and_peak(self, distance_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each map's image score and its maximum: what calibration keeps of a good part."""
        maps = torch.from_numpy(distance_maps)
        return image_scores(maps, self.image_score).numpy(), image_scores(maps, "max").numpy()

    def _calibrate(
        self, good_scores: np.ndarray, good_peaks: np.ndarray, defect_samples: Sequence[np.ndarray] | None
    ) -> tuple[Calibration, float]:
        """The threshold from good parts' scores, and the map's scale (``image_score``).

        With a score other than the maximum, the maps' maxima are calibrated too, at the
        same target; the map is scaled by threshold / that level, so a pixel crosses the
        threshold where the map's maximum crosses its own calibrated level."""
        self.map_scale_ = 1.0  # defect samples' maps, if scored, stay in distance units
        defect_scores = None if not defect_samples else self.score(defect_samples).raw
        cal = calibrate(good_scores, self.false_reject_rate, self.confidence, defect_scores)
        if self.image_score == "max":
            return cal, 1.0
        peak = calibrate(good_peaks, self.false_reject_rate, self.confidence)
        # Good parts identical to the bank (every distance 0) leave nothing to scale.
        return cal, cal.threshold / peak.threshold if peak.threshold > 0 else 1.0

    def partial_fit(self, images: Sequence[np.ndarray]) -> Self:
        """Add good images to the fitted bank without refitting (scikit-learn's ``partial_fit``).

        Their patches go through the bank's own greedy selection, continued: a patch
        joins only if the bank leaves it farther away than the selection's covering
        radius (so the added parts themselves come to score like the parts the bank was
        built from). The threshold is kept: a bank that only grows can only lower a
        part's score, so good parts' false-reject bound still holds, and what has to be
        checked is that defects still stand out (``bank_update.guarded_update``). The card
        records the update; the bank's digest changes, so the model is a new version.
        """
        card = self._card()
        self._check_images(images)
        details = PatchCoreDetails.model_validate(card.details)
        patches = self.embed(augmented(images, self.augment)).reshape(-1, self.bank_.shape[1])
        # Every patch the bank leaves beyond its covering radius joins (what makes the added
        # parts pass); a model from before the radius was kept takes its ratio of them.
        k = patches.shape[0] if details.coreset_radius else coreset_size(patches.shape[0], details.coreset_ratio, None)
        extra = greedy_coreset(
            patches,
            k,
            seed=self.seed,
            covered_by=self.bank_.astype(np.float32),
            radius=details.coreset_radius or 0.0,
        )
        parent_sha = sha256(np.ascontiguousarray(self.bank_).tobytes())  # as the saved card's bank_sha256
        self._set_bank(np.concatenate([self.bank_, patches[extra.indices].astype(self.bank_.dtype)]))
        update = BankUpdate(
            at=datetime.now(UTC),
            images=len(images),
            content_sha256=content_sha256(images),
            rows_added=len(extra.indices),
            parent_bank_sha256=parent_sha,
        )
        details = details.model_copy(
            update={
                "bank_size": self.bank_.shape[0],
                "bank_images": details.bank_images + len(images),
                "updates": [*details.updates, update],
            }
        )
        self.card_ = card.model_copy(update={"details": details.model_dump(mode="json")})
        return self

    def _set_bank(self, bank: np.ndarray) -> None:
        self.bank_ = bank
        self._index = NearestNeighbourIndex(bank, precision=cast(Precision, self.search_precision))

    # -- inference (pure) -------------------------------------------------------------
    @property
    def threshold(self) -> float:
        return self._card().calibration.threshold

    @property
    def input_spec(self) -> InputSpec | None:
        """The training images' sizes and colour (None for models saved before it was kept)."""
        return self._card().input

    def _card(self) -> ModelCard:
        if not hasattr(self, "card_") or self._index is None:
            raise NotFittedError("this PatchCore is not fitted: call fit() or PatchCore.load()")
        return self.card_

    def score(self, images: Sequence[np.ndarray]) -> Scores:
        """Raw image scores (N,) and, as evidence, anomaly maps at model resolution (N x S x S)."""
        if self._index is None:
            raise NotFittedError("this PatchCore is not fitted: call fit() or PatchCore.load()")
        self._check_images(images)
        return self._score_maps(self.feature_maps(images))

    def _score_maps(self, feature_maps: list[np.ndarray]) -> Scores:
        maps = self._distance_maps(feature_maps)
        raw = image_scores(torch.from_numpy(maps), self.image_score).numpy()
        if self.map_scale_ != 1.0:
            maps *= np.float32(self.map_scale_)
        return Scores(raw, maps)

    def _distance_maps(self, feature_maps: list[np.ndarray]) -> np.ndarray:
        """Smoothed maps of the patches' nearest distances in the bank (N x S x S)."""
        assert self._index is not None
        # One search for the whole batch: each bank chunk is converted once per batch.
        distances = self._index.map_distances(feature_maps)
        n = distances.shape[0]
        maps = np.empty((n, self.image_size, self.image_size), dtype=np.float32)
        for i in range(n):
            maps[i] = patch_grid_to_map(distances[i], self.image_size, self.blur_sigma)
        return maps

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        from huoyan.vision.artifact import save_model

        card = self._card()
        return save_model(path, self.bank_, card, self.get_params())

    @classmethod
    def load(cls, path: str | Path, runtime: str = "onnx", **_: Any) -> Self:
        from huoyan.vision.artifact import load_model

        bank, card, params = load_model(path)
        # Files from before the decision stage also hold min_region_area and mm_per_px:
        # those are the recipe's now (``huoyan.decision``), not the model's.
        params = {k: v for k, v in params.items() if k in _PARAMS}
        params["runtime"] = runtime
        model = cls(**params)
        model._check_params()
        model.card_ = card
        model.map_scale_ = PatchCoreDetails.model_validate(card.details).map_scale
        model._set_bank(bank)
        return model
