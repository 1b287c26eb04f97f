"""`huoyan fit/predict/evaluate` for vibration models, on synthetic recordings written
as the files a plant has (.npy, .wav, .csv)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from signalkit import RATE, RPM, vibration

HUOYAN = [sys.executable, "-m", "huoyan.cli"]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HUOYAN, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vibration")
    np.save(root / "healthy_a.npy", vibration(2.0, None, 1))
    np.save(root / "healthy_b.npy", vibration(2.0, None, 2))
    layout = root / "eval"
    for folder, fault, seed in (("healthy", None, 3), ("outer", "outer_race", 4), ("inner_race", "inner_race", 5)):
        (layout / folder).mkdir(parents=True)
        np.save(layout / folder / f"{folder}.npy", vibration(1.5, fault, seed))
    return root


@pytest.fixture(scope="module")
def model(plant: Path) -> Path:
    done = _run(
        "fit", "--detector", "vibration", "healthy_a.npy", "healthy_b.npy", "-o", "m.safetensors",
        "--sample-rate", str(RATE), "--rpm", str(RPM), "--bearing", "6205", "--window-s", "0.25", "--hop-s", "0.125",
        cwd=plant,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "vibration from 30 windows" in done.stdout and "threshold" in done.stdout
    return plant / "m.safetensors"


def test_predict_writes_a_row_per_window_and_a_summary_per_recording(plant: Path, model: Path) -> None:
    bad = plant / "bad.csv"
    bad.write_text("time,acc\n0,1\n0.00005,nan\n0.0001,1\n")
    wav = plant / "faulty.wav"
    wavfile.write(wav, int(RATE), (vibration(1.0, "outer_race", 9) / 4).astype(np.float32))
    done = _run("predict", str(model), "eval/outer", str(wav), str(bad), "--out", "out", cwd=plant)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (plant / "out" / "results.jsonl").read_text().splitlines()]
    windows = [r for r in rows if not r.get("summary")]
    summaries = {Path(r["path"]).name: r for r in rows if r.get("summary")}
    assert {Path(r["path"]).name for r in windows} == {"outer.npy", "faulty.wav"}
    first = windows[0]
    assert first["window"] == 0.0 and first["verdict"] == "NG" and first["normalised_score"] > 1
    assert first["diagnosis"]["family"] == "outer_race" and first["iso_zone"] in "ABCD"
    lines = next(e for e in first["diagnosis"]["evidence"] if e["family"] == "outer_race")["lines"]
    assert lines[0]["name"] == "1x BPFO" and lines[0]["prominence_db"] > 10
    assert summaries["outer.npy"]["windows"] == 11 and summaries["outer.npy"]["verdict"] == "NG"
    assert summaries["outer.npy"]["diagnosis"] == "outer_race"
    assert summaries["faulty.wav"]["verdict"] == "NG"  # a WAV's own rate, its float samples
    assert summaries["bad.csv"]["verdict"] == "ERROR" and "non-finite" in summaries["bad.csv"]["error"]


def test_predict_on_nothing_readable_fails(plant: Path, model: Path) -> None:
    done = _run("predict", str(model), "missing.npy", "--out", "none", cwd=plant)
    assert done.returncode == 1 and "missing.npy: no such file" in done.stderr


def test_evaluate_reports_auroc_false_alarms_and_diagnosis_per_family(plant: Path, model: Path) -> None:
    done = _run("evaluate", str(model), "eval", "--json", cwd=plant)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["auroc"] == 1.0 and result["false_alarm_rate"] <= 0.1
    assert result["faults"]["outer"]["family"] == "outer_race"
    assert result["faults"]["outer"]["diagnosis_accuracy"] == 1.0
    assert result["faults"]["inner_race"]["diagnosis_accuracy"] == 1.0
    assert result["diagnosis_accuracy"] == 1.0


def test_evaluate_names_a_layout_without_healthy_recordings(plant: Path, model: Path) -> None:
    (plant / "odd" / "outer").mkdir(parents=True)
    done = _run("evaluate", str(model), "odd", cwd=plant)
    assert done.returncode != 0 and "expected a folder 'healthy/'" in done.stderr


def test_fit_refuses_bad_bearings_and_files_without_a_rate(plant: Path) -> None:
    done = _run("fit", "--detector", "vibration", "healthy_a.npy", "-o", "x", "--bearing", "9,40,8", cwd=plant)
    assert done.returncode == 2 and "element_diameter_mm must be smaller than pitch_diameter_mm" in done.stderr
    done = _run("fit", "--detector", "vibration", "healthy_a.npy", "-o", "x", "--bearing", "6309", cwd=plant)
    assert done.returncode == 2 and "bearing '6309' is not shipped" in done.stderr
    done = _run("fit", "--detector", "vibration", "healthy_a.npy", "-o", "x", cwd=plant)
    assert done.returncode != 0 and "records no sample rate" in done.stderr


def test_fit_takes_the_machine_and_the_rate_from_a_station_recipe(plant: Path) -> None:
    recipe = plant / "station.yaml"
    recipe.write_text(
        "station: spindle-1\nproduct: spindle\nrecipe: r\nversion: '1'\nmodel: m.safetensors\n"
        f"source: {{type: sensor_replay, path: eval, sample_rate: {RATE}, rpm: {RPM}}}\n"
        "machine: {bearing: {rolling_elements: 8, element_diameter_mm: 6.746, pitch_diameter_mm: 28.499}, "
        "machine_class: II}\n"
    )
    done = _run("fit", "--detector", "vibration", "healthy_a.npy", "-o", "r.safetensors", "--window-s", "0.25",
                "--recipe", "station.yaml", "--json", cwd=plant)  # fmt: skip
    assert done.returncode == 0, done.stderr
    card = json.loads(done.stdout)["card"]
    assert card["details"]["bearing"]["rolling_elements"] == 8 and card["details"]["sample_rate"] == RATE
    assert card["details"]["rpm"] == RPM and card["details"]["healthy_iso_zone"] in "ABCD"
