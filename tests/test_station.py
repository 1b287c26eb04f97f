"""The station loop end to end, in process: sources, batching, retention, back-pressure, faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from huoyan.core.models import Region, Verdict
from huoyan.core.recipe import Decision, HotFolderSource, Preprocess, RegionRule
from huoyan.core.records import Arrival, StoredRecord
from huoyan.decision.judge import Policy, rule_outcomes, verdict
from huoyan.runner import open_station, run_station
from huoyan.station.inspect import HEATMAP_SCALE, Prepared
from huoyan.station.preprocess import PreprocessError, apply
from huoyan.station.sources import HotFolder, PartIds, SeqCounter
from huoyan.store.records import query_events, query_records
from huoyan.vision.imageio import decode_image


def write_recipe(tmp: Path, model: Path, source: str, extra: str = "") -> Path:
    path = tmp / "recipe.yaml"
    path.write_text(
        f"""station: st-1
product: washer
recipe: washer-top
version: "1"
source: {source}
model: {model}
storage: {{keep_ok_every: 2}}
{extra}
"""
    )
    return path


def load(path: Path) -> Any:
    from huoyan.core.recipe import load_recipe

    return load_recipe(path)


def sample_images(line_dir: Path) -> list[Path]:
    return sorted((line_dir / "test").rglob("*.png"))


def fill_inbox(line_dir: Path, inbox: Path) -> list[str]:
    inbox.mkdir(parents=True, exist_ok=True)
    names = []
    for p in sample_images(line_dir):
        name = f"{p.parent.name}_{p.name}"
        (inbox / name).write_bytes(p.read_bytes())
        names.append(name)
    (inbox / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return [*names, "corrupt.png"]


def test_hot_folder_station_records_every_file_once(line_dir: Path, model_file: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    names = fill_inbox(line_dir, inbox)
    (inbox / "upload.png.part").write_bytes(b"still being written")
    recipe = load(write_recipe(tmp_path, model_file, f"{{type: hot_folder, path: {inbox}, settle_ms: 30}}"))
    opened = open_station(recipe, f"sqlite:///{tmp_path / 'r.db'}")
    summary = run_station(opened, idle_exit=1.0, status=None)
    rows = query_records(opened.engine)
    assert sorted(r["source_name"] for r in rows) == sorted(names)
    assert summary["parts"] == len(names) and summary["verdicts"]["ERROR"] == 1
    by_name = {r["source_name"]: r for r in rows}
    assert "not a readable image" in by_name["corrupt.png"]["error"]
    assert (inbox / "failed" / "corrupt.png").exists()
    assert sorted(p.name for p in (inbox / "done").iterdir()) == sorted(n for n in names if n != "corrupt.png")
    assert (inbox / "upload.png.part").exists()  # incomplete uploads are never claimed
    ng = [r for r in rows if r["verdict"] == "NG"]
    assert ng and all(kinds(r) == ["image", "anomaly-map"] for r in ng)
    assert all(r["regions"] for r in ng)
    assert all(r["rules"][0]["rule"] == "score above threshold" and r["rules"][0]["met"] for r in ng)
    # Kept heat maps are 8-bit PNGs where 128 is the threshold: an NG part's peak is above it.
    heat_map = ng[0]["evidence"][1]
    heat = decode_image(opened.store.blobs.get(heat_map["sha256"]))
    assert heat.max() > HEATMAP_SCALE and heat_map["media_type"] == "image/png"
    ok = [r for r in rows if r["verdict"] == "OK"]
    assert all(("image" in kinds(r)) == (r["seq"] % 2 == 0) for r in ok)
    assert {r["model_sha256"] for r in rows} == {opened.model_sha256}
    assert len({r["seq"] for r in rows}) == len(rows)


def test_recovered_claims_are_archived_not_repeated(line_dir: Path, model_file: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    fill_inbox(line_dir, inbox)
    recipe = load(write_recipe(tmp_path, model_file, f"{{type: hot_folder, path: {inbox}, settle_ms: 0}}"))
    url = f"sqlite:///{tmp_path / 'r.db'}"
    first = open_station(recipe, url)
    run_station(first, max_parts=3, status=None)
    done = sorted((inbox / "done").iterdir())
    # Simulate a crash after commit but before archiving: move a stored part back to .processing.
    row = query_records(first.engine)[0]
    stored = inbox / "done" / row["source_name"]
    stored.rename(inbox / ".processing" / f"{row['seq']:010d}__{row['source_name']}")
    second = open_station(recipe, url)
    summary = run_station(second, idle_exit=1.0, status=None)
    rows = query_records(second.engine)
    assert summary["already_recorded"] == 1
    assert len(rows) == len({r["key"] for r in rows}) == len(sample_images(line_dir)) + 1
    assert len(done) == 3 and (inbox / "done" / row["source_name"]).exists()
    assert max(r["seq"] for r in rows) == len(rows)  # numbering went on after the restart


def test_replay_resumes_without_duplicates(line_dir: Path, model_file: Path, tmp_path: Path) -> None:
    folder = line_dir / "test"
    recipe = load(write_recipe(tmp_path, model_file, f"{{type: replay, path: {folder}, rate: 200}}"))
    url = f"sqlite:///{tmp_path / 'r.db'}"
    run_station(open_station(recipe, url), max_parts=4, status=None)
    again = open_station(recipe, url)
    assert len(query_records(again.engine)) == 4
    summary = run_station(again, status=None)
    rows = query_records(again.engine)
    assert len(rows) == len(sample_images(line_dir)) == len({r["source_name"] for r in rows})
    assert summary["already_recorded"] == 4


def write_video(path: Path, frames: int, size: int = 128) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size, size))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    writer.release()


class SlowInspector:
    """Stands in for a model slower than the camera, to force back-pressure."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner, self.delay, self.batches = inner, delay, []

    def prepare(self, arrival: Arrival) -> Prepared:
        return self.inner.prepare(arrival)

    def run(self, batch: Sequence[Prepared]) -> list[StoredRecord]:
        self.batches.append(len(batch))
        time.sleep(self.delay)
        return self.inner.run(batch)


def test_free_running_camera_drops_oldest_and_counts(model_file: Path, tmp_path: Path) -> None:
    video = tmp_path / "cam.avi"
    write_video(video, 40)
    src = f"{{type: camera, device: {video}, mode: free_run, rate: 400, queue: 2}}"
    recipe = load(write_recipe(tmp_path, model_file, src))
    opened = open_station(recipe, f"sqlite:///{tmp_path / 'r.db'}", batch_size=1)
    opened.station.inspector = SlowInspector(opened.station.inspector, 0.05)
    summary = run_station(opened, status=None)
    rows = query_records(opened.engine)
    assert summary["dropped_frames"] > 0
    assert len(rows) + summary["dropped_frames"] == 40  # every frame is recorded or counted as dropped
    drops = [e for e in query_events(opened.engine) if e["kind"] == "frames-dropped"]
    assert drops and drops[0]["severity"] == "alarm"


def test_triggered_camera_takes_one_frame_per_trigger(model_file: Path, tmp_path: Path) -> None:
    video = tmp_path / "cam.avi"
    write_video(video, 10)
    src = f"{{type: camera, device: {video}, mode: trigger}}"
    recipe = load(write_recipe(tmp_path, model_file, src, "part_id: {from: trigger, key: serial}"))
    opened = open_station(recipe, f"sqlite:///{tmp_path / 'r.db'}")

    def fire(loop: asyncio.AbstractEventLoop) -> None:
        for serial in ("A1", "A2", "A3"):
            loop.call_soon(opened.source.trigger, {"serial": serial})  # type: ignore[attr-defined]
        loop.call_later(1.0, opened.station.stop)

    run_station(opened, status=None, on_start=fire)
    rows = query_records(opened.engine)
    assert [r["part_id"] for r in rows] == ["A1", "A2", "A3"]
    assert all(r["verdict"] in ("OK", "NG") for r in rows)


def test_queued_parts_are_micro_batched(line_dir: Path, model_file: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    names = fill_inbox(line_dir, inbox)
    recipe = load(write_recipe(tmp_path, model_file, f"{{type: hot_folder, path: {inbox}, settle_ms: 0}}"))
    opened = open_station(recipe, f"sqlite:///{tmp_path / 'r.db'}", batch_size=4)
    spy = SlowInspector(opened.station.inspector, 0.1)
    opened.station.inspector = spy
    run_station(opened, idle_exit=0.5, status=None)
    assert sum(spy.batches) == len(names) and max(spy.batches) == 4
    assert len(query_records(opened.engine)) == len(names)


def test_low_disk_pauses_intake_with_an_alarm(line_dir: Path, model_file: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    names = fill_inbox(line_dir, inbox)
    extra = "storage: {min_free_mb: 1000000000}"
    text = write_recipe(tmp_path, model_file, f"{{type: hot_folder, path: {inbox}}}").read_text()
    (tmp_path / "recipe.yaml").write_text(text.replace("storage: {keep_ok_every: 2}", extra))
    opened = open_station(load(tmp_path / "recipe.yaml"), f"sqlite:///{tmp_path / 'r.db'}")

    def stop_soon(loop: asyncio.AbstractEventLoop) -> None:
        loop.call_later(1.5, opened.station.stop)

    summary = run_station(opened, status=None, on_start=stop_soon)
    assert summary["parts"] == 0 and query_records(opened.engine) == []
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == sorted(names)  # nothing claimed
    alarms = [e for e in query_events(opened.engine) if e["kind"] == "disk-full"]
    assert alarms and alarms[0]["severity"] == "alarm" and "intake paused" in alarms[0]["message"]


def test_hot_folder_waits_until_a_file_stops_changing(tmp_path: Path) -> None:
    cfg = HotFolderSource(type="hot_folder", path=tmp_path, settle_ms=50)
    src = HotFolder(cfg, "st", PartIds(parse_recipe_part_id()), SeqCounter())
    seen: dict[str, tuple[int, int, float]] = {}
    (tmp_path / "a.png").write_bytes(b"x" * 10)
    assert src._scan(seen, 0.0) == ([], {})
    assert src._scan(seen, 0.01) == ([], {})  # not settled yet
    (tmp_path / "a.png").write_bytes(b"x" * 20)  # still growing
    assert src._scan(seen, 0.1) == ([], {})
    assert src._scan(seen, 0.12) == ([], {})
    assert src._scan(seen, 0.2) == (["a.png"], {})


def parse_recipe_part_id() -> Any:
    from huoyan.core.recipe import PartId

    return PartId.model_validate({"from": "filename", "pattern": r"^(?P<id>\d+)_"})


def test_part_ids_from_filename_and_counter() -> None:
    from huoyan.core.recipe import PartId

    by_name = PartIds(parse_recipe_part_id())
    assert by_name("000123_good_0.png", 5) == "000123"
    assert by_name("nomatch.png", 5) is None
    assert PartIds(PartId.model_validate({"from": "counter", "prefix": "W"}))("x.png", 42) == "W00000042"
    assert PartIds(PartId())("dir/part-7.png", 1) == "part-7"


def test_preprocess_crop_rotate_resize() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[10:20, 30:50] = 255
    out = apply(img, Preprocess(roi=(30, 10, 20, 10), rotate=90, resize=(40, 80)))
    assert out.shape == (80, 40, 3) and out.min() == 255
    with pytest.raises(PreprocessError, match="outside"):
        apply(img, Preprocess(roi=(190, 0, 20, 10)))


def test_region_rules_tolerate_small_blemishes() -> None:
    small = Region(x=0, y=0, width=3, height=3, area_px=9, area_mm2=0.09, max_score=1.3, mean_score=1.1)
    big = Region(x=0, y=0, width=30, height=30, area_px=900, area_mm2=9.0, max_score=2.0, mean_score=1.5)
    rules = Decision(ng_if_any_region=[RegionRule(field="area_mm2", above=2.0)])

    with_rules, without = Policy.of(1.0, rules), Policy.of(1.0, Decision())
    assert verdict(1.5, [small], with_rules) == Verdict.OK
    assert verdict(1.5, [small, big], with_rules) == Verdict.NG
    assert verdict(1.5, [small], without) == Verdict.NG
    assert verdict(0.9, [], with_rules) == Verdict.OK  # under the threshold
    assert verdict(1.5, [], Policy.of(1.0, Decision(min_region_area_px=20))) == Verdict.OK  # blobs too small


def test_rule_outcomes_say_which_condition_made_the_verdict() -> None:
    small = Region(x=0, y=0, width=3, height=3, area_px=9, area_mm2=0.09, max_score=1.3, mean_score=1.1)
    policy = Policy.of(
        1.0,
        Decision(
            min_region_area_px=5,
            ng_if_any_region=[RegionRule(field="area_mm2", above=2.0), RegionRule(field="max_score", above=1.2)],
        ),
    )
    outcomes = rule_outcomes(1.5, [small], policy)
    assert [(o.rule, o.met, o.value, o.limit) for o in outcomes] == [
        ("score above threshold", True, 1.5, 1.0),
        ("a region at least min_region_area_px", True, 9.0, 5.0),
        ("a region area_mm2 above 2", False, 0.09, 2.0),
        ("a region max_score above 1.2", True, 1.3, 1.2),
    ]
    assert verdict(1.5, [small], policy) == Verdict.NG  # one region rule met is enough
    under = rule_outcomes(0.5, [], policy)
    assert [o.met for o in under] == [False, False, False, False] and under[3].value is None
    assert verdict(0.5, [], policy) == Verdict.OK


def test_station_rides_out_a_postgres_restart(
    postgres_server: Any, line_dir: Path, model_file: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    names = fill_inbox(line_dir, inbox)
    recipe = load(write_recipe(tmp_path, model_file, f"{{type: hot_folder, path: {inbox}, settle_ms: 0}}"))
    opened = open_station(recipe, postgres_server.new_database(), batch_size=1)
    opened.station.inspector = SlowInspector(opened.station.inspector, 0.1)

    late, picture = inbox / "after_restart.png", (inbox / names[0]).read_bytes()
    cycles: list[asyncio.Future[None]] = []

    def outage(loop: asyncio.AbstractEventLoop) -> None:
        def cycle() -> None:
            time.sleep(0.3)
            postgres_server.stop()
            time.sleep(1.0)
            postgres_server.start()
            # One more part once the database is back, then stop (as SIGTERM does) when the
            # spool is written, whenever that is: how fast the server restarts is no test's business.
            (inbox / "after_restart.part").write_bytes(picture)
            (inbox / "after_restart.part").rename(late)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                counted = sum(opened.station.stats.verdicts.values())
                if counted == len(names) + 1 and not opened.store.degraded and not len(opened.store.spool):
                    break
                time.sleep(0.1)
            loop.call_soon_threadsafe(opened.station.stop)

        cycles.append(loop.run_in_executor(None, cycle))

    summary = run_station(opened, status=None, on_start=outage)
    assert cycles[0].done() and cycles[0].exception() is None
    rows = query_records(opened.engine)
    assert sorted(r["source_name"] for r in rows) == sorted([*names, late.name])
    assert summary["spooled"] == 0 and len(opened.store.spool) == 0
    outage_events = [
        (e["severity"], e["active"]) for e in query_events(opened.engine) if e["kind"] == "database-unavailable"
    ]
    assert outage_events == [("alarm", True), ("info", False)]


def test_a_part_arriving_while_intake_pauses_waits_for_the_resume(
    line_dir: Path, model_file: Path, tmp_path: Path
) -> None:
    """Pausing means nothing new goes in flight (a recipe switch relies on it), even for a
    part the source was already waiting for when the pause came."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    picture = sample_images(line_dir)[0].read_bytes()
    recipe = load(write_recipe(tmp_path, model_file, f"{{type: hot_folder, path: {inbox}, settle_ms: 0}}"))
    opened = open_station(recipe, f"sqlite:///{tmp_path / 'db.sqlite'}", batch_size=1)
    station = opened.station
    seen: list[tuple[int, int]] = []
    runs: list[asyncio.Future[None]] = []

    def during(loop: asyncio.AbstractEventLoop) -> None:
        def steps() -> None:
            time.sleep(1.0)  # intake is waiting on the empty folder
            loop.call_soon_threadsafe(station.pause)
            time.sleep(0.2)
            (inbox / "late.part").write_bytes(picture)
            (inbox / "late.part").rename(inbox / "late.png")
            time.sleep(1.5)
            seen.append((station.in_flight, sum(station.stats.verdicts.values())))
            loop.call_soon_threadsafe(station.resume)
            deadline = time.monotonic() + 30
            while sum(station.stats.verdicts.values()) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            loop.call_soon_threadsafe(station.stop)

        runs.append(loop.run_in_executor(None, steps))

    run_station(opened, status=None, on_start=during)
    assert runs[0].done() and runs[0].exception() is None
    assert seen == [(0, 0)]  # held while paused
    assert [r["source_name"] for r in query_records(opened.engine)] == ["late.png"]  # and inspected after


def kinds(record: dict[str, Any]) -> list[str]:
    """The kinds of a stored record's evidence, in order."""
    return [e["kind"] for e in record["evidence"]]
