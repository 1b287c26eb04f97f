"""A station that judges each part from several channels: two camera views and a sensor
recording, joined by the part id in their file names, fused by the recipe's rule."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from huoyan.core.models import ChannelVerdict, Verdict
from huoyan.core.recipe import Fusion, RecipeError, load_recipe
from huoyan.decision.fusion import fuse
from huoyan.runner import open_station, run_station
from huoyan.sampleline.generator import make_sample
from huoyan.signals.detector import VibrationMonitor
from huoyan.store.records import query_records
from signalkit import RATE, RPM, signal_windows, vibration


def png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def drop(inbox: Path, name: str, data: bytes) -> None:
    tmp = inbox / f".{name}.tmp"
    tmp.write_bytes(data)
    tmp.rename(inbox / name)


def washer(defect: str | None, seed: int) -> bytes:
    return png(make_sample("washer", defect, 128, np.random.default_rng(seed))[0])


def good(line_dir: Path, i: int) -> bytes:
    return sorted((line_dir / "test" / "good").glob("*.png"))[i].read_bytes()


def recording(fault: str | None, seed: int) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, vibration(1.0, fault, seed))
    return buf.getvalue()


def write_recipe(tmp: Path, model: Path, spindle: Path, extra: str = "") -> Path:
    path = tmp / "fused.yaml"
    path.write_text(
        f"""station: press-3
product: washer
recipe: washer-two-views
version: "1"
source: {{type: hot_folder, path: {tmp / "inbox"}, settle_ms: 0}}
model: {model}
part_id: {{from: filename, pattern: '^(?P<id>P[0-9]+)_'}}
storage: {{data_dir: {tmp / "data"}, keep_ok_every: 1}}
channels:
  - {{name: top, files: '_top\\.png$'}}
  - {{name: side, files: '_side\\.png$'}}
  - {{name: spindle, files: '_spindle\\.npy$', model: {spindle}, sample_rate: {RATE}}}
fusion: {{rule: any_ng, wait_s: 1.0}}
{extra}"""
    )
    return path


@pytest.fixture(scope="module")
def spindle_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = VibrationMonitor(window_s=0.25, hop_s=0.25, bearing="6205", rpm=RPM)
    model.fit(signal_windows(4.0, None, 0, length=0.25, hop=0.125))
    return model.save(tmp_path_factory.mktemp("spindle") / "spindle.safetensors")


def test_a_part_is_judged_from_its_views_and_its_recording(
    line_dir: Path, model_file: Path, spindle_model: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    parts = {
        "P1": {"top": good(line_dir, 0), "side": washer("hole", 99), "spindle": recording(None, 3)},
        "P2": {"top": good(line_dir, 1), "side": good(line_dir, 2), "spindle": recording("outer_race", 6)},
        "P3": {"top": good(line_dir, 3), "side": good(line_dir, 4), "spindle": recording(None, 9)},
        "P4": {"top": good(line_dir, 0)},  # its side view and recording never come
    }
    suffix = {"top": "_top.png", "side": "_side.png", "spindle": "_spindle.npy"}
    for part, files in parts.items():
        for channel, data in files.items():
            drop(inbox, part + suffix[channel], data)
    drop(inbox, "notes.bmp", good(line_dir, 0))
    # The machine the sensor channel watches; the camera channels have nothing to do with it.
    recipe = write_recipe(tmp_path, model_file, spindle_model, "machine: {bearing: '6205'}\n")
    opened = open_station(load_recipe(recipe))
    summary = run_station(opened, idle_exit=3.0, status=None)
    rows = {r["part_id"] or r["source_name"]: r for r in query_records(opened.engine)}
    assert summary["parts"] == len(rows) == 5

    p1 = rows["P1"]
    assert p1["verdict"] == "NG" and p1["diagnosis"] is None
    by_channel = {c["channel"]: c for c in p1["channels"]}
    assert [c["channel"] for c in p1["channels"]] == ["top", "side", "spindle"]
    assert (by_channel["top"]["verdict"], by_channel["side"]["verdict"], by_channel["spindle"]["verdict"]) == (
        "OK",
        "NG",
        "OK",
    )
    assert by_channel["spindle"]["model_sha256"] != by_channel["top"]["model_sha256"]
    assert {g["channel"] for g in p1["regions"]} == {"side"}
    assert {(e["channel"], e["kind"]) for e in p1["evidence"]} >= {
        ("top", "image"),
        ("side", "image"),
        ("side", "anomaly-map"),
        ("spindle", "signal"),
        ("spindle", "condition"),
    }
    assert {m["channel"] for m in p1["measurements"]} == {"spindle"}
    assert [o["rule"] for o in p1["rules"]] == ["channel top NG", "channel side NG", "channel spindle NG"]

    p2 = rows["P2"]
    assert p2["verdict"] == "NG" and p2["diagnosis"] == "outer_race"
    assert {c["channel"]: c["diagnosis"] for c in p2["channels"]}["spindle"] == "outer_race"
    assert rows["P3"]["verdict"] == "OK"

    p4 = rows["P4"]
    assert p4["verdict"] == "ERROR" and "no file of channel side" in p4["error"]
    assert "no file of channel spindle" in p4["error"]
    lone = rows["notes.bmp"]
    assert lone["verdict"] == "ERROR" and "matches no channel" in lone["error"]

    done = sorted(p.name for p in (inbox / "done").iterdir())
    failed = sorted(p.name for p in (inbox / "failed").iterdir())
    assert len(done) == 9 and failed == ["P4_top.png", "notes.bmp"]
    assert not list((inbox / ".processing").iterdir())


def test_fusion_rules() -> None:
    def channel(name: str, verdict: Verdict, score: float | None, error: str | None = None) -> ChannelVerdict:
        return ChannelVerdict(channel=name, verdict=verdict, normalised_score=score, error=error)

    views = [channel("top", Verdict.OK, 0.6), channel("side", Verdict.NG, 1.4)]
    assert fuse(views, Fusion()).verdict == Verdict.NG
    assert fuse(views, Fusion(rule="all_ng")).verdict == Verdict.OK
    weighted = fuse(views, Fusion(rule="weighted", weights={"top": 3.0, "side": 1.0}))
    assert weighted.verdict == Verdict.OK and weighted.score == pytest.approx((3 * 0.6 + 1.4) / 4)
    assert fuse(views, Fusion(rule="weighted", threshold=0.9)).verdict == Verdict.NG
    failed = [channel("top", Verdict.OK, 0.6), channel("side", Verdict.ERROR, None, "no file")]
    assert fuse(failed, Fusion()).verdict == Verdict.ERROR and fuse(failed, Fusion()).error == "side: no file"
    found = [channel("top", Verdict.NG, 2.0), channel("side", Verdict.ERROR, None, "no file")]
    assert fuse(found, Fusion()).verdict == Verdict.NG  # a missing view cannot clear a part another found NG
    assert fuse(found, Fusion(rule="weighted")).verdict == Verdict.ERROR


def test_a_channelled_recipe_is_checked_field_by_field(model_file: Path, spindle_model: Path, tmp_path: Path) -> None:
    path = write_recipe(tmp_path, model_file, spindle_model, "")
    text = path.read_text()
    path.write_text(text.replace("fusion: {rule: any_ng, wait_s: 1.0}", "fusion: {weights: {front: 2}}"))
    with pytest.raises(RecipeError, match=r"fusion\.weights: no channel front"):
        load_recipe(path)
    path.write_text(text.replace("from: filename", "from: counter"))
    with pytest.raises(RecipeError, match=r"part_id.from: filename"):
        load_recipe(path)
    path.write_text(text.replace("files: '_side\\.png$'", "files: '(unclosed'"))
    with pytest.raises(RecipeError, match=r"channels.1.files"):
        load_recipe(path)


def test_a_part_claimed_before_a_crash_is_recorded_once(line_dir: Path, model_file: Path, tmp_path: Path) -> None:
    """The station stops (crashes) after a part's record is committed but before its
    files are archived: on restart the same files are claimed again under the same
    numbers, gathered under the same key, and only archived."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    recipe = write_recipe(tmp_path, model_file, model_file)
    recipe.write_text(recipe.read_text().replace(
        "  - {name: spindle, files: '_spindle\\.npy$', model: " + str(model_file) + f", sample_rate: {RATE}}}\n", ""
    ))  # fmt: skip
    assert "spindle" not in recipe.read_text()  # two camera views only
    drop(inbox, "P7_top.png", good(line_dir, 0))
    drop(inbox, "P7_side.png", good(line_dir, 1))
    opened = open_station(load_recipe(recipe))
    run_station(opened, idle_exit=2.0, status=None)
    (stored,) = query_records(opened.engine)
    seq = int(stored["key"].split(":")[-1].rstrip("+"))
    # As a crash would leave them: both files still claimed, under their numbers.
    processing = inbox / ".processing"
    for offset, name in enumerate(("P7_top.png", "P7_side.png")):
        (inbox / "done" / name).rename(processing / f"{seq + offset:010d}__{name}")
    again = open_station(load_recipe(recipe))
    summary = run_station(again, idle_exit=2.0, status=None)
    assert summary["already_recorded"] == 1 and summary["parts"] == 0
    assert [r["key"] for r in query_records(again.engine)] == [stored["key"]]
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["P7_side.png", "P7_top.png"]
    assert not list(processing.iterdir())


def test_a_hosted_station_of_several_channels_starts_again_from_the_servers_copy(
    model_file: Path, spindle_model: Path, tmp_path: Path
) -> None:
    """Hosted, the recipe's model becomes version 1 in the server's blob store, and the
    next start hands over that copy: the same file, which a fused station accepts; any
    other model it refuses."""
    import shutil

    (tmp_path / "inbox").mkdir()
    recipe = load_recipe(write_recipe(tmp_path, model_file, spindle_model))
    copy = tmp_path / "blobs" / "copy-of-the-model"
    copy.parent.mkdir()
    shutil.copyfile(model_file, copy)
    opened = open_station(recipe, model_path=copy)
    assert opened.model_sha256 == opened.line.config["model_sha256"]  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="runs its recipe's models"):
        open_station(recipe, model_path=spindle_model)
