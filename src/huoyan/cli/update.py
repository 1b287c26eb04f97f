"""``huoyan update``: good parts (reviewed false alarms) join a memory-bank model's bank
without a refit, written as a new model file only when the guard's checks pass."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from huoyan.cli.common import load_good_images, print_json


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "update",
        help="add good images (false alarms) to a memory-bank model's bank, guarded; writes a new model file",
        description="The images of --add join the bank (no refit; the threshold is kept). The new model is "
        "written only if the held-out good images of --good do not contradict the model's false-reject bound "
        "and no confirmed defect of --defects that the model caught would pass; otherwise nothing is written "
        "and the reasons are printed (exit 1).",
    )
    p.add_argument("model", help="model file (.safetensors) to update")
    p.add_argument("--add", required=True, metavar="FOLDER", help="good images to add (reviewed false alarms)")
    p.add_argument("--good", required=True, metavar="FOLDER", help="held-out good images, not in --add (at least 10)")
    p.add_argument("--defects", metavar="FOLDER", help="confirmed defect images that must still be caught")
    p.add_argument("-o", "--output", required=True, help="the new model file")
    p.add_argument("--json", action="store_true", help="print the check as JSON")
    p.set_defaults(func=cmd_update)


def _images(folder: str | None) -> list[Any]:
    if folder is None:
        return []
    images, errors = load_good_images(Path(folder))
    for e in errors:
        print(f"skipped: {e}", file=sys.stderr)
    return images


def cmd_update(args: argparse.Namespace) -> int:
    from huoyan.detectors import load_detector
    from huoyan.vision.backbone import BackboneUnavailable
    from huoyan.vision.bank_update import guarded_update
    from huoyan.vision.patchcore import PatchCore

    try:
        model = load_detector(args.model)
    except (ValueError, OSError, BackboneUnavailable) as exc:  # ArtifactError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not isinstance(model, PatchCore):
        print(f"error: only memory-bank (patchcore) models take added images, not {model.kind!r}", file=sys.stderr)
        return 2
    additions = _images(args.add)
    if not additions:
        print(f"error: {args.add}: no images to add", file=sys.stderr)
        return 2
    check = guarded_update(model, additions, _images(args.good), _images(args.defects))
    if check.accepted:
        model.save(args.output)
    if args.json:
        print_json(check.model_dump(mode="json") | {"output": args.output if check.accepted else None})
    elif check.accepted:
        print(
            f"wrote {args.output}: {check.added_images} images added ({check.bank_rows_after - check.bank_rows_before}"
            f" bank rows); {check.held_out_rejected} of {check.held_out_good} held-out good images rejected, "
            f"{check.defects_caught_before} confirmed defects still caught"
        )
    if not check.accepted:
        for reason in check.reasons:
            print(f"refused: {reason}", file=sys.stderr)
        return 1
    return 0
