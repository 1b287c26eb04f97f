import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from huoyan.cli import main
from huoyan.vision.patchcore import PatchCore


@pytest.fixture(scope="module")
def model_file(line_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "washer.safetensors"
    assert main(["fit", str(line_dir), "-o", str(out), "--image-size", "128", "--coreset-ratio", "0.25"]) == 0
    return out


def test_fit_json_reports_card(line_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from huoyan.vision.runtime import bfloat16_backbone_available

    out = tmp_path / "m.safetensors"
    defects = [str(d) for d in sorted((line_dir / "test").iterdir()) if d.name != "good"]
    backbone = "bfloat16" if bfloat16_backbone_available() else "float32"  # refused where the CPU lacks it
    code = main(
        [
            "fit",
            str(line_dir / "train" / "good"),
            "-o",
            str(out),
            "--image-size",
            "64",
            "--json",
            "--false-reject-rate",
            "0.3",
            "--calibration-fraction",
            "0.5",
            "--search-precision",
            "bfloat16",
            "--lighting",
            "shading",
            "--backbone-precision",
            backbone,
            "--image-score",
            "max-mean",
            "--defects",
            *defects,
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    saved = PatchCore.load(out)
    kept = (saved.search_precision, saved.lighting, saved.backbone_precision, saved.image_score)
    assert kept == ("bfloat16", "shading", backbone, "max-mean")  # kept with the model
    card = report["card"]
    assert card["train_samples"] == 16 and card["details"]["image_size"] == 64
    cal = card["calibration"]
    # Half the images calibrate the threshold, then join the bank (the default).
    assert card["details"]["bank_images"] == 16 and cal["n_calibration"] == 8
    assert cal["method"] == "conformal" and cal["target_false_reject_rate"] == 0.3
    assert cal["f1_threshold"] is not None and 0 <= cal["f1_metrics"]["f1"] <= 1
    assert out.is_file()


def test_predict_rows_maps_and_errors(model_file: Path, line_dir: Path, tmp_path: Path) -> None:
    # Two folders holding the same file names, plus a corrupt image and a text file.
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(line_dir / "test" / "good", a)
    shutil.copytree(line_dir / "test" / "hole", b)
    (b / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    (b / "readme.txt").write_text("not an image")
    out = tmp_path / "out"
    inputs = [str(a), str(b)]
    assert main(["predict", str(model_file), *inputs, "--out", str(out), "--mm-per-px", "0.5"]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6 + 2 + 2
    by_path = {r["path"]: r for r in rows}
    assert by_path[str(b / "broken.png")]["verdict"] == "ERROR"
    assert "not a readable image" in by_path[str(b / "readme.txt")]["error"]
    good_map, bad_map = by_path[str(a / "000.png")]["map"], by_path[str(b / "000.png")]["map"]
    assert good_map != bad_map
    arr = np.load(out / bad_map)
    assert arr.shape == (128, 128) and arr.dtype == np.float32
    assert by_path[str(b / "000.png")]["verdict"] == "NG"
    region = by_path[str(b / "000.png")]["regions"][0]
    assert region["area_mm2"] == pytest.approx(region["area_px"] * 0.25)
    assert by_path[str(b / "000.png")]["normalised_score"] == pytest.approx(
        by_path[str(b / "000.png")]["score"] / by_path[str(b / "000.png")]["threshold"]
    )


def test_evaluate_json(model_file: Path, line_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(model_file), str(line_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_images"] == 16 and result["defect_images"] == 10
    assert result["image_auroc"] > 0.8 and result["pixel_auroc"] > 0.8
    assert 0 <= result["aupro"] <= 1 and result["images_per_second"] > 0


def test_clear_errors(tmp_path: Path, model_file: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="at least 3"):
        main(["fit", str(tmp_path / "empty"), "-o", str(tmp_path / "x")])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"junk")
    with pytest.raises(SystemExit, match="error:"):
        main(["predict", str(bad), str(tmp_path), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="not an MVTec"):
        main(["evaluate", str(model_file), str(tmp_path / "empty")])


def test_inputs_and_options_are_checked_before_any_work(tmp_path: Path, model_file: Path) -> None:
    """A missing path, an empty folder or a rate given as a percentage is an error at once,
    with a non-zero exit, before a model is loaded or a fit starts (#18)."""
    (tmp_path / "empty").mkdir()
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")  # loading it would fail: the inputs are looked at first
    with pytest.raises(SystemExit, match=r"error: .*missing\.png: no such file or folder"):
        main(["predict", str(junk), str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match=r"error: .*empty: the folder holds nothing to inspect"):
        main(["predict", str(junk), str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match=r"error: .*nowhere: no such folder"):
        main(["evaluate", str(junk), str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit) as exc:
        main(["fit", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x"), "--false-reject-rate", "5"])
    assert exc.value.code == 2  # argparse: the option, not the fit


def test_every_option_of_every_command_says_what_it_is() -> None:
    """`huoyan <command> --help` explains every argument (#18)."""
    import argparse

    from huoyan.cli import build_parser

    silent: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif not action.help and action.dest != "help":
                silent.append(" ".join([*path, *(action.option_strings or [action.dest])]))

    walk(build_parser(), ["huoyan"])
    assert silent == []


def test_predict_png_writes_overlays_a_person_can_open(model_file: Path, line_dir: Path, tmp_path: Path) -> None:
    import cv2

    out = tmp_path / "out"
    holes = line_dir / "test" / "hole"
    assert main(["predict", str(model_file), str(holes), "--out", str(out), "--png"]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert rows and all(r["overlay"].startswith("overlays/") for r in rows)
    picture = cv2.imread(str(out / rows[0]["overlay"]))
    assert picture is not None and picture.shape[:2] == (128, 128)
    plain = cv2.imread(str(holes / Path(rows[0]["path"]).name))
    assert np.abs(picture.astype(int) - plain.astype(int)).mean() > 1  # the heat map and boxes are on it
    assert main(["predict", str(model_file), str(holes), "--out", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "overlays").exists()


def test_fit_says_which_files_it_left_out_as_predict_would(
    line_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is no image is an ERROR row in `predict`; `fit` says it left it out (#18)."""
    folder = tmp_path / "good"
    shutil.copytree(line_dir / "train" / "good", folder)
    (folder / "readme.txt").write_text("notes about the parts")
    (folder / ".hidden.png").write_bytes(b"")  # hidden files are nobody's input
    out = tmp_path / "m"
    assert main(["fit", str(folder), "-o", str(out), "--image-size", "64", "--coreset-ratio", "0.5"]) == 0
    err = capsys.readouterr().err
    assert f"skipped: {folder / 'readme.txt'}: not an image file" in err and ".hidden" not in err


def test_long_commands_show_progress_with_time_left_on_a_terminal_only(tmp_path: Path) -> None:
    """#18: sample-line (like fit's reading, predict and evaluate) draws a progress bar with
    the rate and time left on a terminal; a script reading a pipe gets none of it."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    command = [sys.executable, "-m", "huoyan.cli", "sample-line", "--train", "3", "--test-good", "2",
               "--test-defect", "1"]  # fmt: skip
    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a width
    proc = subprocess.Popen([*command, str(tmp_path / "tty")], stdout=child_fd, stderr=child_fd, close_fds=True)
    os.close(child_fd)
    seen = b""
    while True:
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=120) == 0
    text = seen.decode(errors="replace")
    assert "sample-line" in text and "image/s" in text and "<" in text, text  # rate and time left: [00:01<00:02]
    piped = subprocess.run([*command, str(tmp_path / "pipe")], capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == "" and "sample-line" not in piped.stdout
