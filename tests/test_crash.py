"""Crash safety of a real station process: SIGKILL mid-run loses and duplicates nothing;
SIGTERM drains what was taken and leaves the rest in the hot folder."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from huoyan.store.database import make_engine
from huoyan.store.records import query_records


def make_inbox(line_dir: Path, inbox: Path, copies: int) -> list[str]:
    inbox.mkdir(parents=True)
    names = []
    for c in range(copies):
        for p in sorted((line_dir / "test").rglob("*.png")):
            name = f"{c}_{p.parent.name}_{p.name}"
            (inbox / name).write_bytes(p.read_bytes())
            names.append(name)
    (inbox / "broken.png").write_bytes(b"not an image")
    return [*names, "broken.png"]


def station_cmd(tmp_path: Path, model: Path, inbox: Path, url: str, *extra: str) -> list[str]:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"station: crash-1\nproduct: washer\nrecipe: washer-top\nversion: '1'\n"
        f"source: {{type: hot_folder, path: {inbox}, settle_ms: 0}}\nmodel: {model}\n"
        f"storage: {{data_dir: {tmp_path / 'data'}}}\n"
    )
    return [sys.executable, "-m", "huoyan.cli", "run", str(recipe), "--db", url, "--quiet", *extra]


def count(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM inspections")).scalar_one())
    except SQLAlchemyError:
        return 0
    finally:
        engine.dispose()


def wait_for_records(url: str, n: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while count(url) < n:
        assert proc.poll() is None, "station exited before it was interrupted"
        assert time.monotonic() < end, "station stored nothing in time"
        time.sleep(0.01)


def test_sigkill_midway_then_restart_keeps_exactly_one_record_per_file(
    db_url: str, line_dir: Path, model_file: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    names = make_inbox(line_dir, inbox, copies=4)
    cmd = station_cmd(tmp_path, model_file, inbox, db_url, "--batch-size", "2")
    proc = subprocess.Popen([*cmd, "--idle-exit", "30"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_records(db_url, 5, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = count(db_url)
    assert 0 < killed_at < len(names), "the kill must land part-way through"
    done = subprocess.run([*cmd, "--idle-exit", "1.5"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = query_records(make_engine(db_url), station="crash-1")
    assert sorted(r["source_name"] for r in rows) == sorted(names)
    assert len({r["key"] for r in rows}) == len(rows)
    assert [r["verdict"] for r in rows if r["source_name"] == "broken.png"] == ["ERROR"]
    assert not [p for p in inbox.iterdir() if p.is_file()] and not list((inbox / ".processing").iterdir())
    archived = [p.name for p in (inbox / "done").iterdir()] + [p.name for p in (inbox / "failed").iterdir()]
    assert sorted(archived) == sorted(names)


def test_sigterm_drains_in_flight_parts_and_exits_cleanly(line_dir: Path, model_file: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    inbox = tmp_path / "inbox"
    names = make_inbox(line_dir, inbox, copies=6)
    cmd = station_cmd(tmp_path, model_file, inbox, url, "--batch-size", "1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    wait_for_records(url, 3, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    summary = json.loads(out.decode().strip().splitlines()[-1])
    rows = query_records(make_engine(url))
    assert summary["parts"] == len(rows) < len(names)
    assert not list((inbox / ".processing").iterdir())  # everything taken was finished
    archived = {p.name for p in (inbox / "done").iterdir()} | {p.name for p in (inbox / "failed").iterdir()}
    assert archived == {r["source_name"] for r in rows}
    waiting = {p.name for p in inbox.iterdir() if p.is_file()}
    assert waiting | archived == set(names) and not waiting & archived
