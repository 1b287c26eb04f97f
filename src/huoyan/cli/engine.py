"""`huoyan fit`, `predict`, `evaluate` and `sample-line`: the vision engine on folders of images."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from huoyan.cli.common import (
    RUNTIME_HELP,
    load_good_images,
    print_json,
    progress_bar,
)


def _pair_files(where: Path, pairs_csv: str | None) -> list[Any]:
    """Template/test pairs: a CSV (``--pairs`` or a .csv path), a DeepPCB split list, or a
    folder searched by DeepPCB's naming."""
    from huoyan.vision.template.pairs import PairsError, find_pairs, read_pairs_csv

    try:
        if pairs_csv is not None:
            return read_pairs_csv(Path(pairs_csv))
        if where.suffix.lower() == ".csv":
            return read_pairs_csv(where)
        return find_pairs(where)
    except PairsError as exc:
        raise SystemExit(f"error: {exc}") from exc


def _load_pairs(files: list[Any]) -> list[Any]:
    from huoyan.vision.imageio import ImageError
    from huoyan.vision.template.pairs import PairsError, load_pair

    pairs = []
    for f in files:
        try:
            pairs.append(load_pair(f))
        except (ImageError, PairsError) as exc:
            print(f"skipped: {exc}", file=sys.stderr)
    return pairs


def _training_samples(args: argparse.Namespace) -> tuple[list[Any], list[Any], str]:
    """(samples, defect samples, what they are) for the chosen detector kind."""
    from huoyan.cli import vibration
    from huoyan.detectors import detector_class

    kind = detector_class(args.detector)
    if getattr(kind, "judges_signals", False):
        if args.defects:
            raise SystemExit("error: --defects is for image folders")
        return vibration.training_windows(args), [], "windows"
    if len(args.train) != 1:
        raise SystemExit(f"error: {args.detector} learns from one folder, got {len(args.train)}")
    train = Path(args.train[0])
    if getattr(kind, "names_defects", False):
        if args.defects:
            raise SystemExit("error: --defects is for image folders; a template model learns from annotated pairs")
        files = _pair_files(train, args.pairs)
        return _load_pairs(files), [], "pairs"
    from huoyan.vision.dataset import train_folder

    folder = train_folder(train)  # an image folder, or a category's train/good
    images, errors = load_good_images(folder)
    for e in errors:
        print(f"skipped: {e}", file=sys.stderr)
    defects: list[Any] = []
    for d in args.defects or []:
        imgs, errs = load_good_images(Path(d))
        defects += imgs
        for e in errs:
            print(f"skipped: {e}", file=sys.stderr)
    return images, defects, "images"


def _stages(bar: Any) -> Any:
    """A progress listener that shows each stage of a fit (features, coreset) on one bar."""

    shown = [""]

    def show(stage: str, done: int, total: int) -> None:
        if bar.disable:  # not a terminal: nothing is drawn
            return
        if shown[0] != stage:
            shown[0] = stage
            bar.reset(total=total)
            bar.set_description(stage)
        bar.update(done - bar.n)

    return show


def cmd_fit(args: argparse.Namespace) -> int:
    from huoyan.core import progress
    from huoyan.detectors import default_params, new_detector
    from huoyan.vision.patchcore import FEW_SHOT_IMAGES

    images, defects, what = _training_samples(args)
    folder = " ".join(args.train)
    # The parameters this command declares (their defaults are the estimator's own).
    # (An option left unset, None, leaves the estimator's own default.)
    offered = {
        name: getattr(args, name)
        for name in default_params(args.detector)
        if hasattr(args, name) and getattr(args, name) is not None
    }
    model = new_detector(args.detector, **offered)
    if getattr(args, "calibration", None) == "holdout" and what == "images" and len(images) <= FEW_SHOT_IMAGES:
        print(
            f"note: only {len(images)} good images; --calibration leave-one-out calibrates with all of them "
            "instead of holding some out",
            file=sys.stderr,
        )
    start = time.perf_counter()
    try:
        with progress_bar(None, "step", "fit") as bar, progress.listening(_stages(bar)):
            model.fit(images, defects or None)
    except ValueError as exc:
        raise SystemExit(f"error: {folder}: {exc}") from exc
    elapsed = time.perf_counter() - start
    path = model.save(args.output)
    card = model.card_
    if args.json:
        print_json({"model": str(path), "fit_seconds": elapsed, "card": card.model_dump(mode="json")})
    else:
        cal = card.calibration
        print(f"model: {path}")
        shown = ", ".join(f"{k} {_brief(v)}" for k, v in card.details.items() if not k.endswith("sha256"))
        print(f"{card.kind} from {card.train_samples} {what} in {elapsed:.1f} s: {shown}")
        if cal.method == "in-sample":  # a template model: no held-out good parts to bound a rate
            print(
                f"{cal.expected_false_reject_rate:.1%} of the {cal.n_calibration} training pairs show a defect "
                "no annotation covers (in-sample: expect more on new parts)"
            )
        else:
            print(
                f"threshold {cal.threshold:.4g} ({cal.method}, n={cal.n_calibration}): "
                f"expected false-reject rate {cal.expected_false_reject_rate:.3%}, "
                f"<= {cal.false_reject_rate_upper:.3%} at {cal.confidence:.0%} confidence"
            )
        if cal.f1_metrics:
            print(f"F1-optimal threshold {cal.f1_threshold:.4g}: {cal.f1_metrics}")
    return 0


def _brief(value: Any) -> Any:
    """A card entry as the fit summary shows it: long lists by their length, numbers rounded."""
    if isinstance(value, list) and len(value) > 8:
        return f"({len(value)})"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_brief(v)}" for k, v in value.items()) + "}"
    return value


def _load_model(path: str, args: argparse.Namespace) -> Any:
    """An image detector ready to judge, or a detector of sensor signals."""
    from huoyan.core.artifact import artifact_kind
    from huoyan.detectors import detector_class, load_detector, load_image_detector
    from huoyan.vision.backbone import BackboneUnavailable

    try:
        if getattr(detector_class(artifact_kind(path)), "judges_signals", False):
            return load_detector(path).prepare()
        model = load_image_detector(path, runtime=getattr(args, "runtime", "onnx"))
    except (ValueError, BackboneUnavailable) as exc:  # ArtifactError and UnknownDetectorKind are ValueErrors
        raise SystemExit(f"error: {exc}") from exc
    return model


def _judges_signals(model: Any) -> bool:
    return bool(getattr(model, "judges_signals", False))


def _existing_inputs(paths: list[str]) -> None:
    """Inputs that do not exist, or folders with nothing in them, are errors before any work."""
    for item in paths:
        p = Path(item)
        if not p.exists():
            raise SystemExit(f"error: {item}: no such file or folder")
        if p.is_dir() and not any(f.is_file() for f in p.rglob("*")):
            raise SystemExit(f"error: {item}: the folder holds nothing to inspect")


def fraction(text: str) -> float:
    """An option that is a fraction strictly between 0 and 1 (0.005 is 0.5 %)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        hint = f" (did you mean {value / 100:g}?)" if 1 <= value < 100 else ""
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1{hint}")
    return value


def cmd_predict(args: argparse.Namespace) -> int:
    from huoyan.core.recipe import Decision
    from huoyan.decision.judge import Policy, decider_for
    from huoyan.runner.files import RESULTS_FILE, predict_files, predict_pairs
    from huoyan.vision.imageio import list_inputs

    _existing_inputs([*args.inputs, *([args.pairs] if args.pairs else [])])
    model = _load_model(args.model, args)
    if _judges_signals(model):
        from huoyan.cli import vibration

        return vibration.predict(model, args)
    decision = Decision(min_region_area_px=args.min_area or 0)
    decider = decider_for(model, Policy.of(model.threshold, decision, args.mm_per_px))
    counts: Counter[str] = Counter()
    start = time.perf_counter()
    if not args.inputs and not args.pairs:
        raise SystemExit("error: give image files or folders to inspect (or --pairs CSV for a template model)")
    if _takes_pairs(model, args):
        if args.pairs:
            files = _pair_files(Path(args.pairs), args.pairs)
        else:
            files = [f for where in args.inputs for f in _pair_files(Path(where), None)]
        rows, total = predict_pairs(model, decider, files, args.out, overlays=args.png), len(files)
    else:
        rows = predict_files(model, decider, args.inputs, args.out, overlays=args.png)
        total = sum(1 for _ in list_inputs(args.inputs))
    with progress_bar(total, "image", "predict") as bar:
        for row in rows:
            bar.update(1)
            counts[row["verdict"]] += 1
            if not args.json and row["verdict"] == "ERROR":
                bar.write(f"error: {row['error']}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    summary = {
        "results": str(Path(args.out) / RESULTS_FILE),
        "counts": dict(counts),
        "seconds": elapsed,
    }
    if args.json:
        print_json(summary)
    else:
        print(f"{sum(counts.values())} inputs: {dict(counts)} in {elapsed:.1f} s -> {summary['results']}")
    return 0


def _takes_pairs(model: Any, args: argparse.Namespace) -> bool:
    """A template model without a fixed template compares each image with its own."""
    from huoyan.core.detector import needs_own_template

    paired = needs_own_template(model)
    if args.pairs and not paired:
        raise SystemExit("error: --pairs is for template models that compare each image with its own template")
    return paired


def cmd_evaluate(args: argparse.Namespace) -> int:
    from huoyan.vision.dataset import load_category
    from huoyan.vision.evaluate import evaluate

    where = Path(args.pairs or args.category_dir)
    if not where.exists():
        raise SystemExit(f"error: {where}: no such folder")
    model = _load_model(args.model, args)
    if _judges_signals(model):
        from huoyan.cli import vibration

        return vibration.evaluate(model, args)
    if getattr(model, "names_defects", False):
        return _evaluate_pairs(model, args)
    try:
        category = load_category(args.category_dir)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from exc
    with progress_bar(len(category.test), "image", "evaluate") as bar:
        result = evaluate(model, category, progress=bar.update)
    if args.json:
        print_json(result)
    else:
        for key in (
            "image_auroc",
            "pixel_auroc",
            "aupro",
            "f1_max",
            "false_reject_rate",
            "miss_rate",
            "images_per_second",
        ):
            print(f"{key:>18}: {result[key]:.4f}")
    return 0


def _evaluate_pairs(model: Any, args: argparse.Namespace) -> int:
    from huoyan.vision.template.evaluate import evaluate_pairs

    files = _pair_files(Path(args.category_dir), args.pairs)
    result = evaluate_pairs(model, files)
    if args.json:
        print_json(result)
    else:
        for name in ("with_classes", "class_agnostic"):
            r = result[name]
            print(
                f"{name:>15}: F-score {r['fscore']:.4f}  AP {r['ap']:.4f}  "
                f"precision {r['precision']:.4f}  recall {r['recall']:.4f}"
            )
        print(f"{'pairs':>15}: {result['pairs']} ({result['errors']} ERROR), {result['pairs_per_second']:.1f} pairs/s")
    return 0


def cmd_sample_line(args: argparse.Namespace) -> int:
    from huoyan.sampleline.generator import DEFECTS, PRODUCTS, generate_line

    per_product = args.train + args.test_good + args.test_defect * len(DEFECTS)
    with progress_bar(per_product * len(PRODUCTS), "image", "sample-line") as bar:
        roots = generate_line(
            args.out, n_train=args.train, n_test_good=args.test_good, n_test_defect=args.test_defect, seed=args.seed,
            progress=bar.update,
        )  # fmt: skip
    for r in roots:
        print(r)
    return 0


def add_commands(sub: Any) -> None:
    """Declare this group's commands on the ``huoyan`` parser."""
    from huoyan.cli import vibration
    from huoyan.detectors import DEFAULT_KIND, REGISTRY, default_params
    from huoyan.vision.anomaly_map import IMAGE_SCORES
    from huoyan.vision.backbone import BACKBONES
    from huoyan.vision.lighting import LIGHTINGS
    from huoyan.vision.patchcore import AUGMENTS, BANK_DTYPES, CALIBRATIONS, SEARCH_PRECISIONS
    from huoyan.vision.runtime import BACKBONE_PRECISIONS, RUNTIMES

    d = default_params(DEFAULT_KIND)
    t = default_params("template")
    fit = sub.add_parser(
        "fit",
        help="learn a model from good images (--detector template: from pairs; vibration: healthy recordings)",
    )
    fit.add_argument(
        "train",
        nargs="+",
        help="folder of good images, or an MVTec category (uses train/good); for --detector template: "
        "a DeepPCB folder or split list, or a CSV of image,template[,annotation]; for --detector vibration: "
        "healthy recordings (.mat, .wav, .csv, .npy) or folders of them",
    )
    fit.add_argument("-o", "--output", required=True, help="model file to write (.safetensors)")
    fit.add_argument("--detector", default=DEFAULT_KIND, choices=sorted(REGISTRY), help="the detector kind")
    fit.add_argument("--backbone", default=d["backbone"], choices=sorted(BACKBONES), help="the pretrained CNN")
    fit.add_argument("--image-size", type=int, default=d["image_size"], help="side the images are resized to, px")
    fit.add_argument(
        "--coreset-ratio", type=float, default=d["coreset_ratio"], help="share of the patches kept in the memory bank"
    )
    fit.add_argument(
        "--coreset-size",
        type=int,
        default=d["coreset_size"],
        help="patches kept in the memory bank (instead of a ratio)",
    )
    fit.add_argument(
        "--false-reject-rate",
        type=fraction,
        default=d["false_reject_rate"],
        help=f"good parts the threshold may call NG, as a fraction (default {d['false_reject_rate']}: 0.5 %%)",
    )
    fit.add_argument(
        "--confidence",
        type=fraction,
        default=d["confidence"],
        help="confidence of the stated upper bound on the false-reject rate, as a fraction",
    )
    fit.add_argument(
        "--calibration-fraction",
        type=fraction,
        default=d["calibration_fraction"],
        help="share of the good images held out to set the threshold",
    )
    fit.add_argument(
        "--calibration",
        choices=CALIBRATIONS,
        default=d["calibration"],
        help="how good images set the threshold: held out of the bank (default), or leave-one-out on a bank of "
        "every patch (few images: all of them calibrate); auto: leave-one-out up to 20 images",
    )
    fit.add_argument(
        "--blur-sigma",
        type=float,
        default=d["blur_sigma"],
        help="Gaussian smoothing of the anomaly map, px at the model's input size (0: none)",
    )
    fit.add_argument(
        "--augment",
        choices=AUGMENTS,
        default=d["augment"],
        help="mirrored (flips) or also turned (rot90) copies of the good images join the bank: only for parts "
        "whose mirror or turned image is still good (textures, symmetric parts)",
    )
    fit.add_argument(
        "--lighting",
        choices=LIGHTINGS,
        default=d["lighting"],
        help="normalise each image before the backbone: image (brightness and contrast) or shading (also uneven "
        "light across it), for drifting lighting or parts that differ in shade; never where shade is a defect",
    )
    fit.add_argument(
        "--image-score",
        choices=IMAGE_SCORES,
        default=d["image_score"],
        help="the part's score: the anomaly map's maximum, or max-mean (geometric mean of its maximum and its mean) "
        "for textures whose defects are large and faint",
    )
    fit.add_argument(
        "--calibration-in-bank",
        action=argparse.BooleanOptionalAction,
        default=d["calibration_in_bank"],
        help="after calibrating, add what the held-out images' patches add to the bank (more accurate, a larger bank)",
    )
    fit.add_argument(
        "--bank-dtype", choices=BANK_DTYPES, default=d["bank_dtype"], help="float16 halves the bank's bytes"
    )
    fit.add_argument(
        "--search-precision",
        choices=SEARCH_PRECISIONS,
        default=d["search_precision"],
        help="bfloat16: search the bank at twice the speed on CPUs with AVX-512 BF16, each nearest candidate "
        "measured again in float32 (a distance can rarely be a near-tied row's); float32 elsewhere",
    )
    fit.add_argument(
        "--backbone-precision",
        choices=BACKBONE_PRECISIONS,
        default=d["backbone_precision"],
        help="bfloat16: run the CNN in OpenVINO with bfloat16 arithmetic (1.6x faster, features within about 5%%); "
        "needs huoyan[edge] and a CPU with AVX-512 BF16 or AMX, where the model is fitted and where it runs",
    )
    fit.add_argument("--defects", nargs="*", help="folders of labelled defect images (adds the F1-optimal threshold)")
    fit.add_argument("--seed", type=int, default=d["seed"], help="random seed: the same seed, the same model")
    fit.add_argument("--runtime", choices=RUNTIMES, default=d["runtime"], help=RUNTIME_HELP)
    tpl = fit.add_argument_group("template comparison (--detector template)")
    tpl.add_argument("--pairs", help="CSV of image,template[,annotation] (paths relative to the CSV)")
    tpl.add_argument(
        "--template-mode",
        choices=("paired", "fixed"),
        default=t["template_mode"],
        help="paired: each image with its own template; fixed: one template for the product, kept in the model",
    )
    tpl.add_argument(
        "--motion",
        choices=("translation", "euclidean", "affine", "perspective"),
        default=t["motion"],
        help="registration model",
    )
    tpl.add_argument("--registration-px", type=int, default=t["registration_px"], help="finest level registered, px")
    tpl.add_argument(
        "--elastic-px",
        type=float,
        default=t["elastic_px"],
        help="follow smooth local stretch at this scale, px (0: rigid registration only)",
    )
    tpl.add_argument(
        "--search-px",
        type=int,
        default=t["search_px"],
        help="a pixel matching the template within this distance does not differ",
    )
    tpl.add_argument(
        "--local-shift-px",
        type=int,
        default=t["local_shift_px"],
        help="dismiss a candidate that moving the template around it by up to this many px explains (0: off)",
    )
    tpl.add_argument("--min-area-px", type=int, default=t["min_area_px"], help="smaller candidates are dropped")
    tpl.add_argument("--merge-px", type=int, default=t["merge_px"], help="fragments closer than this are one defect")
    tpl.add_argument("--n-trees", type=int, default=t["n_trees"], help="trees of the defect classifier")
    tpl.add_argument(
        "--min-confidence",
        type=float,
        default=t["min_confidence"],
        help="report a candidate when the classifier says it is a defect with at least this probability",
    )
    tpl.add_argument("--workers", type=int, default=t["workers"], help="images compared in parallel")
    vibration.add_fit_options(fit)
    fit.add_argument("--json", action="store_true", help="print the result as JSON")
    fit.set_defaults(func=cmd_fit)

    pred = sub.add_parser("predict", help="score, localise and judge images (or windows of recordings)")
    pred.add_argument("model", help="the model file (.safetensors)")
    pred.add_argument(
        "inputs",
        nargs="*",
        help="image files or folders (template models: folders of pairs, DeepPCB naming; vibration models: recordings)",
    )
    pred.add_argument("--pairs", help="template models: a CSV of image,template instead of inputs")
    pred.add_argument("--out", required=True, help="folder for results.jsonl and maps/")
    pred.add_argument("--min-area", type=int, default=None, help="minimum region area in pixels")
    pred.add_argument("--mm-per-px", type=float, default=None, help="image scale, to give regions an area in mm²")
    pred.add_argument("--runtime", choices=RUNTIMES, default="onnx", help=RUNTIME_HELP)
    pred.add_argument(
        "--png",
        action="store_true",
        help="also write each image with its heat map and regions drawn on (overlays/...png) to open and look at",
    )
    vibration.add_reading_options(pred, fitting=False)
    pred.add_argument("--json", action="store_true", help="print the summary as JSON")
    pred.set_defaults(func=cmd_predict)

    ev = sub.add_parser(
        "evaluate",
        help="metrics on an MVTec-layout category (template models: DeepPCB's protocol on pairs; "
        "vibration models: healthy/ and <fault>/ folders of recordings)",
    )
    ev.add_argument("model", help="the model file (.safetensors)")
    ev.add_argument(
        "category_dir",
        nargs="?",
        default=".",
        help="MVTec category; or pairs (folder, split list, CSV); or a folder with healthy/ and <fault>/ recordings",
    )
    ev.add_argument("--pairs", help="template models: a CSV of image,template,annotation")
    ev.add_argument("--runtime", choices=RUNTIMES, default="onnx", help=RUNTIME_HELP)
    vibration.add_reading_options(ev, fitting=False)
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ev.set_defaults(func=cmd_evaluate)

    line = sub.add_parser("sample-line", help="write the synthetic sample line")
    line.add_argument("out", help="folder to write the products into")
    line.add_argument("--train", type=int, default=60, help="good training images per product")
    line.add_argument("--test-good", type=int, default=20, help="good test images per product")
    line.add_argument("--test-defect", type=int, default=6, help="test images per product and defect type")
    line.add_argument("--seed", type=int, default=0, help="random seed: the same seed, the same images")
    line.set_defaults(func=cmd_sample_line)
