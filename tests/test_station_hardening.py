"""A station under hostile input and a missing database: every part ends as exactly one
record, and no failure that belongs to one part (or to the database) stops the station."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from huoyan.core.models import Verdict
from huoyan.core.records import StoredRecord
from huoyan.runner import open_station, run_station
from huoyan.store.records import query_events, query_records
from test_station import load, sample_images, write_recipe
from test_store import make_store, record


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unreachable(db_url: str, tmp_path: Path) -> str:
    """A URL of the same kind whose server cannot be reached."""
    if db_url.startswith("sqlite"):
        blocked = tmp_path / "a-folder-not-a-database"
        blocked.mkdir(exist_ok=True)
        return f"sqlite:///{blocked}"
    return f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/huoyan"


def copy_parts(line_dir: Path, inbox: Path, prefix: str) -> list[str]:
    inbox.mkdir(parents=True, exist_ok=True)
    names = []
    for p in sample_images(line_dir):
        name = f"{prefix}_{p.parent.name}_{p.name}"
        (inbox / name).write_bytes(p.read_bytes())
        names.append(name)
    return names


def hot_folder_recipe(tmp_path: Path, model: Path, inbox: Path, extra: str = "") -> Any:
    source = f"{{type: hot_folder, path: '{inbox}', settle_ms: 0}}"
    return load(write_recipe(tmp_path, model, source, extra))


def test_station_started_without_its_database_loses_no_record(
    db_url: str, line_dir: Path, model_file: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    recipe = hot_folder_recipe(tmp_path, model_file, inbox)
    first = copy_parts(line_dir, inbox, "a")
    run_station(open_station(recipe, db_url), idle_exit=0.5, status=None)
    # The station restarts while the database is down and its spool is empty: the new
    # parts must not reuse the numbers (and keys) of records already committed.
    second = copy_parts(line_dir, inbox, "b")
    summary = run_station(open_station(recipe, unreachable(db_url, tmp_path)), idle_exit=0.5, status=None)
    assert summary["spooled"] >= len(second)
    again = open_station(recipe, db_url)  # the database is back: the spool is flushed on start
    rows = query_records(again.engine)
    assert sorted(r["source_name"] for r in rows) == sorted(first + second)
    assert len({r["key"] for r in rows}) == len({r["seq"] for r in rows}) == len(rows)
    assert len(again.store.spool) == 0


def test_flush_never_reports_a_different_part_under_a_stored_key_as_written(db_url: str, tmp_path: Path) -> None:
    store = make_store(db_url, tmp_path)
    store.write([StoredRecord(record("st-1:hot_folder:1"))])
    other = record("st-1:hot_folder:1", Verdict.NG).model_copy(update={"source_name": "another-part.png"})
    store.spool.append("record", other.model_dump(mode="json"))
    events: list[Any] = []
    store.on_event = events.append
    store.degraded = True
    assert store.flush()
    rows = query_records(store.engine)
    assert sorted(r["source_name"] for r in rows) == sorted(["st-1:hot_folder:1.png", "another-part.png"])
    assert any(e.kind == "record-key-collision" for e in events)
    # The same part stored again (a crash between commit and spool removal) stays one record.
    store.spool.append("record", record("st-1:hot_folder:1").model_dump(mode="json"))
    store.degraded = True
    assert store.flush() and len(query_records(store.engine)) == 2


HOSTILE_NAMES = [
    "x" * 240 + ".png",  # the claim's prefix takes it past NAME_MAX
    os.fsdecode(b"bad-\xff\xfe-utf8.png"),  # not UTF-8
    "s" * 230 + ".png",  # a stem over the part id column's 200 characters
    "caf\u00e9-nfc.png",
    "cafe\u0301-nfd.png",
    "CON.png",
    "nul.png",
    " leading space.png",
    "tab\there.png",
    "new\nline.png",
    "quote'\"<script>.png",
    "\u706b\u773c-\U0001f525.png",
    "-dash.png",
    "many.dots.in.name.png",
    "no-suffix",
]


def test_hostile_file_names_each_become_one_record_and_the_station_goes_on(
    db_url: str, line_dir: Path, model_file: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    good = good_sample(line_dir)
    for name in HOSTILE_NAMES:
        with open(os.path.join(os.fsencode(inbox), os.fsencode(name)), "wb") as f:
            f.write(good)
    recipe = hot_folder_recipe(tmp_path, model_file, inbox)
    opened = open_station(recipe, db_url)
    summary = run_station(opened, idle_exit=1.0, status=None)
    rows = query_records(opened.engine)
    assert summary["parts"] == len(rows) == len(HOSTILE_NAMES)
    assert not list((inbox / ".processing").iterdir())
    archived = {os.fsencode(p.name) for p in (inbox / "done").iterdir()} | {
        os.fsencode(p.name) for p in (inbox / "failed").iterdir()
    }
    assert len(archived) == len(HOSTILE_NAMES)
    stored = {r["source_name"] for r in rows}
    assert "caf\u00e9-nfc.png" in stored and "\u706b\u773c-\U0001f525.png" in stored
    assert "bad-\\xff\\xfe-utf8.png" in stored  # undecodable bytes, escaped
    assert all(len(r["part_id"] or "") <= 200 and "\x00" not in r["source_name"] for r in rows)
    long_one = next(r for r in rows if r["source_name"].startswith("x" * 100))
    assert long_one["verdict"] == "OK"


def good_sample(line_dir: Path) -> bytes:
    return sorted((line_dir / "test" / "good").glob("*.png"))[0].read_bytes()


def write_png(path: Path, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    path.write_bytes(buf.tobytes())
    return buf.tobytes()


def test_oversized_image_is_refused_from_its_header(line_dir: Path, model_file: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    # A 20000x20000 black PNG is a few hundred KB on disk and 1.2 GB decoded.
    big = np.zeros((20000, 20000), np.uint8)
    write_png(inbox / "bomb.png", big)
    del big
    write_png(inbox / "a-bit-big.png", np.zeros((300, 300), np.uint8))
    recipe = hot_folder_recipe(tmp_path, model_file, inbox, "preprocess: {max_image_pixels: 40000}")
    opened = open_station(recipe, f"sqlite:///{tmp_path / 'r.db'}")
    run_station(opened, idle_exit=1.0, status=None)
    rows = {r["source_name"]: r for r in query_records(opened.engine)}
    assert rows["bomb.png"]["verdict"] == rows["a-bit-big.png"]["verdict"] == "ERROR"
    assert "20000x20000" in rows["bomb.png"]["error"] and "40000" in rows["bomb.png"]["error"]


def test_images_unlike_the_training_images_are_errors_not_verdicts(
    line_dir: Path, model_file: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_png(inbox / "one-pixel.png", np.full((1, 1), 128, np.uint8))
    write_png(inbox / "sliver.png", np.full((1, 60000), 128, np.uint8))
    (inbox / "fine.png").write_bytes(good_sample(line_dir))
    opened = open_station(hot_folder_recipe(tmp_path, model_file, inbox), f"sqlite:///{tmp_path / 'r.db'}")
    run_station(opened, idle_exit=1.0, status=None)
    rows = {r["source_name"]: r for r in query_records(opened.engine)}
    assert rows["one-pixel.png"]["verdict"] == rows["sliver.png"]["verdict"] == "ERROR"
    assert "1x60000" in rows["sliver.png"]["error"] or "60000x1" in rows["sliver.png"]["error"]
    assert rows["fine.png"]["verdict"] == "OK"


def test_gray_image_for_a_colour_model_is_an_error(tmp_path: Path) -> None:
    from huoyan.sampleline.generator import make_sample
    from huoyan.vision.patchcore import PatchCore

    rng = np.random.default_rng(5)
    images = [make_sample("fabric", None, 64, rng)[0] for _ in range(8)]
    model = PatchCore(image_size=64, coreset_ratio=0.5, seed=0).fit(images)
    model_path = model.save(tmp_path / "fabric.safetensors")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    colour = make_sample("fabric", None, 64, rng)[0]
    write_png(inbox / "colour.png", cv2.cvtColor(colour, cv2.COLOR_RGB2BGR))
    write_png(inbox / "gray.png", cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY))
    opened = open_station(hot_folder_recipe(tmp_path, model_path, inbox), f"sqlite:///{tmp_path / 'r.db'}")
    run_station(opened, idle_exit=1.0, status=None)
    rows = {r["source_name"]: r for r in query_records(opened.engine)}
    assert rows["gray.png"]["verdict"] == "ERROR" and "gray" in rows["gray.png"]["error"]
    assert rows["colour.png"]["verdict"] in ("OK", "NG")


@pytest.mark.parametrize("kind", ["empty", "symlink", "fifo", "folder"])
def test_entries_a_hot_folder_cannot_take_raise_an_alarm(
    kind: str, line_dir: Path, model_file: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    target = tmp_path / "outside.png"
    target.write_bytes(sample_images(line_dir)[0].read_bytes())
    entry = inbox / "odd.png"
    if kind == "empty":
        entry.write_bytes(b"")
    elif kind == "symlink":
        entry.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(entry)
    else:
        entry.mkdir()
    source = f"{{type: hot_folder, path: '{inbox}', settle_ms: 0}}"
    opened = open_station(load(write_recipe(tmp_path, model_file, source)), f"sqlite:///{tmp_path / 'r.db'}")
    run_station(opened, idle_exit=1.5, status=None)
    alarms = [e for e in query_events(opened.engine) if e["kind"] == "hot-folder-skipped"]
    assert alarms and "odd.png" in alarms[0]["message"]
    assert not query_records(opened.engine)
    assert target.exists() and os.path.lexists(entry)  # left alone, links not followed


def test_temporary_files_of_a_killed_writer_are_cleaned_at_start(model_file: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    recipe = hot_folder_recipe(tmp_path, model_file, inbox)
    blobs = Path(recipe.storage.data_dir) / "blobs" / "ab"
    blobs.mkdir(parents=True)
    dead = blobs / f".{'ab' * 32}.999999999.1.tmp"  # no process has this id
    dead.write_bytes(b"half a blob")
    open_station(recipe, f"sqlite:///{tmp_path / 'r.db'}")
    assert not dead.exists()


# -- fuzz: many generated names and image headers against one running station ---------------


def fuzz_names(rng: np.random.Generator, n: int) -> list[bytes]:
    """File names as bytes: random lengths up to NAME_MAX, any byte but '/' and NUL,
    Unicode in both normalisation forms, names reserved elsewhere (Windows devices)."""
    import unicodedata

    names: set[bytes] = set()
    reserved = ["CON", "PRN", "AUX", "NUL", "COM1", "LPT9", "desktop.ini", "Thumbs.db", "-.png", "a..png"]
    words = [
        "caf\u00e9",
        "\u00c5ngstr\u00f6m",
        "\u706b\u773c",
        "\uff21\uff22",
        "\u0130stanbul",
        "\U0001f525",
        "e\u0301",
    ]
    for r in reserved:
        names.add(r.encode())
    while len(names) < n:
        kind = int(rng.integers(4))
        if kind == 0:  # raw bytes, no '/' or NUL
            raw = bytes(int(b) for b in rng.integers(1, 256, int(rng.integers(1, 256))) if b != ord("/"))
        elif kind == 1:  # long readable names near the limit
            raw = ("p" * int(rng.integers(200, 252)) + ".png").encode()
        else:  # Unicode, NFC or NFD
            text = "_".join(str(rng.choice(words)) for _ in range(int(rng.integers(1, 6))))
            form = "NFC" if kind == 2 else "NFD"
            raw = (unicodedata.normalize(form, text) + f"-{len(names)}.png").encode()
        raw = raw[:255]
        if raw in (b".", b"..") or raw.startswith(b".") or raw.endswith((b".tmp", b".part", b".partial", b"~")):
            continue  # names a writer uses while a file is incomplete are never claimed, by design
        names.add(raw)
    return sorted(names)


def fuzz_images(rng: np.random.Generator) -> dict[str, bytes]:
    """Encoded images of odd sizes, depths and channels, and files with damaged headers."""
    out: dict[str, bytes] = {}
    for i in range(24):
        h, w = (int(x) for x in rng.integers(1, 300, 2))
        channels = int(rng.choice([1, 3, 4]))
        depth = np.uint16 if (i % 3 == 0) else np.uint8
        top = 65535 if depth is np.uint16 else 255
        shape = (h, w) if channels == 1 else (h, w, channels)
        image = rng.integers(0, top, shape).astype(depth)
        ext = str(rng.choice([".png", ".tif", ".bmp", ".jpg"]))
        if depth is np.uint16 and ext in (".bmp", ".jpg"):
            ext = ".png"
        if channels == 4 and ext in (".jpg",):
            ext = ".png"
        ok, buf = cv2.imencode(ext, image)
        assert ok
        out[f"fuzz-{i:02d}-{w}x{h}x{channels}-{depth.__name__}{ext}"] = buf.tobytes()
    base = list(out.items())
    for i in range(12):
        name, data = base[i]
        damaged = bytearray(data)
        for _ in range(int(rng.integers(1, 6))):
            pos = int(rng.integers(0, min(len(damaged), 64)))
            damaged[pos] = int(rng.integers(0, 256))
        out[f"damaged-{i:02d}-{name}"] = bytes(damaged)
        out[f"truncated-{i:02d}-{name}"] = data[: int(rng.integers(1, max(2, len(data) // 2)))]
    return out


def run_in_background(opened: Any) -> tuple[Any, Any]:
    import threading

    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(run_station(opened, status=None)), daemon=True)
    thread.start()
    return thread, result


def wait_for_count(engine: Any, n: int, timeout: float = 180) -> list[dict[str, Any]]:
    import time

    end = time.monotonic() + timeout
    while True:
        rows = query_records(engine)
        if len(rows) >= n or time.monotonic() > end:
            return rows
        time.sleep(0.2)


def test_fuzzed_names_and_headers_each_end_as_one_record_on_a_running_station(
    db_url: str, line_dir: Path, model_file: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(2026)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    opened = open_station(hot_folder_recipe(tmp_path, model_file, inbox), db_url)
    thread, _ = run_in_background(opened)
    good = good_sample(line_dir)
    names = fuzz_names(rng, 60)
    for raw in names:
        with open(os.path.join(os.fsencode(inbox), raw), "wb") as f:
            f.write(good)
    images = fuzz_images(rng)
    for name, data in images.items():
        (inbox / name).write_bytes(data)
    expected = len(names) + len(images)
    rows = wait_for_count(opened.engine, expected)
    assert len(rows) == expected == len({r["key"] for r in rows})
    assert thread.is_alive()  # still running: one more part is still taken
    (inbox / "after-the-fuzz.png").write_bytes(good)
    rows = wait_for_count(opened.engine, expected + 1)
    assert any(r["source_name"] == "after-the-fuzz.png" and r["verdict"] == "OK" for r in rows)
    opened.station.stop()
    thread.join(30)
    leftovers = [p for p in inbox.iterdir() if p.name not in ("done", "failed", ".processing")]
    assert not leftovers and not list((inbox / ".processing").iterdir())
