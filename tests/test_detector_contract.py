"""The contract every registered detector kind meets (pattern: scikit-learn's
``parametrize_with_checks``, anomalib's per-model integration test).

A new kind joins by its line in ``huoyan.detectors.REGISTRY`` and a fixture in ``CASES``
below (small parameters and samples); a registered kind without one fails here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from huoyan.core.detector import Comparison, Condition, Detector, NotFittedError, clone
from huoyan.detectors import REGISTRY, UnknownDetectorKind, load_detector
from huoyan.sampleline.generator import make_sample


def _washers(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [make_sample("washer", None, 64, rng)[0] for _ in range(n)]


def _patchcore_case() -> tuple[dict[str, Any], list[Any], list[Any], list[Any]]:
    """(parameters, training samples, samples to score, bad inputs)"""
    params = {"image_size": 64, "coreset_ratio": 0.5, "seed": 3}
    bad: list[Any] = [
        [],
        [np.zeros((8, 8), np.uint8)],  # no channels
        [np.full((8, 8, 3), np.nan, np.float32)],  # floats (NaN), not decoded pixels
        ["not an image"],
    ]
    return params, _washers(8, 0), _washers(3, 1), bad


def _template_case() -> tuple[dict[str, Any], list[Any], list[Any], list[Any]]:
    from pcbkit import pair, training_pairs

    params = {"n_trees": 10, "seed": 3, "workers": 1}
    bad: list[Any] = [
        [],
        [np.zeros((8, 8), np.uint8)],  # smaller than any board
        [np.full((8, 8, 3), np.nan, np.float32)],
        ["not an image"],
        [np.zeros((64, 64, 3), np.uint8)],  # a bare image, but the model has no fixed template
    ]
    return params, training_pairs(8), [pair(40, ("open",)), pair(41), pair(42, ("copper", "spur"))], bad


def _vibration_case() -> tuple[dict[str, Any], list[Any], list[Any], list[Any]]:
    from dataclasses import replace

    from signalkit import RPM, signal_windows

    params = {"window_s": 0.25, "hop_s": 0.125, "bearing": "6205", "rpm": RPM, "seed": 3}
    window = signal_windows(0.5)[0]
    bad: list[Any] = [
        [],
        [np.zeros(5000)],  # bare samples, no rate
        [replace(window, samples=np.full(5000, np.nan))],
        ["not a window"],
        [replace(window, samples=window.samples.astype(np.int32))],
    ]
    probe = [signal_windows(0.5, None, 9)[0], signal_windows(0.5, "outer_race", 9)[1], signal_windows(0.5, None, 8)[2]]
    return params, signal_windows(2.0, None, 1), probe, bad


CASES: dict[str, Callable[[], tuple[dict[str, Any], list[Any], list[Any], list[Any]]]] = {
    "patchcore": _patchcore_case,
    "template": _template_case,
    "vibration": _vibration_case,
}


def _evidence(e: Any) -> np.ndarray:
    """The numbers behind one sample's evidence: a map, or a comparison's map and boxes."""
    if isinstance(e, Comparison):
        boxes = [[r.x, r.y, r.width, r.height, r.max_score, r.confidence or 0.0] for r in e.regions]
        return np.concatenate([np.ravel(e.anomaly_map if e.anomaly_map is not None else []), np.ravel(boxes)])
    if isinstance(e, Condition):
        assert e.diagnosis is not None and e.envelope is not None
        rises = [f.rise_db or 0.0 for f in e.diagnosis.evidence]
        return np.concatenate([list(e.features.values()), e.envelope, rises])
    return np.asarray(e)


def test_every_registered_kind_has_a_contract_case() -> None:
    assert set(REGISTRY) == set(CASES)


@pytest.fixture(scope="module", params=sorted(REGISTRY))
def case(request: pytest.FixtureRequest) -> tuple[type[Detector], dict[str, Any], list[Any], list[Any], list[Any]]:
    params, train, probe, bad = CASES[request.param]()
    return REGISTRY[request.param], params, train, probe, bad


@pytest.fixture(scope="module")
def trained(case: Any) -> Detector:
    cls, params, train, _, _ = case
    return cls(**params).fit(train)


def test_init_stores_parameters_and_fit_returns_self(case: Any) -> None:
    cls, params, train, _, _ = case
    detector = cls(**params)
    assert {k: detector.get_params()[k] for k in params} == params
    assert not any(name.endswith("_") and not name.startswith("_") for name in vars(detector)), "learned in __init__"
    assert detector.fit(train) is detector
    assert isinstance(detector, Detector) and detector.card_ is not None and detector.kind in REGISTRY


def test_an_unfitted_detector_says_so(case: Any) -> None:
    cls, params, _, probe, _ = case
    with pytest.raises(NotFittedError, match="fit"):
        cls(**params).score(probe)


def test_save_then_load_scores_the_same(trained: Detector, case: Any, tmp_path: Path) -> None:
    _, _, _, probe, _ = case
    path = trained.save(tmp_path / "model")
    loaded = load_detector(path)
    assert type(loaded) is type(trained) and loaded.get_params() == trained.get_params()
    np.testing.assert_allclose(loaded.score(probe).raw, trained.score(probe).raw, rtol=1e-5)


def test_a_batch_scores_as_its_samples_one_at_a_time(trained: Detector, case: Any) -> None:
    _, _, _, probe, _ = case
    batch = trained.score(probe)
    singles = [trained.score([s]) for s in probe]
    np.testing.assert_allclose(batch.raw, [s.raw[0] for s in singles], rtol=1e-4)
    assert len(batch.evidence) == len(probe)
    for whole, single in zip(batch.evidence, singles, strict=True):
        np.testing.assert_allclose(_evidence(whole), _evidence(single.evidence[0]), rtol=1e-4, atol=1e-6)


def test_fitting_is_deterministic_for_a_seed(trained: Detector, case: Any) -> None:
    _, _, train, probe, _ = case
    again = clone(trained).fit(train)
    np.testing.assert_array_equal(again.score(probe).raw, trained.score(probe).raw)


def test_bad_input_is_a_clear_error(trained: Detector, case: Any) -> None:
    cls, params, _, _, bad = case
    for samples in bad:
        with pytest.raises(ValueError, match=r"no |expected|at least"):
            trained.score(samples)
        with pytest.raises(ValueError, match=r"no |expected|at least"):
            cls(**params).fit(samples)


def test_a_recipe_naming_a_kind_that_is_not_installed_is_refused(model_file: Path, tmp_path: Path) -> None:
    from huoyan.core.recipe import load_recipe
    from huoyan.runner import open_station

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"station: s1\nproduct: p\nrecipe: r\nversion: '1'\nsource: {{type: http}}\nmodel: {model_file}\n"
        "detector: vibration-envelope\n"
    )
    with pytest.raises(
        UnknownDetectorKind, match=r"'vibration-envelope' is not installed here.*patchcore, template, vibration"
    ):
        open_station(load_recipe(recipe), f"sqlite:///{tmp_path / 'r.db'}")
    recipe.write_text(recipe.read_text().replace("vibration-envelope", "patchcore"))
    assert open_station(load_recipe(recipe), f"sqlite:///{tmp_path / 'r.db'}").model_sha256


def test_model_files_of_the_previous_release_still_load(tmp_path: Path) -> None:
    """Written before kinds were recorded: PatchCore's card layout, the decision settings
    among the parameters."""
    import hashlib
    import json

    from safetensors.numpy import load_file, save_file

    from huoyan.core.artifact import read_metadata

    params, train, probe, _ = CASES["patchcore"]()
    model = REGISTRY["patchcore"](**params).fit(train)
    path = model.save(tmp_path / "new.safetensors")
    meta = read_metadata(path)
    del meta["kind"]
    meta["params"] = json.dumps({**json.loads(meta["params"]), "min_region_area": 0, "mm_per_px": None})
    card = json.loads(meta["card"])  # the first release's card: PatchCore's fields at the top
    card.update(card.pop("details"), name=card.pop("kind"), train_images=card.pop("train_samples"))
    meta["card"] = json.dumps(card)
    meta["card_sha256"] = hashlib.sha256(meta["card"].encode()).hexdigest()
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(path)), str(old), metadata=meta)
    loaded = load_detector(old)
    # bank_sha256 is set when saved; the first release knew no coreset radius, updates,
    # leave-one-out calibration or map scale
    later = {"bank_sha256", "coreset_radius", "updates", "calibration_scores", "map_scale"}
    unsaved = {k: v for k, v in loaded.card_.details.items() if k not in later}
    assert loaded.kind == "patchcore" and unsaved == {k: v for k, v in model.card_.details.items() if k not in later}
    assert loaded.card_.train_samples == model.card_.train_samples
    np.testing.assert_allclose(loaded.score(probe).raw, model.score(probe).raw, rtol=1e-5)
