from pathlib import Path

import numpy as np
import pytest

from huoyan.core.artifact import ArtifactError
from huoyan.core.models import InspectionResult, Verdict
from huoyan.decision.judge import ImageDecider, Policy
from huoyan.sampleline.generator import make_sample
from huoyan.vision import runtime
from huoyan.vision.imageio import list_images, read_image
from huoyan.vision.patchcore import NotFittedError, PatchCore


def judge(model: PatchCore, image: np.ndarray, name: str = "part.png", **policy: int) -> InspectionResult:
    """Score with the model, decide with the decision stage at the model's threshold."""
    scores, maps = model.score([image])
    return ImageDecider(Policy(model.threshold, **policy)).judge(image, float(scores[0]), maps[0], name)


def test_defect_scores_above_good_and_region_hits_mask(fitted: PatchCore, defect_sample) -> None:
    rng = np.random.default_rng(7)
    goods = [make_sample("washer", None, 128, rng)[0] for _ in range(4)]
    image, mask = defect_sample
    scores, maps = fitted.score([*goods, image])
    assert scores[-1] > scores[:-1].max()
    assert maps.shape == (5, 128, 128)
    result = judge(fitted, image)
    assert result.verdict is Verdict.NG and result.normalised_score > 1
    assert result.anomaly_map is not None and result.anomaly_map.shape == (128, 128)
    peak = np.unravel_index(np.argmax(result.anomaly_map), mask.shape)
    ys, xs = np.nonzero(mask)
    assert abs(peak[0] - ys.mean()) < 12 and abs(peak[1] - xs.mean()) < 12
    r = result.regions[0]
    assert r.x <= xs.mean() <= r.x + r.width and r.y <= ys.mean() <= r.y + r.height


def test_calibration_card(fitted: PatchCore) -> None:
    card = fitted.card_
    assert card is not None
    # 20% of 16 images (3) are held out to calibrate, then join the bank (the default).
    assert card.kind == "patchcore" and card.train_samples == 16 and card.calibration.n_calibration == 3
    assert card.details["bank_images"] == 16
    assert round(13 * 16 * 16 * 0.25) < card.details["bank_size"] <= round(16 * 16 * 16 * 0.25)
    assert card.calibration.threshold > 0 and len(card.train_content_sha256) == 64


def test_fit_is_deterministic(line_dir: Path) -> None:
    images = [read_image(p) for p in list_images(line_dir / "train" / "good")][:6]
    a = PatchCore(image_size=64, coreset_ratio=0.2, seed=4).fit(images)
    b = PatchCore(image_size=64, coreset_ratio=0.2, seed=4).fit(images)
    assert np.array_equal(a.bank_, b.bank_)
    assert a.threshold == b.threshold


def test_original_resolution_map_and_min_area(fitted: PatchCore, defect_sample) -> None:
    image, _ = defect_sample
    wide = np.ascontiguousarray(np.repeat(image, 2, axis=1))  # 128 x 256
    res = judge(fitted, wide)
    assert res.anomaly_map is not None and res.anomaly_map.shape == (128, 256)
    assert (res.width, res.height) == (256, 128)
    assert judge(fitted, image).verdict is Verdict.NG
    assert judge(fitted, image, min_region_area_px=10**6).verdict is Verdict.OK


def test_save_load_round_trip_and_float16(fitted: PatchCore, tmp_path: Path, defect_sample) -> None:
    path = fitted.save(tmp_path / "m")
    assert path.suffix == ".safetensors"
    loaded = PatchCore.load(path)
    image, _ = defect_sample
    np.testing.assert_allclose(loaded.score([image])[0], fitted.score([image])[0], rtol=1e-5)
    details = {**fitted.card_.details, "bank_sha256": loaded.card_.details["bank_sha256"]}
    assert loaded.card_ == fitted.card_.model_copy(update={"details": details})


def test_float16_bank_halves_bytes(line_dir: Path, tmp_path: Path) -> None:
    images = [read_image(p) for p in list_images(line_dir / "train" / "good")][:4]
    m16 = PatchCore(image_size=64, bank_dtype="float16").fit(images)
    m32 = PatchCore(image_size=64, bank_dtype="float32").fit(images)
    assert m16.bank_.nbytes * 2 == m32.bank_.nbytes
    assert PatchCore().bank_dtype == "float16"  # the default
    # The search works on the float16 bank in place: no float32 copy stays in memory.
    assert m16._index is not None and m16._index.bank.data_ptr() == m16.bank_.ctypes.data
    np.testing.assert_allclose(m16.score(images[:1])[0], m32.score(images[:1])[0], rtol=1e-2)
    p = m16.save(tmp_path / "h.safetensors")
    again = PatchCore.load(p)
    assert again.bank_.dtype == np.float16
    np.testing.assert_allclose(again.score(images[:1])[0], m16.score(images[:1])[0], rtol=1e-5)


def test_a_model_keeps_its_search_precision_and_scores_alike_in_either(
    fitted: PatchCore, tmp_path: Path, defect_sample
) -> None:
    from huoyan.vision import fused_search

    assert fitted.search_precision == "float32"  # the default: exact
    image, _ = defect_sample
    exact = fitted.score([image])
    fast = PatchCore.load(fitted.save(tmp_path / "m")).set_params(search_precision="bfloat16")
    assert fast._index is not None and (fast._index.packed is not None) == fused_search.bfloat16_available()
    scores = fast.score([image])
    want, got = np.asarray(exact.evidence), np.asarray(scores.evidence)
    np.testing.assert_allclose(got, want, rtol=1e-3)
    assert np.all(got >= want - 1e-4 * want.max())  # real rows: never nearer than the nearest
    np.testing.assert_allclose(scores.raw, exact.raw, rtol=1e-3)
    again = PatchCore.load(fast.save(tmp_path / "b"))
    assert again.search_precision == "bfloat16"
    np.testing.assert_allclose(again.score([image]).raw, scores.raw, rtol=1e-6)


def test_a_bfloat16_backbone_is_refused_where_the_cpu_cannot_run_it(
    fitted: PatchCore, line_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "bfloat16_backbone_available", lambda: False)
    images = [read_image(p) for p in list_images(line_dir / "train" / "good")]
    # In float32 its features would move by several percent: refused at fit and at load.
    with pytest.raises(ValueError, match="backbone_precision='bfloat16' needs"):
        PatchCore(image_size=128, coreset_ratio=0.25, backbone_precision="bfloat16").fit(images)
    path = fitted.save(tmp_path / "m")
    assert PatchCore.load(path).backbone_precision == "float32"
    saved = PatchCore.load(path).set_params(backbone_precision="bfloat16").save(tmp_path / "b")
    with pytest.raises(ValueError, match="backbone_precision"):
        PatchCore.load(saved)


@pytest.mark.skipif(not runtime.bfloat16_backbone_available(), reason="this CPU has no bfloat16 arithmetic")
def test_a_bfloat16_backbone_rounds_the_features_and_stays_with_the_model(
    fitted: PatchCore, line_dir: Path, tmp_path: Path, defect_sample
) -> None:
    images = [read_image(p) for p in list_images(line_dir / "train" / "good")]
    image, _ = defect_sample
    fast = PatchCore(image_size=128, coreset_ratio=0.25, seed=0, backbone_precision="bfloat16").fit(images)
    assert fast._features_runtime().name == "openvino-bf16"
    # Rounded features, not other ones: close to the float32 backbone's, yet not equal.
    want, got = fitted.feature_maps([image]), fast.feature_maps([image])
    for w, g in zip(want, got, strict=True):
        error = float(np.abs(g - w).mean() / np.abs(w).mean())
        assert 1e-4 < error < 0.1
    assert fast.score([image]).raw[0] > fast.threshold  # the defect still stands out
    again = PatchCore.load(fast.save(tmp_path / "b"))
    assert again.backbone_precision == "bfloat16"
    np.testing.assert_allclose(again.score([image]).raw, fast.score([image]).raw, rtol=1e-5)
    # The same bank fed float32 features is another model: the precision is the model's.
    plain = PatchCore.load(fast.save(tmp_path / "c")).set_params(backbone_precision="float32")
    assert plain._features_runtime().name == "onnx"
    assert not np.allclose(plain.score([image]).raw, fast.score([image]).raw, rtol=1e-4)


def test_tampered_truncated_and_foreign_files_are_refused(fitted: PatchCore, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    flipped = tmp_path / "flipped.safetensors"
    data[-5] ^= 0xFF
    flipped.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="memory bank does not match"):
        PatchCore.load(flipped)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match="truncated or corrupt"):
        PatchCore.load(cut)
    edited = tmp_path / "edited.safetensors"
    raw = path.read_bytes()
    thr = repr(fitted.threshold)[:6].encode()
    assert thr in raw
    edited.write_bytes(raw.replace(thr, b"9" * len(thr), 1))
    with pytest.raises(ArtifactError, match="card does not match"):
        PatchCore.load(edited)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ArtifactError):
        PatchCore.load(junk)
    with pytest.raises(ArtifactError, match="no such model"):
        PatchCore.load(tmp_path / "absent.safetensors")


def test_unfitted_and_bad_parameters() -> None:
    with pytest.raises(NotFittedError):
        PatchCore().score([np.zeros((8, 8, 3), np.uint8)])
    few = [np.zeros((8, 8, 3), np.uint8)] * 2
    # __init__ only stores parameters (scikit-learn's contract); fit says what is wrong with them.
    for bad in (
        {"image_size": 100},
        {"bank_dtype": "int8"},
        {"calibration_fraction": 1.0},
        {"backbone": "vgg"},
        {"search_precision": "float16"},
        {"backbone_precision": "float16"},
        {"image_score": "mean"},
    ):
        model = PatchCore(**bad)
        assert model.get_params()[next(iter(bad))] == next(iter(bad.values()))
        with pytest.raises(ValueError, match=next(iter(bad))):
            model.fit(few * 4)
    with pytest.raises(ValueError, match="at least 3"):
        PatchCore(image_size=64).fit(few)
    with pytest.raises(ValueError, match="no parameter"):
        PatchCore().set_params(image_sise=64)


def test_calibration_images_can_join_the_bank(line_dir: Path) -> None:
    images = [read_image(p) for p in list_images(line_dir / "train" / "good")]
    held_out = PatchCore(image_size=64, coreset_ratio=0.25, seed=1, calibration_in_bank=False).fit(images)
    joined = PatchCore(image_size=64, coreset_ratio=0.25, seed=1).fit(images)
    a, b = held_out.card_, joined.card_
    assert a is not None and b is not None
    # Same threshold (set before the calibration images join), a bank from every image.
    assert a.calibration.threshold == b.calibration.threshold
    # The selection went on over their patches: some joined, never more than the bank's ratio.
    kept, grown = a.details, b.details
    assert (kept["bank_images"], grown["bank_images"]) == (13, 16)
    assert kept["bank_size"] < grown["bank_size"] <= round(16 * 8 * 8 * 0.25)
    # The bank only grew, so no patch of a new part is farther from it than before.
    new = make_sample("washer", None, 128, np.random.default_rng(123))[0]
    sa, ma = held_out.score([new])
    sb, mb = joined.score([new])
    assert sb[0] <= sa[0] * (1 + 1e-4) and (mb <= ma * (1 + 1e-4) + 1e-5).all()
    assert PatchCore.load(joined.save(line_dir.parent / "joined.safetensors")).calibration_in_bank


@pytest.mark.parametrize("calibration", ["holdout", "leave-one-out"])
def test_a_max_mean_score_is_calibrated_on_itself_and_its_map_crosses_where_the_maximum_would(
    line_dir: Path, defect_sample, tmp_path: Path, calibration: str
) -> None:
    images = [read_image(p) for p in list_images(line_dir / "train" / "good")][:10]
    params = {"image_size": 128, "coreset_ratio": 0.25, "seed": 2, "calibration": calibration}
    peak = PatchCore(**params).fit(images)
    both = PatchCore(**params, image_score="max-mean").fit(images)
    assert np.array_equal(peak.bank_, both.bank_)  # the score changes nothing of the bank
    rng = np.random.default_rng(5)
    parts = [make_sample("washer", None, 128, rng)[0] for _ in range(3)] + [defect_sample[0]]
    distances = np.asarray(peak.score(parts).evidence)
    scores, maps = both.score(parts)
    flat = distances.reshape(len(parts), -1)
    np.testing.assert_allclose(scores, np.sqrt(flat.max(1) * flat.mean(1)), rtol=1e-5)
    # The map is the distances rescaled: the threshold on it is the maximum's own level.
    scale = both.map_scale_
    assert scale == both.card_.details["map_scale"] and 0 < scale < 1
    np.testing.assert_allclose(maps, distances * np.float32(scale), rtol=1e-6)
    np.testing.assert_allclose(both.threshold / scale, peak.threshold, rtol=1e-6)
    assert both.threshold < peak.threshold  # the geometric mean lies below the maximum
    # judged by the one decision stage: good parts OK without regions, the hole NG where it is
    for part in parts[:3]:
        result = judge(both, part)
        assert result.verdict is Verdict.OK and result.regions == []
    image, mask = defect_sample
    result = judge(both, image)
    assert result.verdict is Verdict.NG and result.regions
    ys, xs = np.nonzero(mask)
    r = result.regions[0]
    assert r.x <= xs.mean() <= r.x + r.width and r.y <= ys.mean() <= r.y + r.height
    loaded = PatchCore.load(both.save(tmp_path / "m.safetensors"))
    assert loaded.get_params()["image_score"] == "max-mean" and loaded.map_scale_ == scale
    again = loaded.score(parts)
    np.testing.assert_array_equal(again.raw, scores)
    np.testing.assert_array_equal(again.evidence, maps)
