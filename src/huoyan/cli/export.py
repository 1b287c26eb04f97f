"""``huoyan export``: a memory-bank model as one ONNX or OpenVINO file for edge devices,
with the reference runner beside it and, on request, a check that it scores as the model."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from huoyan.cli.common import print_json

RUNNER_NAME = "huoyan_edge_runner.py"


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write a memory-bank model as one ONNX or OpenVINO file that scores without Huoyan",
        description="The file runs normalisation, backbone, nearest-neighbour search and anomaly map on "
        "images resized to the model's input; its metadata carries the calibrated threshold and the model "
        f"card. {RUNNER_NAME}, written beside it, scores image files with ONNX Runtime or OpenVINO alone.",
    )
    p.add_argument("model", help="model file (.safetensors) from `huoyan fit`")
    p.add_argument("--format", choices=("onnx", "openvino"), default="onnx", help="file format (default: onnx)")
    p.add_argument(
        "-o", "--output", required=True, help="file to write (.onnx; for OpenVINO the .xml, with its .bin beside)"
    )
    p.add_argument(
        "--check",
        metavar="FOLDER",
        help="score the images of FOLDER with both the model and the export and fail if they differ by more "
        "than 1e-4 of the image's score",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from huoyan.detectors import load_detector
    from huoyan.store.blobs import file_sha256
    from huoyan.vision import edge_runner
    from huoyan.vision.backbone import BackboneUnavailable
    from huoyan.vision.export import export

    source = Path(args.model)
    try:
        model = load_detector(source)
        written = export(model, Path(args.output), args.format, file_sha256(source))
    except (ValueError, OSError, BackboneUnavailable) as exc:  # ArtifactError and ExportError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runner = written[0].parent / RUNNER_NAME
    shutil.copyfile(edge_runner.__file__, runner)  # the module is the script: it imports nothing of Huoyan
    summary: dict[str, Any] = {"files": [str(f) for f in written], "runner": str(runner), "format": args.format}
    if args.check:
        summary["check"] = check_export(model, written[0], Path(args.check))
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {', '.join(summary['files'])} and {runner}")
        if args.check:
            c = summary["check"]
            print(
                f"checked on {c['images']} images: scores differ by at most {c['max_score_difference']:.2g} "
                f"and maps by at most {c['max_map_difference']:.2g} of the image's score (allowed: {c['tolerance']:g})"
            )
    if args.check and not summary["check"]["identical"]:
        print("error: the exported model does not score as the model does", file=sys.stderr)
        return 1
    return 0


def check_export(model: Any, exported: Path, folder: Path) -> dict[str, Any]:
    """Score ``folder``'s images with the model and with the export, one at a time (as a
    station does); the largest differences of scores and maps, as shares of each image's
    score (the scale the threshold and the normalised score are on). The export runs its
    backbone and search in float32, so a model that runs either in bfloat16 is checked
    by its float32 self (same bank and threshold)."""
    import copy

    import numpy as np

    from huoyan.vision.edge_runner import open_model, resize_to
    from huoyan.vision.export import EXPORT_RTOL
    from huoyan.vision.imageio import ImageError, list_images, read_image

    scorer, _, size = open_model(exported)
    reference = model
    exact = {"search_precision": "float32", "backbone_precision": "float32"}
    if any(getattr(model, name, "float32") != value for name, value in exact.items()):
        reference = copy.copy(model).set_params(**exact)  # the bank is shared, not copied
    worst_score = worst_map = 0.0
    count = 0
    for path in list_images(folder, recursive=True):
        try:
            image = read_image(path)
        except ImageError:
            continue
        want = reference.score([image])
        got_scores, got_maps = scorer(resize_to(image, size)[None])
        scale = max(abs(float(want.raw[0])), float(np.finfo(np.float32).tiny))
        worst_score = max(worst_score, abs(float(got_scores[0]) - float(want.raw[0])) / scale)
        worst_map = max(worst_map, float(np.abs(got_maps[0] - want.evidence[0]).max()) / scale)
        count += 1
    if count == 0:
        raise SystemExit(f"error: {folder}: no readable images to check the export on")
    return {
        "images": count,
        "max_score_difference": worst_score,
        "max_map_difference": worst_map,
        "tolerance": EXPORT_RTOL,
        "reference_search": "float32",
        "reference_backbone": "float32",
        "identical": worst_score <= EXPORT_RTOL and worst_map <= EXPORT_RTOL,
    }
