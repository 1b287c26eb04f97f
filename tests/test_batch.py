"""Bulk re-inspection on Ray (``huoyan batch``): the station's own scores for the same
images and model, results beside the original verdicts, each image stored once across a
killed and resumed job, on a local Ray and on a real two-node cluster the tests start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text

from huoyan.cli import main
from huoyan.runner import open_station, run_station
from huoyan.store.accounts import Role
from huoyan.store.records import query_records
from huoyan.store.reinspections import get_run, run_results
from huoyan.store.schema import ReinspectionResultRow
from huoyan.vision.imageio import list_images, read_image
from huoyan.vision.patchcore import PatchCore
from raykit import two_node_cluster
from serverkit import make_platform_app
from test_station import fill_inbox, load

SRC = Path(__file__).resolve().parents[1] / "src"


def batch(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["batch", *args, "--json"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return out


def test_re_inspecting_a_stations_records_gives_the_stations_own_scores(
    line_dir: Path, model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inbox = tmp_path / "inbox"
    names = fill_inbox(line_dir, inbox)
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(
        f"station: st-1\nproduct: washer\nrecipe: washer-top\nversion: '1'\nmodel: {model_file}\n"
        f"source: {{type: hot_folder, path: {inbox}, settle_ms: 0}}\n"
        f"storage: {{data_dir: {tmp_path / 'data'}, database: 'sqlite:///{tmp_path / 'r.db'}', keep_ok_every: 1}}\n"
    )
    opened = open_station(load(recipe_file))
    run_station(opened, idle_exit=1.0, status=None)
    records = {r["key"]: r for r in query_records(opened.engine)}
    assert len(records) == len(names)

    summary = batch(capsys, str(model_file), "--records", "--station", "st-1", "--recipe", str(recipe_file))
    assert summary["selected"] == len(names) and summary["scored_now"] == len(names)
    assert summary["changed"] == {} and summary["without_image"] == 0
    results = run_results(opened.engine, summary["run_id"])
    assert sorted(r["item"] for r in results) == sorted(records)
    for r in results:  # the same score, bit for bit, and the same verdict: the station's own inspector
        original = records[r["item"]]
        assert (r["verdict"], r["score"]) == (original["verdict"], original["score"])
        assert (r["original_verdict"], r["original_score"]) == (original["verdict"], original["score"])
        assert r["inspection_id"] == original["id"]
    corrupt = next(r for r in results if r["source_name"] == "corrupt.png")
    assert corrupt["verdict"] == "ERROR" and "not a readable image" in corrupt["error"]
    run = get_run(opened.engine, summary["run_id"])
    assert run is not None and run.model_sha256 == opened.model_sha256 and run.finished_at is not None

    # Judged again at another threshold: the parts between the two change verdict, and the API says which.
    ok_scores = sorted(r["score"] for r in records.values() if r["verdict"] == "OK")
    threshold = ok_scores[len(ok_scores) // 2]
    stricter = tmp_path / "stricter.yaml"
    stricter.write_text(recipe_file.read_text() + f"decision: {{threshold: {threshold!r}}}\n")
    moved = batch(capsys, str(model_file), "--records", "--recipe", str(stricter), "--name", "stricter")
    flipped = {r["key"] for r in records.values() if r["verdict"] == "OK" and r["score"] > threshold}
    assert flipped and moved["changed"] == {"OK->NG": len(flipped)}
    app, _, keys = make_platform_app(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "server", [])
    with TestClient(app) as client:
        listed = client.get("/api/reinspections", headers=keys.headers(Role.OPERATOR)).json()
        assert [(r["name"], r["stored"], r["total"]) for r in listed] == [
            ("stricter", len(names), len(names)), (summary["run"], len(names), len(names))]  # fmt: skip
        detail = client.get(f"/api/reinspections/{moved['run_id']}", headers=keys.headers(Role.OPERATOR)).json()
        assert {r["item"] for r in detail["changed"]} == flipped
        assert all(c["original_verdict"] == "OK" and c["verdict"] == "NG" for c in detail["changed"])
        assert {"original": "OK", "verdict": "NG", "parts": len(flipped)} in detail["table"]
        assert client.get("/api/reinspections/999", headers=keys.headers(Role.OPERATOR)).status_code == 404
        assert client.get("/api/reinspections").status_code == 401


def test_a_folder_run_resumes_by_name_with_its_own_model_only(
    line_dir: Path, model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "archive"
    fill_inbox(line_dir, folder)
    (folder / "notes.txt").write_text("not an image")
    db = f"sqlite:///{tmp_path / 'b.db'}"
    first = batch(capsys, str(model_file), str(folder), "--db", db, "--name", "march", "--batch-size", "3")
    files = len(list(folder.iterdir()))
    assert first["selected"] == files and first["scored_now"] == files
    assert first["verdicts"]["ERROR"] == 2  # the corrupt PNG and the text file, each with its reason
    again = batch(capsys, str(model_file), str(folder), "--db", db, "--name", "march")
    assert (again["stored_before"], again["scored_now"]) == (files, 0)
    train = [read_image(p) for p in list_images(line_dir / "train" / "good")]
    other = PatchCore(image_size=128, coreset_ratio=0.1, seed=1).fit(train).save(tmp_path / "other.safetensors")
    with pytest.raises(SystemExit, match="re-inspects with model"):
        main(["batch", str(other), str(folder), "--db", db, "--name", "march"])
    with pytest.raises(SystemExit, match="give a FOLDER to re-inspect, or --records"):
        main(["batch", str(model_file), "--db", db])  # refused before Ray or the model starts
    engine = create_engine(db)
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(ReinspectionResultRow)).scalar_one() == files


@pytest.mark.slow
def test_a_batch_killed_on_a_two_node_cluster_resumes_with_every_image_stored_once(
    line_dir: Path, model_file: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "archive"
    for i in range(3):  # enough batches of 2 that the kill lands part-way
        fill_inbox(line_dir, folder / f"shift-{i}")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    db = f"sqlite:///{tmp_path / 'b.db'}"
    with two_node_cluster(tmp_path) as (address, env):
        env = {**env, "PYTHONPATH": str(SRC)}
        command = [sys.executable, "-m", "huoyan.cli", "batch", str(model_file), str(folder), "--db", db,
                   "--address", address, "--workers", "2", "--batch-size", "2", "--name", "bulk", "--json"]  # fmt: skip
        job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        engine = create_engine(db)
        deadline = time.monotonic() + 240
        stored = 0
        while stored < 10 and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                with engine.connect() as c:
                    stored = c.execute(text("select count(*) from reinspection_results")).scalar_one()
            except Exception:  # the table is not there until the job has migrated the database
                stored = 0
        assert job.poll() is None, f"the job ended before it could be killed: {job.communicate()}"
        os.kill(job.pid, signal.SIGKILL)
        job.communicate()
        with engine.connect() as c:
            at_kill = c.execute(text("select count(*) from reinspection_results")).scalar_one()
        assert 10 <= at_kill < len(files)
        # Both one-CPU nodes are needed for the pool of two one-CPU actors to run at all.
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["stored_before"] == at_kill and summary["scored_now"] == len(files) - at_kill
    with engine.connect() as c:
        items = [row[0] for row in c.execute(text("select item from reinspection_results"))]
    assert len(items) == len(set(items)) == len(files)
    assert sorted(items) == sorted(p.relative_to(folder).as_posix() for p in files)
