"""The anomalib comparison keeps working: its Huoyan half and its shared metric code, tiny.

anomalib itself lives in its own 5 GB venv (bench/setup_anomalib.sh) and is not run here;
no timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from huoyan.vision.dataset import load_category

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_huoyan_side_writes_scores_maps_and_speed_rows(line_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    cmd = [sys.executable, str(BENCH / "compare_anomalib.py"), str(line_dir), "--side", "huoyan", "--work", str(work)]
    cmd += ["--image-size", "64", "--eval-size", "64", "--repeats", "2", "--no-calibration-in-bank"]
    subprocess.run(cmd, check=True, cwd=BENCH, timeout=300)
    result = json.loads((work / "huoyan.json").read_text())
    assert result["mode"] == "greedy-coreset, float16 bank, float32 backbone, float32 search"
    # 16 images, 20% (3) held out; 8 x 8 patches each at 64 px; 10% of them kept.
    assert result["bank_rows"] == round(13 * 8 * 8 * 0.1) and result["bank_bytes"] == result["bank_rows"] * 152 * 2
    assert result["images_per_s_batch1"] > 0 and result["latency_ms_p99"] >= result["latency_ms_median"]

    sys.path.insert(0, str(BENCH))
    try:
        from compare_anomalib import metrics, table
    finally:
        sys.path.remove(str(BENCH))
    n_test = len(load_category(line_dir).test)
    scores = np.load(work / "huoyan_scores.npz")
    assert scores["maps"].shape == (n_test, 64, 64) and len(scores["names"]) == n_test
    m = metrics(line_dir, work / "huoyan_scores.npz", 64)
    assert 0.5 < m["image_auroc"] <= 1 and 0.5 < m["pixel_auroc"] <= 1
    rows = table(result | m, result | m)
    assert {r["key"] for r in rows} >= {"image_auroc", "bank_bytes"} and all(r["ratio"] == 1 for r in rows)
