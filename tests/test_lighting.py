"""Lighting normalisation: a part's brightness, contrast and shading do not reach the
backbone when a model asks so, and every runtime and export normalises alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from huoyan.sampleline.generator import make_sample
from huoyan.vision.backbone import build_backbone
from huoyan.vision.edge_runner import open_model, resize_to
from huoyan.vision.export import EXPORT_RTOL, export
from huoyan.vision.imageio import list_images, read_image
from huoyan.vision.lighting import MIN_SPREAD, TARGET_SPREAD, LightingNormalisation
from huoyan.vision.patchcore import PatchCore
from huoyan.vision.runtime import OnnxRuntime, TorchRuntime


def _texture(size: int = 64, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(-0.3, 0.3, (1, 3, size, size)).astype(np.float32))


def test_image_mode_ignores_a_change_of_brightness_and_contrast() -> None:
    x = _texture()
    norm = LightingNormalisation("image", 64)
    y = norm(x)
    darker_flatter = norm(x * 0.5 - 0.4)
    assert torch.allclose(darker_flatter, y, atol=1e-5)
    assert float(y.std()) == pytest.approx(TARGET_SPREAD, rel=1e-3)
    # what the backbone was trained with is left alone in the default mode
    assert torch.equal(LightingNormalisation("fixed", 64)(x * 0.5 - 0.4), x * 0.5 - 0.4)


def test_shading_mode_divides_out_light_falling_off_across_the_part() -> None:
    x = _texture()
    levels = (x + 1.0) * 127.5
    falloff = torch.linspace(0.5, 1.5, 64).view(1, 1, 1, -1)  # brighter to the right
    shaded = levels * falloff / 127.5 - 1.0
    reference = LightingNormalisation("shading", 64)(x)
    by_shading = LightingNormalisation("shading", 64)(shaded)
    by_image = LightingNormalisation("image", 64)(shaded)
    shading_error = float((by_shading - reference).abs().mean())
    image_error = float((by_image - LightingNormalisation("image", 64)(x)).abs().mean())
    assert shading_error < 0.4 * image_error

    # the left half much less darker than the right (the blur's mirrored borders bend a
    # ramp near the edges, so not all of it goes: a quarter or so is left here)
    def left_darker(y: torch.Tensor) -> float:
        return float(y[..., 32:].mean() - y[..., :32].mean())

    assert abs(left_darker(by_shading)) < 0.35 * left_darker(by_image)


def test_a_flat_image_is_not_turned_into_amplified_noise() -> None:
    flat = torch.zeros(1, 3, 64, 64) + 0.2
    assert torch.allclose(LightingNormalisation("image", 64)(flat), torch.zeros_like(flat), atol=1e-5)
    faint = flat + 0.001 * _texture()
    out = LightingNormalisation("image", 64)(faint)
    assert float(out.std()) <= 0.001 * 0.3 * TARGET_SPREAD / MIN_SPREAD * 1.01


def test_an_unknown_mode_is_named() -> None:
    with pytest.raises(ValueError, match="lighting must be one of"):
        LightingNormalisation("auto", 64)
    with pytest.raises(ValueError, match="lighting must be one of"):
        PatchCore(lighting="auto").fit([np.zeros((64, 64, 3), np.uint8)] * 3)


@pytest.mark.parametrize("mode", ["image", "shading"])
def test_the_onnx_graph_normalises_as_torch_does(mode: str) -> None:
    model = build_backbone("efficientnet-lite0", image_size=96, lighting=mode)
    x = np.random.default_rng(1).uniform(-1, 0.2, (2, 3, 96, 96)).astype(np.float32)
    for got, want in zip(OnnxRuntime(model, 96)(x), TorchRuntime(model)(x), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-3)


def test_a_lighting_model_passes_a_good_part_photographed_darker(line_dir: Path, tmp_path: Path) -> None:
    images = [read_image(p) for p in list_images(line_dir / "train" / "good")]
    good = make_sample("washer", None, 128, np.random.default_rng(7))[0]
    darker = (good.astype(np.float32) * 0.6).astype(np.uint8)
    fixed = PatchCore(image_size=128, coreset_ratio=0.25, seed=0).fit(images)
    lit = PatchCore(image_size=128, coreset_ratio=0.25, seed=0, lighting="image").fit(images)
    # the plain model takes the darker exposure for a defect; the normalising one does not
    assert fixed.score([darker]).raw[0] > fixed.threshold
    dark, bright = lit.score([darker]).raw[0], lit.score([good]).raw[0]
    assert dark < lit.threshold
    assert dark == pytest.approx(bright, rel=0.1)
    # the mode is kept with the model
    again = PatchCore.load(lit.save(tmp_path / "lit"))
    assert again.lighting == "image"
    np.testing.assert_allclose(again.score([darker]).raw, lit.score([darker]).raw, rtol=1e-4)
    assert PatchCore.load(fixed.save(tmp_path / "fixed")).lighting == "fixed"


def test_an_exported_shading_model_scores_as_the_python_model(line_dir: Path, tmp_path: Path) -> None:
    images = [read_image(p) for p in list_images(line_dir / "train" / "good")]
    model = PatchCore(image_size=128, coreset_ratio=0.25, seed=0, lighting="shading").fit(images)
    written = export(model, tmp_path / "shading", "onnx", "digest")
    scorer, threshold, size = open_model(written[0])
    assert threshold == model.threshold and size == model.image_size
    tests = [read_image(p) for p in list_images(line_dir / "test", recursive=True)]
    want = model.score(tests)
    scores, maps = scorer(np.stack([resize_to(img, size) for img in tests]))
    assert np.abs(scores - want.raw).max() <= EXPORT_RTOL * want.raw.min()
    assert (np.abs(maps - np.asarray(want.evidence)) / want.raw[:, None, None]).max() <= EXPORT_RTOL
