"""Few-shot models: fitted from a handful of good images, every one of them calibrates
(leave-one-out, or ``auto`` for few images), and the false-reject bound their cards
state stays true."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.stats import binom

from huoyan.cli import main
from huoyan.core.calibration import calibrate
from huoyan.sampleline.generator import make_sample
from huoyan.vision.patchcore import PatchCore

DRAWS = 24


def washers(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [make_sample("washer", None, 64, rng)[0] for _ in range(n)]


@pytest.fixture(scope="module")
def fresh_good() -> list[np.ndarray]:
    """The line's future good parts, which no draw learns from."""
    return washers(150, np.random.default_rng(12345))


def violations(bounds_and_rates: list[tuple[float, float]], confidence: float) -> tuple[int, float]:
    """How many draws' realised false-reject rate exceeded the stated bound, and the chance
    of that many or more were each bound true at ``confidence``."""
    count = sum(rate > bound for bound, rate in bounds_and_rates)
    return count, float(binom.sf(count - 1, len(bounds_and_rates), 1 - confidence))


def test_few_shot_calibration_keeps_its_stated_bound_on_repeated_draws(fresh_good: list[np.ndarray]) -> None:
    honest, in_sample = [], []
    for draw in range(DRAWS):
        train = washers(16, np.random.default_rng(draw))
        # a target where 16 scores give a conformal threshold below their maximum, so the bound bites
        model = PatchCore(image_size=64, false_reject_rate=0.25, seed=draw, calibration="auto").fit(train)
        cal = model.card_.calibration
        assert model.card_.details["calibration_scores"] == "leave-one-out" and cal.n_calibration == 16
        assert cal.method == "conformal" and model.bank_.shape[0] == 16 * 8 * 8  # every patch kept
        future = model.score(fresh_good).raw
        honest.append((cal.false_reject_rate_upper, float(np.mean(future > cal.threshold))))
        # What the test would catch: the same images scored against a bank that holds them.
        naive = calibrate(model.score(train).raw, 0.25, cal.confidence)
        in_sample.append((naive.false_reject_rate_upper, float(np.mean(future > naive.threshold))))
    count, p = violations(honest, 0.95)
    assert p > 0.01, f"{count} of {DRAWS} draws broke their stated bound"
    bad_count, bad_p = violations(in_sample, 0.95)
    assert bad_p < 1e-6 and bad_count > DRAWS // 2


def test_eight_images_are_enough_and_none_is_spent_on_calibration_alone() -> None:
    rng = np.random.default_rng(7)
    model = PatchCore(image_size=64, seed=0, calibration="leave-one-out").fit(washers(8, rng))
    details = model.card_.details
    assert details["bank_images"] == 8 and details["calibration_scores"] == "leave-one-out"
    assert model.card_.calibration.n_calibration == 8
    # Eight images tell a hole from every good part they calibrate with (at a 0.5% target the
    # threshold itself is a tail extrapolation from eight scores: far out, as honesty needs).
    hole = make_sample("washer", "hole", 64, np.random.default_rng(3))[0]
    assert model.score([hole]).raw[0] > model.card_.calibration.score_quantiles[-1]
    assert model.card_.calibration.method == "parametric-tail"
    # by default, the held-out split as before
    held = PatchCore(image_size=64, seed=0).fit(washers(8, np.random.default_rng(7)))
    assert held.card_.details["calibration_scores"] == "held-out" and held.card_.calibration.n_calibration == 2
    with pytest.raises(ValueError, match="calibration must be one of"):
        PatchCore(calibration="bootstrap").fit(washers(8, rng))


def test_auto_calibrates_leave_one_out_only_for_few_images() -> None:
    many = PatchCore(image_size=64, seed=0, calibration="auto").fit(washers(24, np.random.default_rng(8)))
    assert many.card_.details["calibration_scores"] == "held-out"


def test_fit_suggests_leave_one_out_for_few_images_and_takes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "good"
    folder.mkdir()
    for i, img in enumerate(washers(8, np.random.default_rng(2))):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert main(["fit", str(folder), "-o", str(tmp_path / "a.safetensors"), "--image-size", "64"]) == 0
    assert "--calibration leave-one-out" in capsys.readouterr().err
    out = tmp_path / "b.safetensors"
    args = ["fit", str(folder), "-o", str(out), "--image-size", "64", "--calibration", "leave-one-out", "--json"]
    assert main(args) == 0
    card = json.loads(capsys.readouterr().out)["card"]
    assert card["details"]["calibration_scores"] == "leave-one-out" and card["calibration"]["n_calibration"] == 8


def test_mirrored_copies_join_the_bank_only_when_asked() -> None:
    images = washers(4, np.random.default_rng(4))
    plain = PatchCore(image_size=64, calibration="leave-one-out").fit(images)
    flips = PatchCore(image_size=64, calibration="leave-one-out", augment="flips").fit(images)
    turns = PatchCore(image_size=64, calibration="leave-one-out", augment="rot90").fit(images)
    assert flips.bank_.shape[0] == 4 * plain.bank_.shape[0] and turns.bank_.shape[0] == 8 * plain.bank_.shape[0]
    mirrored = np.ascontiguousarray(images[0][::-1, ::-1])
    turned = np.ascontiguousarray(np.rot90(images[1]))
    assert flips.score([mirrored]).raw[0] < 0.1 * plain.score([mirrored]).raw[0]
    assert turns.score([turned]).raw[0] < 0.1 * flips.score([turned]).raw[0]
    with pytest.raises(ValueError, match="augment must be one of"):
        PatchCore(augment="jitter").fit(images)
