"""Shared fixtures: a small synthetic line and a model fitted on it, built once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from huoyan.sampleline.generator import generate_line, make_sample
from huoyan.vision.imageio import list_images, read_image
from huoyan.vision.patchcore import PatchCore


@pytest.fixture(scope="session")
def line_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("line")
    generate_line(out, products=("washer",), n_train=16, n_test_good=6, n_test_defect=2, size=128, seed=3)
    return out / "washer"


@pytest.fixture(scope="session")
def fitted(line_dir: Path) -> PatchCore:
    images = [read_image(p) for p in list_images(line_dir / "train" / "good")]
    return PatchCore(image_size=128, coreset_ratio=0.25, seed=0).fit(images)


@pytest.fixture()
def defect_sample() -> tuple[np.ndarray, np.ndarray]:
    return make_sample("washer", "hole", 128, np.random.default_rng(99))
