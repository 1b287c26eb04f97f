"""What ``huoyan fit``, ``predict`` and ``evaluate`` do for vibration models: reading
recordings into windows, the options of the vibration group, and the reports."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from huoyan.cli.common import print_json


def bearing_option(text: str) -> str | dict[str, Any]:
    """``6205`` (a shipped geometry) or ``n,d,D[,angle]`` (elements, ball and pitch
    diameter in mm, contact angle in degrees)."""
    parts = text.split(",")
    if len(parts) == 1:
        from huoyan.signals.bearings import bearing

        try:
            bearing(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
        return text
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give n,d,D[,angle] as numbers") from None
    if len(numbers) not in (3, 4) or numbers[0] != int(numbers[0]):
        raise argparse.ArgumentTypeError(f"{text!r}: give n,d,D[,angle] (n a whole number)")
    geometry = {
        "rolling_elements": int(numbers[0]),
        "element_diameter_mm": numbers[1],
        "pitch_diameter_mm": numbers[2],
        "contact_angle_deg": numbers[3] if len(numbers) == 4 else 0.0,
    }
    from pydantic import ValidationError

    from huoyan.signals.bearings import BearingGeometry

    try:
        BearingGeometry.model_validate(geometry)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise argparse.ArgumentTypeError(f"{text!r}: {field + ': ' if field else ''}{message}") from None
    return geometry


def add_reading_options(p: argparse.ArgumentParser | Any, fitting: bool) -> None:
    default = "" if fitting else " (default: the model's)"
    p.add_argument(
        "--channel", help=f"vibration: channel to read (.mat: DE, FE or a variable; .csv: a column){default}"
    )
    p.add_argument("--sample-rate", type=float, help=f"vibration: Hz, where the file records none{default}")
    p.add_argument("--rpm", type=float, help="vibration: shaft speed, where the file records none (or to override it)")


def add_fit_options(fit: argparse.ArgumentParser) -> None:
    from huoyan.detectors import default_params
    from huoyan.signals.features import ACCELERATION_UNITS, ISO_ZONES
    from huoyan.signals.scoring import SCORERS

    v = default_params("vibration")
    g = fit.add_argument_group("vibration monitoring (--detector vibration): TRAIN is healthy recordings")
    add_reading_options(g, fitting=True)
    g.add_argument(
        "--bearing",
        type=bearing_option,
        help="the bearing to diagnose: 6205, 6203, or n,d,D[,angle] in mm (default: no bearing diagnosis)",
    )
    g.add_argument("--window-s", type=float, default=v["window_s"], help="window length, seconds")
    g.add_argument("--hop-s", type=float, default=v["hop_s"], help="window step, seconds")
    g.add_argument("--units", choices=sorted(ACCELERATION_UNITS), default=v["units"], help="of the acceleration")
    g.add_argument(
        "--machine-class",
        choices=list(ISO_ZONES),
        help=f"ISO 20816 class for the zone (default: the recipe's, else {v['machine_class']})",
    )
    g.add_argument("--scorer", choices=SCORERS, default=v["scorer"], help="covariance of healthy running")
    g.add_argument(
        "--recipe",
        help="a sensor station's recipe: its machine (bearing, class) and source (rate, speed, channel) "
        "fill what these options leave out",
    )


def from_recipe(args: argparse.Namespace) -> None:
    """Fill the vibration options left out from a station recipe (``--recipe``)."""
    from huoyan.cli.common import load_recipe_or_exit

    recipe = load_recipe_or_exit(args.recipe)
    machine, source = recipe.machine, recipe.source
    if args.bearing is None and machine is not None and machine.bearing is not None:
        args.bearing = machine.bearing
    if args.machine_class is None and machine is not None:
        args.machine_class = machine.machine_class
    for name in ("sample_rate", "rpm"):
        if getattr(args, name) is None and getattr(source, name, None) is not None:
            setattr(args, name, getattr(source, name))
    if args.channel is None and source.type == "sensor_replay":  # a live source's channel is only a name
        args.channel = source.channel


def training_windows(args: argparse.Namespace) -> list[Any]:
    """The windows of the healthy recordings named on the command line; unreadable ones are skipped, said why."""
    from huoyan.signals.readers import SignalError, list_recordings, read_recording
    from huoyan.signals.windows import windows

    if args.recipe:
        from_recipe(args)

    paths = list_recordings(args.train)
    if not paths:
        raise SystemExit(f"error: no recordings in {' '.join(args.train)}")
    out: list[Any] = []
    for path in paths:
        try:
            recording = read_recording(path, args.channel, args.sample_rate, args.rpm)
            out += windows(recording, args.window_s, args.hop_s)
        except SignalError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
    if not out:
        raise SystemExit(f"error: no healthy windows read from {', '.join(map(str, paths))}")
    return out


def predict(model: Any, args: argparse.Namespace) -> int:
    from huoyan.decision.judge import Policy, decider_for
    from huoyan.runner.recordings import RESULTS_FILE, predict_recordings

    if not args.inputs:
        raise SystemExit("error: give recordings or folders of them to judge")
    decider = decider_for(model, Policy.of(model.threshold))
    start = time.perf_counter()
    counts: Counter[str] = Counter()
    windows = 0
    for row in predict_recordings(model, decider, args.inputs, args.out, args.channel, args.sample_rate, args.rpm):
        if not row.get("summary"):
            windows += 1
            continue
        counts[row["verdict"]] += 1
        if not args.json:
            if row["verdict"] == "ERROR":
                print(f"error: {row['error']}", file=sys.stderr)
            else:
                diagnosis = f", diagnosis {row['diagnosis']}" if row["diagnosis"] else ""
                print(f"{row['path']}: {row['verdict']} ({row['counts']} of {row['windows']} windows{diagnosis})")
    elapsed = time.perf_counter() - start
    summary = {"results": str(Path(args.out) / RESULTS_FILE), "recordings": dict(counts), "windows": windows}
    if args.json:
        print_json({**summary, "seconds": elapsed})
    else:
        print(f"{sum(counts.values())} recordings, {windows} windows in {elapsed:.1f} s -> {summary['results']}")
    return 1 if counts["ERROR"] and not (counts["OK"] or counts["NG"]) else 0


def evaluate(model: Any, args: argparse.Namespace) -> int:
    from huoyan.signals.evaluate import evaluate_folders
    from huoyan.signals.readers import SignalError

    try:
        result = evaluate_folders(model, args.category_dir, args.channel, args.sample_rate, args.rpm)
    except SignalError as exc:
        raise SystemExit(f"error: {exc}") from exc
    if args.json:
        print_json(result)
        return 0
    for skipped in result["skipped"]:
        print(f"skipped: {skipped}", file=sys.stderr)
    print(
        f"window AUROC {result['auroc']:.4f} "
        f"({result['healthy_windows']} healthy, {result['fault_windows']} fault windows); "
        f"false alarms {result['false_alarm_rate']:.2%} (expected {result['expected_false_alarm_rate']:.2%})"
    )
    for name, f in result["faults"].items():
        accuracy = f.get("diagnosis_accuracy")
        said = f"diagnosis {accuracy:.1%} {f['family']}" if accuracy is not None else "not a known family"
        print(f"  {name:>16}: AUROC {f['auroc']:.4f}  missed {f['miss_rate']:.1%}  {said}  {f['diagnosed']}")
    if result["diagnosis_accuracy"] is not None:
        print(f"diagnosis accuracy {result['diagnosis_accuracy']:.1%}; {result['windows_per_second']:.0f} windows/s")
    return 0
