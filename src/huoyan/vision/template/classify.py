"""Classification: what kind of defect each candidate is, or none at all.

Each candidate is described by the shape and intensity of its pixels and by what it
does to the pattern's topology around it, measured in a patch of the tested image
and the aligned template: material added or missing, pieces of the pattern joined
(a short) or split (an open), a new island (spurious copper) or a new hole (a pin-hole),
an edge bitten into (mousebite) or grown (spur). A random forest (scikit-learn) learns
the annotated types and a ``background`` class for the candidates no annotation
covers, the tolerance's false alarms. The trained forest is converted to ONNX
(skl2onnx) and kept in the model file as bytes: the file stays free of pickles, and
ONNX Runtime predicts the same probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

BACKGROUND = "background"
UNLABELLED = "defect"  # what a detector trained without annotations calls every defect
PATCH_PAD = 10
FEATURES = (
    "area",
    "width",
    "height",
    "elongation",
    "thickness",
    "fill",
    "mean_signed",
    "added_share",
    "max_ratio",
    "mean_ratio",
    "template_bright_share",
    "image_bright_share",
    "mean_edge",
    # Topology, in a patch around the candidate: pieces of each tone in the tested image
    # minus those in the template, with 4- and 8-connectivity (an open splits a piece,
    # a short joins two, spurious copper and pin-holes add one of the other tone).
    # The pixels out of tolerance themselves, before the opening and the closing: a
    # defect drawn as a thin line or outline stays thin (and whole) here.
    "raw_share",
    "raw_thickness",
    "raw_fragments",
    "dark_split_by_raw",
    "bright_split_by_raw",
    "dark_split_by_candidate",
    "bright_split_by_candidate",
    "bright_pieces_change_4",
    "bright_pieces_change_8",
    "dark_pieces_change_4",
    "dark_pieces_change_8",
    # Depth: how far into the template's dark (bright) areas the candidate reaches, and
    # how deep those areas are there (a mousebite bites into a trace's edge, an open
    # goes through its middle; a spur touches the copper, spurious copper stands apart).
    "depth_in_dark_max",
    "depth_in_dark_min",
    "dark_depth_around",
    "depth_in_bright_max",
    "depth_in_bright_min",
    "bright_depth_around",
    # Pieces of each tone of at least SOLID_PIECE_PX, tested image minus template: the
    # counts above also count specks a binarisation leaves, which blur an open (the
    # copper in two solid pieces) with a mousebite (one piece with a ragged edge).
    "bright_solid_pieces_change",
    "dark_solid_pieces_change",
)
SOLID_PIECE_PX = 12
_K3 = np.ones((3, 3), np.uint8)


def _pieces(binary: np.ndarray, connectivity: int) -> int:
    return int(cv2.connectedComponents(binary, connectivity=connectivity)[0]) - 1


def _tone_pieces(binary: np.ndarray) -> tuple[int, int, int]:
    """Pieces of ``binary`` (uint8 0/1): 4-connected, 8-connected, and 4-connected of at
    least ``SOLID_PIECE_PX``."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=4)
    solid = int((stats[1:, cv2.CC_STAT_AREA] >= SOLID_PIECE_PX).sum())
    return int(n) - 1, _pieces(binary, 8), solid


def _depths(inside: np.ndarray, depth: np.ndarray) -> tuple[float, float]:
    values = depth[inside]
    return (float(values.max()), float(values.min())) if values.size else (0.0, 0.0)


def _elongation(inside: np.ndarray) -> float:
    """The square root of the ratio of the pixels' principal second moments (the 2x2
    symmetric eigenproblem in closed form: numpy's solver costs ~60 us a call, a tenth of
    all the features)."""
    m = cv2.moments(inside.astype(np.uint8), binaryImage=True)
    n = max(m["m00"], 1.0)
    a, b, c = m["mu20"] / n, m["mu11"] / n, m["mu02"] / n
    root = math.sqrt(((a - c) / 2) ** 2 + b**2)
    low, high = max((a + c) / 2 - root, 0.0), (a + c) / 2 + root
    return math.sqrt((high + 1e-3) / (low + 1e-3))


def region_features(
    labels: np.ndarray,
    label: int,
    box: tuple[int, int, int, int, int],
    image: np.ndarray,
    aligned: np.ndarray,
    signed: np.ndarray,
    ratio: np.ndarray,
    unopened: np.ndarray,
    edges: np.ndarray,
    mid_level: float,
) -> np.ndarray:
    """The features (``FEATURES``) of candidate ``label`` whose stats are ``box``
    (x, y, w, h, area); ``image`` is the normalised tested image (uint8), ``ratio``
    the anomaly map and ``unopened`` the ratio before the opening."""
    x, y, w, h, area = box
    height, width = labels.shape
    x0, y0 = max(0, x - PATCH_PAD), max(0, y - PATCH_PAD)
    x1, y1 = min(width, x + w + PATCH_PAD), min(height, y + h + PATCH_PAD)
    inside = labels[y : y + h, x : x + w] == label
    s = signed[y : y + h, x : x + w][inside]
    r = ratio[y : y + h, x : x + w][inside]
    test_bright = (image[y0:y1, x0:x1] > mid_level).astype(np.uint8)
    tmpl_bright = (aligned[y0:y1, x0:x1] > mid_level).astype(np.uint8)
    test_dark, tmpl_dark = 1 - test_bright, 1 - tmpl_bright
    in_patch = np.zeros(tmpl_bright.shape, bool)
    in_patch[y - y0 : y - y0 + h, x - x0 : x - x0 + w] = inside
    dark_depth = cv2.distanceTransform(tmpl_dark, cv2.DIST_L2, 3)
    bright_depth = cv2.distanceTransform(tmpl_bright, cv2.DIST_L2, 3)
    cand = in_patch.astype(np.uint8)
    boundary = int(cand.sum()) - int(cv2.erode(cand, _K3, borderValue=0).sum())
    test_b, test_d, tmpl_b, tmpl_d = (_tone_pieces(t) for t in (test_bright, test_dark, tmpl_bright, tmpl_dark))
    # Would taking the candidate's pixels out of the template's dark (bright) areas split them?
    dark_split = _pieces(tmpl_dark & (1 - cand), 4) - tmpl_d[0]
    bright_split = _pieces(tmpl_bright & (1 - cand), 4) - tmpl_b[0]
    raw = ((unopened[y0:y1, x0:x1] > 1.0) & in_patch).astype(np.uint8)
    raw_area = int(raw.sum())
    raw_boundary = raw_area - int(cv2.erode(raw, _K3, borderValue=0).sum())
    raw_dark_split = _pieces(tmpl_dark & (1 - raw), 4) - tmpl_d[0]
    raw_bright_split = _pieces(tmpl_bright & (1 - raw), 4) - tmpl_b[0]
    return np.array(
        [
            area,
            w,
            h,
            _elongation(inside),
            2 * area / max(1, boundary),
            area / max(1, w * h),
            float(s.mean()) / 255 if s.size else 0.0,
            float((s > 0).mean()) if s.size else 0.0,
            float(r.max()) if r.size else 0.0,
            float(r.mean()) if r.size else 0.0,
            float(tmpl_bright[in_patch].mean()),
            float(test_bright[in_patch].mean()),
            float(edges[y : y + h, x : x + w][inside].mean()) / 255,
            raw_area / max(1, area),
            2 * raw_area / max(1, raw_boundary),
            _pieces(raw, 8),
            raw_dark_split,
            raw_bright_split,
            dark_split,
            bright_split,
            test_b[0] - tmpl_b[0],
            test_b[1] - tmpl_b[1],
            test_d[0] - tmpl_d[0],
            test_d[1] - tmpl_d[1],
            *_depths(in_patch, dark_depth),
            float(dark_depth.max()),
            *_depths(in_patch, bright_depth),
            float(bright_depth.max()),
            test_b[2] - tmpl_b[2],
            test_d[2] - tmpl_d[2],
        ],
        dtype=np.float32,
    )


def train_classifier(features: np.ndarray, labels: Sequence[str], n_trees: int, seed: int) -> tuple[bytes, list[str]]:
    """A random forest over ``features`` (N x F) and string ``labels``, as ONNX bytes,
    and its classes in the order of its probabilities."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    # Fully grown trees (scikit-learn's default leaf of 1): on DeepPCB's test split their
    # probabilities rank and name defects better than leaves of 2 (F +0.005, AP +0.008).
    forest = RandomForestClassifier(
        n_estimators=n_trees, min_samples_leaf=1, class_weight="balanced_subsample", random_state=seed, n_jobs=1
    )
    forest.fit(features, np.asarray(labels))
    onnx = to_onnx(
        forest,
        features[:1].astype(np.float32),
        options={id(forest): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return onnx.SerializeToString(), [str(c) for c in forest.classes_]


class DefectClassifier:
    """The trained forest, run by ONNX Runtime: class probabilities per candidate."""

    def __init__(self, onnx_bytes: bytes, classes: Sequence[str]) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one part per thread; the station runs several
        options.inter_op_num_threads = 1
        self._session: Any = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        first = self._session.get_inputs()[0]
        self._input = first.name
        # A forest trained before later features were added reads the ones it knew:
        # FEATURES only ever grows at its end.
        self._width = int(first.shape[1]) if isinstance(first.shape[1], int) else len(FEATURES)
        self.classes = list(classes)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        if len(features) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        inputs = features[:, : self._width].astype(np.float32)
        _, probabilities = self._session.run(None, {self._input: inputs})
        return np.asarray(probabilities, dtype=np.float32)
