"""Golden-template comparison: registration, tolerance, classification, errors, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from huoyan.core.artifact import ArtifactError
from huoyan.core.detector import Comparison
from huoyan.core.models import DefectBox, PairedImage, Region, Verdict
from huoyan.decision.judge import DefectDecider, Policy, decider_for
from huoyan.detectors import load_detector
from huoyan.vision.template.detector import TemplateComparison
from huoyan.vision.template.registration import Registrar, RegistrationError
from pcbkit import TYPES, board, forward, move, pair, relight, training_pairs

FAST = {"n_trees": 40, "workers": 1, "seed": 1}


@pytest.fixture(scope="module")
def trained() -> TemplateComparison:
    return TemplateComparison(**FAST).fit(training_pairs(30))


def _corner_error(found: np.ndarray, expected: np.ndarray, w: int, h: int) -> float:
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64).T
    a = found @ corners
    b = expected @ corners
    return float(np.abs(a[:2] / a[2] - b[:2] / b[2]).max())


@pytest.mark.parametrize(
    ("dx", "dy", "angle", "scale"),
    [(20.0, -15.0, 0.0, 1.0), (-12.5, 18.25, 3.0, 1.0), (6.3, -4.7, -2.8, 1.02), (-19.0, -19.0, 1.5, 0.98)],
)
def test_registration_recovers_a_known_shift_rotation_and_scale_to_half_a_pixel(
    dx: float, dy: float, angle: float, scale: float
) -> None:
    template = cv2.GaussianBlur(board(7, 256).image, (3, 3), 0)
    h, w = template.shape
    m = forward(w, h, dx, dy, angle, scale)
    tested = cv2.warpAffine(template, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    tested = relight(tested, 0.7, 30)  # and re-lit
    found = Registrar().register(tested, template)
    # The warp takes tested-image pixels to template pixels: the inverse of m.
    expected = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
    assert _corner_error(found.warp.astype(np.float64), expected, w, h) < 0.5
    assert found.correlation > 0.9


def test_a_good_part_shifted_and_relit_within_the_tolerance_has_no_defect(trained: TemplateComparison) -> None:
    good = [
        pair(500, (), dx=7.3, dy=-11.6, angle_deg=1.5, gain=0.8, offset=25),
        pair(501, (), dx=-16.0, dy=4.5, angle_deg=-2.5, gain=1.15, offset=-20),
    ]
    scores, evidence = trained.score(good)
    for score, comparison in zip(scores, evidence, strict=True):
        assert comparison.error is None and comparison.regions == []
        assert score <= 1.0
    # The same moved and re-lit part with a defect: found where it is.
    defective = pair(500, ("copper",), dx=7.3, dy=-11.6, angle_deg=1.5, gain=0.8, offset=25)
    clean = pair(500, (), dx=7.3, dy=-11.6, angle_deg=1.5, gain=0.8, offset=25)
    (score,), (comparison,) = trained.score([defective])
    assert score > 1.0 and len(comparison.regions) == 1
    diff = cv2.absdiff(defective.image, clean.image) > 60
    ys, xs = np.nonzero(diff)
    r = comparison.regions[0]
    assert r.x <= xs.min() and xs.max() < r.x + r.width and r.y <= ys.min() and ys.max() < r.y + r.height


def _overlaps(r: Region, truth: DefectBox) -> bool:
    return r.x < truth.x2 and truth.x1 < r.x + r.width and r.y < truth.y2 and truth.y1 < r.y + r.height


def test_each_defect_type_is_found_and_named(trained: TemplateComparison) -> None:
    named, found, total = 0, 0, 0
    for seed in range(900, 912):
        kind = TYPES[seed % 6]
        p = pair(seed, (kind,))
        comparison = trained.score([p]).evidence[0]
        truth = p.defects[0]
        total += 1
        hits = [r for r in comparison.regions if _overlaps(r, truth)]
        found += bool(hits)
        named += any(r.label == kind and (r.confidence or 0) > 0.3 for r in hits)
    assert found == total
    assert named >= total - 1, f"{named} of {total} named right"


def test_a_pair_that_cannot_be_registered_is_an_error_with_the_reason(trained: TemplateComparison) -> None:
    rng = np.random.default_rng(0)
    template = board(3).image
    noise = rng.integers(0, 256, template.shape, dtype=np.uint8)
    other_size = cv2.resize(template, (160, 192))
    scores, evidence = trained.score(
        [PairedImage(noise, template), PairedImage(other_size, template), pair(4, ("open",))]
    )
    assert math.isnan(scores[0]) and "registration failed" in (evidence[0].error or "")
    assert math.isnan(scores[1]) and "160x192 px but its template is 192x192" in (evidence[1].error or "")
    assert scores[2] > 1.0 and evidence[2].error is None  # the batch goes on
    decider = decider_for(trained, Policy.of(trained.threshold))
    assert isinstance(decider, DefectDecider)
    judged = decider.judge(noise, float(scores[0]), evidence[0], "noise.png")
    assert judged.verdict == Verdict.ERROR and "registration failed" in (judged.error or "")
    ng = decider.judge(noise, float(scores[2]), evidence[2], "open.png")
    assert ng.verdict == Verdict.NG and ng.regions and ng.regions[0].label is not None


def test_the_recipe_threshold_and_region_rules_decide_over_named_defects(trained: TemplateComparison) -> None:
    from huoyan.core.recipe import Decision, RegionRule

    p = pair(77, ("short", "copper"))
    (score,), (comparison,) = trained.score([p])
    assert isinstance(comparison, Comparison) and len(comparison.regions) == 2
    judged = DefectDecider(Policy.of(trained.threshold)).judge(p.image, float(score), comparison, "p")
    assert judged.verdict == Verdict.NG and len(judged.regions) == 2
    strongest = max(r.max_score for r in comparison.regions)
    lenient = DefectDecider(Policy(threshold=strongest)).judge(p.image, float(score), comparison, "p")
    assert lenient.verdict == Verdict.OK and lenient.regions == []
    big_only = Decision(ng_if_any_region=[RegionRule(field="area_mm2", above=1.0)])
    rule = DefectDecider(Policy.of(1.0, big_only, mm_per_px=0.02)).judge(p.image, float(score), comparison, "p")
    assert rule.verdict == Verdict.OK and all(r.area_mm2 is not None and r.area_mm2 < 1 for r in rule.regions)


def test_a_fixed_template_model_judges_bare_images(tmp_path: Path) -> None:
    golden = pair(11).template
    assert golden is not None
    parts = [
        PairedImage(move(pair(11, (TYPES[i % 6],)).image, 0, 0), golden, pair(11, (TYPES[i % 6],)).defects)
        for i in range(6)
    ]
    model = TemplateComparison(template_mode="fixed", **FAST).fit(parts)
    assert model.fixed_template is not None and model.card_.details["template_sha256"]
    loaded = load_detector(model.save(tmp_path / "fixed"))
    scores, evidence = loaded.score([golden, pair(11, ("copper",)).image])
    assert scores[0] <= 1.0 and not evidence[0].regions
    assert scores[1] > 1.0 and evidence[1].regions
    with pytest.raises(ValueError, match="same template"):
        TemplateComparison(template_mode="fixed", **FAST).fit([pair(1), pair(2)])


def test_a_tampered_template_model_is_refused(trained: TemplateComparison, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    from huoyan.core.artifact import read_metadata

    path = trained.save(tmp_path / "m")
    tensors = load_file(str(path))
    tensors["tolerance"] = tensors["tolerance"] * 2  # a looser tolerance, slipped in
    save_file(tensors, str(path), metadata=read_metadata(path))
    with pytest.raises(ArtifactError, match="'tolerance' does not match its checksum"):
        load_detector(path)


def test_an_older_template_model_runs_without_the_local_shift_and_on_the_features_it_knew(
    trained: TemplateComparison, tmp_path: Path
) -> None:
    """A file from before the local re-alignment and the solid-piece features: no
    ``local_shift_px`` in its parameters, a forest over the first 30 features."""
    from huoyan.core.artifact import read_artifact, write_artifact
    from huoyan.vision.template.classify import FEATURES, train_classifier

    tensors, card, params = read_artifact(trained.save(tmp_path / "new"), "template")
    del params["local_shift_px"]
    rng = np.random.default_rng(0)
    older = 30
    assert len(FEATURES) > older
    onnx_bytes, classes = train_classifier(
        rng.normal(size=(60, older)).astype(np.float32), [TYPES[i % 6] for i in range(60)], 5, 0
    )
    tensors["classifier_onnx"] = np.frombuffer(onnx_bytes, np.uint8)
    card = card.model_copy(update={"details": {**card.details, "classifier_classes": classes}})
    old = load_detector(write_artifact(tmp_path / "old", "template", tensors, card, params))
    assert isinstance(old, TemplateComparison) and old.local_shift_px == 0
    comparison = old.score([pair(905, ("copper",))]).evidence[0]
    assert comparison.error is None and comparison.regions  # its 30-feature forest still runs


def test_registration_refuses_an_implausible_motion() -> None:
    template = board(5, 256).image
    turned = move(template, 0, 0, angle_deg=25)
    with pytest.raises(RegistrationError):
        Registrar().register(turned, template)


def _write_pair(folder: Path, stem: str, p: PairedImage) -> None:
    assert p.template is not None
    cv2.imwrite(str(folder / f"{stem}_test.png"), p.image)
    cv2.imwrite(str(folder / f"{stem}_temp.png"), p.template)
    notes = folder.parent / f"{folder.name}_not"
    notes.mkdir(exist_ok=True)
    (notes / f"{stem}.txt").write_text(
        "".join(f"{d.x1} {d.y1} {d.x2} {d.y2} {TYPES.index(d.label) + 1}\n" for d in p.defects)
    )


def test_cli_fits_predicts_and_evaluates_pairs_and_bad_pairs_are_error_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from huoyan.cli import main

    train = tmp_path / "train" / "g1"
    train.mkdir(parents=True)
    for i, p in enumerate(training_pairs(18)):
        _write_pair(train, f"{i:03d}", p)
    model = tmp_path / "pcb.safetensors"
    assert main(["fit", "--detector", "template", str(tmp_path / "train"), "-o", str(model), "--n-trees", "30"]) == 0
    assert "of the 18 training pairs show a defect no annotation covers" in capsys.readouterr().out

    test = tmp_path / "test" / "g2"
    test.mkdir(parents=True)
    for i, kinds in enumerate([("open",), ("copper", "short"), ()]):
        _write_pair(test, f"ok{i}", pair(300 + i, kinds))
    (test / "corrupt_test.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cv2.imwrite(str(test / "corrupt_temp.png"), board(1).image)
    cv2.imwrite(str(test / "small_test.png"), board(2).image[:100])
    cv2.imwrite(str(test / "small_temp.png"), board(2).image)
    cv2.imwrite(str(test / "noise_test.png"), np.random.default_rng(1).integers(0, 256, (192, 192), dtype=np.uint8))
    cv2.imwrite(str(test / "noise_temp.png"), board(2).image)
    cv2.imwrite(str(test / "alone_test.png"), board(2).image)  # its template is missing
    out = tmp_path / "out"
    assert main(["predict", str(model), str(tmp_path / "test"), "--out", str(out)]) == 0
    rows = {Path(r["path"]).name: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert set(rows) == {f"ok{i}_test.png" for i in range(3)} | {
        f"{s}_test.png" for s in ("corrupt", "small", "noise", "alone")
    }
    for bad, reason in [
        ("corrupt", "not a readable image"),
        ("small", "but its template is"),
        ("noise", "registration failed"),
        ("alone", "cannot read file"),
    ]:
        assert rows[f"{bad}_test.png"]["verdict"] == "ERROR" and reason in rows[f"{bad}_test.png"]["error"], bad
    assert rows["ok0_test.png"]["verdict"] == "NG" and rows["ok2_test.png"]["verdict"] == "OK"
    labels = {r["label"] for r in rows["ok1_test.png"]["regions"]}
    assert rows["ok1_test.png"]["verdict"] == "NG" and labels <= set(TYPES) and labels
    assert all(0 < r["confidence"] <= 1 for r in rows["ok1_test.png"]["regions"])

    csv = tmp_path / "pairs.csv"
    csv.write_text(
        "image,template,annotation\n"
        + "".join(f"test/g2/ok{i}_test.png,test/g2/ok{i}_temp.png,test/g2_not/ok{i}.txt\n" for i in range(3))
    )
    capsys.readouterr()
    assert main(["evaluate", str(model), "--pairs", str(csv), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pairs"] == 3 and result["errors"] == 0
    assert result["class_agnostic"]["n_truth"] == 3 and result["class_agnostic"]["recall"] == 1.0


def _stretch(image: np.ndarray, amplitude: float) -> np.ndarray:
    """A smooth, non-rigid stretch (a flexible board, a print on a curved label)."""
    h, w = image.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx = amplitude * np.sin(2 * np.pi * ys / h)
    dy = amplitude * np.sin(2 * np.pi * xs / w)
    return cv2.remap(image, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_elastic_registration_follows_a_stretch_that_a_rigid_one_reports_as_defects() -> None:
    train = training_pairs(24)
    # Registration alone: the local re-alignment of candidates (tested below) is off.
    rigid = TemplateComparison(local_shift_px=0, **FAST).fit(train)
    elastic = TemplateComparison(elastic_px=8, local_shift_px=0, **FAST).fit(train)
    good = [pair(700 + i) for i in range(3)]
    stretched = [PairedImage(_stretch(p.image, 4.0), p.template) for p in good]
    false_rigid = [len(c.regions) for c in rigid.score(stretched).evidence]
    false_elastic = [len(c.regions) for c in elastic.score(stretched).evidence]
    assert min(false_rigid) >= 5, false_rigid
    assert max(false_elastic) <= 2, false_elastic
    defective = pair(800, ("copper",))
    (_, (comparison,)) = elastic.score([PairedImage(_stretch(defective.image, 4.0), defective.template)])
    assert "copper" in [r.label for r in comparison.regions]
    # Where the flow has nothing to hold on to (flat laminate, borders) it is not
    # believed beyond a quarter of the smoothing scale.
    assert good[0].template is not None
    alignment = Registrar(elastic_px=8).register(stretched[0].image, good[0].template)
    assert alignment.flow is not None and float(np.abs(alignment.flow).max()) <= 0.25 * 8 + 1e-4


def _bulge(image: np.ndarray, cx: float, cy: float, shift_px: float, sigma: float = 14.0) -> np.ndarray:
    """``image`` with the pattern around (cx, cy) moved sideways by up to ``shift_px``
    and nowhere else: a board etched or stretched unevenly in one place."""
    h, w = image.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx = shift_px * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
    return cv2.remap(image, xs - dx, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_a_candidate_that_moving_the_template_locally_explains_is_not_a_defect() -> None:
    train = training_pairs(24)
    checked = TemplateComparison(**FAST).fit(train)
    unchecked = TemplateComparison(local_shift_px=0, **FAST).fit(train)
    b = board(710)
    good = pair(710)
    x = b.traces[1] + b.trace_width  # a trace's right edge, in the middle of the board
    bulged = PairedImage(_bulge(good.image, x, 96, 4.5), good.template)
    assert len(unchecked.score([bulged]).evidence[0].regions) >= 1
    assert checked.score([bulged]).evidence[0].regions == []
    # A spur on the bulged edge stands out once the neighbourhood is moved: still found.
    spurred = pair(710, ("spur",))
    truth = spurred.defects[0]
    cy = (truth.y1 + truth.y2) / 2
    moved = PairedImage(_bulge(spurred.image, (truth.x1 + truth.x2) / 2, cy, 3.0), spurred.template)
    regions = checked.score([moved]).evidence[0].regions
    assert any(_overlaps(r, truth) for r in regions)


def test_candidate_statistics_are_those_opencv_computes() -> None:
    from huoyan.vision.template.compare import component_stats

    rng = np.random.default_rng(4)
    for _ in range(50):
        shape = (int(rng.integers(5, 90)), int(rng.integers(5, 90)))
        mask = (rng.random(shape) < rng.uniform(0.0, 0.6)).astype(np.uint8)
        count, labels, expected, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        own = component_stats(mask, labels, count)
        assert np.array_equal(own[1:], expected[1:])
        assert own[0, cv2.CC_STAT_AREA] == expected[0, cv2.CC_STAT_AREA]


def test_a_part_with_nothing_out_of_tolerance_has_no_candidates() -> None:
    from huoyan.vision.template.compare import candidates

    quiet = candidates(np.full((40, 60), 0.5, np.float32), merge_px=11)
    assert len(quiet) == 0 and quiet.labels.shape == (40, 60) and not quiet.labels.any()
    assert quiet.stats.tolist() == [[0, 0, 60, 40, 2400]]
    ratio = np.full((40, 60), 0.5, np.float32)
    ratio[10:14, 20:25] = 3.0
    one = candidates(ratio, merge_px=11)
    assert len(one) == 1 and one.stats[1].tolist() == [20, 10, 5, 4, 20]
