"""Edge export: one ONNX or OpenVINO file scores and maps as the Python model does, and
the reference runner beside it works where Huoyan is not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from huoyan.cli import main
from huoyan.detectors import REGISTRY, load_detector
from huoyan.vision import fused_search
from huoyan.vision.edge_runner import open_model, read_rgb8, resize_to
from huoyan.vision.export import EXPORT_RTOL, ExportError, export
from huoyan.vision.imageio import list_images, read_image
from huoyan.vision.patchcore import PatchCore
from huoyan.vision.runtime import bfloat16_backbone_available


def _test_images(line_dir: Path) -> list[Path]:
    return list_images(line_dir / "test", recursive=True)


@pytest.fixture(scope="module")
def model(model_file: Path) -> PatchCore:
    detector = load_detector(model_file)
    assert isinstance(detector, PatchCore)
    return detector


@pytest.mark.parametrize(("fmt", "chunk_rows"), [("onnx", None), ("openvino", None), ("onnx", 300)])
def test_the_exported_file_scores_and_maps_as_the_model_does(
    model: PatchCore,
    model_file: Path,
    line_dir: Path,
    tmp_path: Path,
    fmt: str,
    chunk_rows: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if chunk_rows is not None:  # a bank searched in several chunks (a large one's case), the last one short
        assert model.bank_.shape[0] > 2 * chunk_rows and model.bank_.shape[0] % chunk_rows
        monkeypatch.setattr("huoyan.vision.export.EXPORT_CHUNK_ROWS", chunk_rows)
    written = export(model, tmp_path / "washer", fmt, "digest")
    scorer, threshold, size = open_model(written[0])
    assert threshold == model.threshold and size == model.image_size
    images = [read_image(p) for p in _test_images(line_dir)]
    want = model.score(images)
    # the whole test set as one batch: the batch axis of the export is dynamic
    scores, maps = scorer(np.stack([resize_to(img, size) for img in images]))
    # differences as shares of each image's score: the scale the threshold is on
    scale = want.raw[:, None, None]
    assert np.abs(scores - want.raw).max() <= EXPORT_RTOL * want.raw.min()
    assert (np.abs(maps - np.asarray(want.evidence)) / scale).max() <= EXPORT_RTOL
    # the defects of the test set stand out in the export as in the model
    assert (scores > threshold).tolist() == (want.raw > model.threshold).tolist()
    assert (scores > threshold).any() and not (scores > threshold).all()


def test_the_runner_works_without_huoyan_and_keeps_going_past_a_bad_file(
    model_file: Path, line_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "edge"
    assert main(["export", str(model_file), "-o", str(out / "washer.onnx")]) == 0
    runner = out / "huoyan_edge_runner.py"
    assert runner.is_file()
    # An edge box without Huoyan: any import of it fails.
    blocked = tmp_path / "blocked" / "huoyan"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('huoyan is not on this edge box')\n")
    images = _test_images(line_dir)[:4]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    env = {**os.environ, "PYTHONPATH": str(blocked.parent)}
    done = subprocess.run(
        [sys.executable, str(runner), str(out / "washer.onnx"), str(broken), *map(str, images), "--maps", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(broken), *map(str, images)]
    assert rows[0]["verdict"] == "ERROR" and "not a readable image" in rows[0]["error"]
    model = load_detector(model_file)
    want = model.score([read_image(p) for p in images])
    for row, score, evidence in zip(rows[1:], want.raw, want.evidence, strict=True):
        assert abs(row["score"] - score) <= EXPORT_RTOL * score
        assert row["verdict"] == ("NG" if score > model.threshold else "OK")
        assert np.abs(np.load(row["map"]) - evidence).max() <= EXPORT_RTOL * score


def test_the_runner_decodes_gray_rgba_and_16_bit_images_as_huoyan_does(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    cases = {
        "gray.png": rng.integers(0, 256, (40, 50), dtype=np.uint8),
        "bgra.png": rng.integers(0, 256, (40, 50, 4), dtype=np.uint8),
        "deep.png": rng.integers(0, 65536, (40, 50, 3), dtype=np.uint16),
        "deep_gray.tiff": rng.integers(0, 65536, (40, 50), dtype=np.uint16),
        "photo.jpg": rng.integers(0, 256, (300, 200, 3), dtype=np.uint8),
    }
    for name, pixels in cases.items():
        assert cv2.imwrite(str(tmp_path / name), pixels)
        np.testing.assert_array_equal(read_rgb8(tmp_path / name), read_image(tmp_path / name), err_msg=name)


def test_export_checks_itself_and_a_mismatch_fails_the_check(
    model: PatchCore, model_file: Path, line_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from huoyan.cli.export import check_export

    out = tmp_path / "washer.onnx"
    check = ["--check", str(line_dir / "test"), "--json"]
    assert main(["export", str(model_file), "-o", str(out), *check]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["check"]["identical"] and summary["check"]["images"] == len(_test_images(line_dir))
    # A model that searches in bfloat16 is held to its float32 search (the export's), and
    # is left as it was.
    fast = load_detector(model_file).set_params(search_precision="bfloat16")
    result = check_export(fast, out, line_dir / "test")
    assert result["identical"] and result["reference_search"] == "float32"
    assert fast.search_precision == "bfloat16" and fast._index is not None
    assert (fast._index.packed is not None) == fused_search.bfloat16_available()
    if bfloat16_backbone_available():  # so is one whose backbone runs in bfloat16
        rounded = load_detector(model_file).set_params(backbone_precision="bfloat16")
        result = check_export(rounded, out, line_dir / "test")
        assert result["identical"] and result["reference_backbone"] == "float32"
        assert rounded._features_runtime().name == "openvino-bf16"
    # the export of another model does not pass for this one
    other = PatchCore(image_size=model.image_size, coreset_ratio=0.05, blur_sigma=2.0, seed=1)
    other.fit([read_image(p) for p in list_images(line_dir / "train" / "good")][:6])
    export(other, tmp_path / "other.onnx", "onnx", "digest")
    result = check_export(model, tmp_path / "other.onnx", line_dir / "test")
    assert not result["identical"] and result["max_score_difference"] > EXPORT_RTOL


def test_a_max_mean_model_exports_its_score_and_its_scaled_map(line_dir: Path, tmp_path: Path) -> None:
    from huoyan.cli.export import check_export

    train = [read_image(p) for p in list_images(line_dir / "train" / "good")]
    model = PatchCore(image_size=128, coreset_ratio=0.25, seed=0, image_score="max-mean").fit(train)
    assert model.map_scale_ != 1.0
    written = export(model, tmp_path / "washer.onnx", "onnx", "digest")
    result = check_export(model, written[0], line_dir / "test")
    assert result["identical"] and result["images"] == len(_test_images(line_dir))
    scorer, threshold, size = open_model(written[0])
    images = [read_image(p) for p in _test_images(line_dir)]
    scores, maps = scorer(np.stack([resize_to(img, size) for img in images]))
    flat = maps.reshape(len(images), -1)
    # the score is the geometric mean of the unscaled map's maximum and mean
    np.testing.assert_allclose(scores * model.map_scale_, np.sqrt(flat.max(1) * flat.mean(1)), rtol=1e-4)
    assert (scores > threshold).tolist() == (model.score(images).raw > model.threshold).tolist()


def test_only_memory_bank_models_export_and_bad_files_are_named(tmp_path: Path) -> None:
    from signalkit import RPM, signal_windows

    vibration = REGISTRY["vibration"](window_s=0.25, hop_s=0.125, rpm=RPM, seed=3).fit(signal_windows(2.0, None, 1))
    with pytest.raises(ExportError, match="only memory-bank"):
        export(vibration, tmp_path / "v.onnx", "onnx", "digest")
    saved = vibration.save(tmp_path / "vibration.safetensors")
    assert main(["export", str(saved), "-o", str(tmp_path / "v.onnx")]) == 2
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    assert main(["export", str(junk), "-o", str(tmp_path / "j.onnx")]) == 2
    assert not (tmp_path / "v.onnx").exists() and not (tmp_path / "j.onnx").exists()
