"""What watching the line costs: live-view previews next to the inspection they ride on.

While a browser watches a station, each judged part also gets a preview: the image
with its heat map and regions drawn on, shrunk to 480 px and JPEG-encoded
(``huoyan.runner.status.draw_preview``), on the inference thread. This measures, in one
run and on the same parts, the engine's per-part time (score + judge, batch 1) and the
preview's, and reports the ratio. Timings are measured, never asserted.

    python bench/live_view.py [--size 256] [--repeats 50] [--json bench/out/live_view.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from benchlib import cpu_model, timed
from huoyan.decision.judge import ImageDecider, Policy
from huoyan.runner.status import draw_preview
from huoyan.sampleline.generator import generate_line
from huoyan.station.inspect import heatmap_u8
from huoyan.vision.imageio import list_images, read_image
from huoyan.vision.patchcore import PatchCore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="side of the sample-line images, pixels")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = generate_line(
            Path(tmp), products=("metal",), n_train=60, n_test_good=10, n_test_defect=10, size=args.size, seed=0
        )[0]
        train = [read_image(p) for p in list_images(root / "train" / "good")]
        tests = [read_image(p) for p in list_images(root / "test", recursive=True)]
    model = PatchCore(seed=0).fit(train)
    thr = model.threshold
    decider = ImageDecider(Policy.of(thr))
    judged = []
    for img in tests:
        scores, maps = model.score([img])
        judged.append((img, decider.judge(img, float(scores[0]), maps[0], "part")))

    i = iter(range(10**9))

    def inspect() -> None:
        img = tests[next(i) % len(tests)]
        scores, maps = model.score([img])
        decider.judge(img, float(scores[0]), maps[0], "part")

    def preview() -> None:
        img, result = judged[next(i) % len(judged)]
        assert result.anomaly_map is not None
        draw_preview(img, heatmap_u8(result.anomaly_map, thr), result.regions)

    t_inspect = timed(inspect, args.repeats)
    t_preview = timed(preview, args.repeats)
    row = {
        "cpu": cpu_model(),
        "image_px": args.size,
        "inspect_ms_median": float(np.median(t_inspect) * 1000),
        "preview_ms_median": float(np.median(t_preview) * 1000),
        "preview_ms_p99": float(np.percentile(t_preview, 99) * 1000),
    }
    row["preview_over_inspect"] = row["preview_ms_median"] / row["inspect_ms_median"]
    print("| image | inspect ms (median) | preview ms (median / p99) | preview / inspect |")
    print("| --- | ---: | ---: | ---: |")
    print(
        f"| {args.size} px | {row['inspect_ms_median']:.1f} | {row['preview_ms_median']:.2f} / "
        f"{row['preview_ms_p99']:.2f} | {row['preview_over_inspect']:.3f} |"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
