"""Bulk re-inspection on a local Ray (``huoyan batch``): the station's own scores for the
same images and model, results beside the original verdicts, a run resumed by its name
(the killed job on a two-node cluster is in test_ray_cluster.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select

from huoyan.cli import main
from huoyan.runner import open_station, run_station
from huoyan.store.accounts import Role
from huoyan.store.records import query_records
from huoyan.store.reinspections import get_run, run_results
from huoyan.store.schema import ReinspectionResultRow
from huoyan.vision.imageio import list_images, read_image
from huoyan.vision.patchcore import PatchCore
from serverkit import make_platform_app
from test_station import fill_inbox, load

SRC = Path(__file__).resolve().parents[1] / "src"

SRC = Path(__file__).resolve().parents[1] / "src"


def huoyan_batch(*args: str) -> subprocess.CompletedProcess[str]:
    """``huoyan batch`` in a process of its own, as it is run (and as Ray wants: one cluster per process)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "huoyan.cli", "batch", *args], env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def batch(*args: str) -> dict[str, Any]:
    done = huoyan_batch(*args, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def test_re_inspecting_a_stations_records_gives_the_stations_own_scores(
    line_dir: Path, model_file: Path, tmp_path: Path
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

    summary = batch(str(model_file), "--records", "--station", "st-1", "--recipe", str(recipe_file))
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
    moved = batch(str(model_file), "--records", "--recipe", str(stricter), "--name", "stricter")
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


def test_a_folder_run_resumes_by_name_with_its_own_model_only(line_dir: Path, model_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    fill_inbox(line_dir, folder)
    (folder / "notes.txt").write_text("not an image")
    db = f"sqlite:///{tmp_path / 'b.db'}"
    first = batch(str(model_file), str(folder), "--db", db, "--name", "march", "--batch-size", "3")
    files = len(list(folder.iterdir()))
    assert first["selected"] == files and first["scored_now"] == files
    assert first["verdicts"]["ERROR"] == 2  # the corrupt PNG and the text file, each with its reason
    again = batch(str(model_file), str(folder), "--db", db, "--name", "march")
    assert (again["stored_before"], again["scored_now"]) == (files, 0)
    train = [read_image(p) for p in list_images(line_dir / "train" / "good")]
    other = PatchCore(image_size=128, coreset_ratio=0.1, seed=1).fit(train).save(tmp_path / "other.safetensors")
    refused = huoyan_batch(str(other), str(folder), "--db", db, "--name", "march")
    assert refused.returncode != 0 and "re-inspects with model" in refused.stderr
    with pytest.raises(SystemExit, match="give a FOLDER to re-inspect, or --records"):
        main(["batch", str(model_file), "--db", db])  # refused before Ray or the model starts
    engine = create_engine(db)
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(ReinspectionResultRow)).scalar_one() == files
