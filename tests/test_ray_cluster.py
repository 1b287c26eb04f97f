"""#21 on a real two-node Ray cluster the tests start (one CPU per node, token auth): a
``huoyan batch`` killed part-way resumes with every image stored once; ``huoyan fit-many``
writes the models ``huoyan fit`` writes; the server's retraining job fits on the cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from sqlalchemy import create_engine, text

from huoyan.vision.patchcore import PatchCore
from raykit import two_node_cluster
from test_station import fill_inbox

SRC = Path(__file__).resolve().parents[1] / "src"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """(address, environment with PYTHONPATH) of the cluster; this process may join it too."""
    folder = tmp_path_factory.mktemp("ray")
    with two_node_cluster(folder) as (address, env):
        saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
        os.environ.update({k: env[k] for k in saved})
        try:
            yield address, {**env, "PYTHONPATH": str(SRC)}
        finally:
            import ray

            ray.shutdown()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def huoyan(*args: str) -> list[str]:
    return [sys.executable, "-m", "huoyan.cli", *args]


def test_a_batch_killed_on_the_cluster_resumes_with_every_image_stored_once(
    cluster: tuple[str, dict[str, str]], line_dir: Path, model_file: Path, tmp_path: Path
) -> None:
    address, env = cluster
    folder = tmp_path / "archive"
    for i in range(3):  # enough batches of 2 that the kill lands part-way
        fill_inbox(line_dir, folder / f"shift-{i}")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    db = f"sqlite:///{tmp_path / 'b.db'}"
    command = huoyan("batch", str(model_file), str(folder), "--db", db, "--address", address,
                     "--workers", "2", "--batch-size", "2", "--name", "bulk", "--json")  # fmt: skip
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


def test_fit_many_on_the_cluster_writes_the_models_huoyan_fit_writes(
    cluster: tuple[str, dict[str, str]], line_dir: Path, fitted: PatchCore, tmp_path: Path
) -> None:
    address, env = cluster
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    out = tmp_path / "models"
    params = ["--param", "image_size=128", "--param", "coreset_ratio=0.25", "--param", "seed=0"]
    done = subprocess.run(huoyan("fit-many", str(line_dir), str(empty), "-o", str(out), "--address", address,
                                 *params, "--json"), env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]  # one folder could not be fitted: said, and the exit says so
    rows = {r["name"]: r for r in map(json.loads, done.stdout.strip().splitlines())}
    assert "no images to fit on" in rows["empty"]["error"] and "readme.txt: not an image file" in rows["empty"]["error"]
    assert rows["empty"]["model"] is None and not (out / "empty.safetensors").exists()
    washer = rows[line_dir.name]
    # The same bank, threshold and training digest as fitting here, as `huoyan fit` does.
    here = fitted.save(tmp_path / "here.safetensors")
    assert np.array_equal(load_file(washer["model"])["bank"], load_file(str(here))["bank"])
    assert washer["card"]["train_content_sha256"] == fitted.card_.train_content_sha256
    assert washer["card"]["calibration"]["threshold"] == fitted.card_.calibration.threshold
    bad = subprocess.run(huoyan("fit-many", str(line_dir), "-o", str(out), "--param", "no_such=1"),
                         env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode != 0 and "--param 'no_such=1'" in bad.stderr


def test_the_servers_retraining_job_fits_on_the_cluster(
    cluster: tuple[str, dict[str, str]], served_for_ray: object, line_dir: Path
) -> None:
    import ray

    from huoyan.scale.training import RayFitter
    from huoyan.store.accounts import Role
    from serverkit import png
    from test_server_api import good_images, upload

    address, _ = cluster
    client, p, keys = served_for_ray  # type: ignore[misc]
    p.trainer.fitter = RayFitter(address)
    goods = [upload(client, keys, png(img), f"G{i}.png") for i, img in enumerate(good_images(line_dir)[:10])]
    h = keys.headers(Role.ENGINEER)
    job = client.post("/api/training-jobs", json={"station_id": "cell-1", "max_images": 50}, headers=h).json()
    claimed = p.versions.claim(["cell-1"])
    assert claimed is not None and claimed["id"] == job["id"]
    p.trainer.run(claimed)
    done = client.get(f"/api/training-jobs/{job['id']}", headers=h).json()
    assert done["status"] == "done", done["message"]
    versions = {v["version"]: v for v in client.get("/api/models", params={"station": "cell-1"}, headers=h).json()}
    v2 = versions[2]
    assert v2["parent_id"] == versions[1]["id"] and v2["card"]["train_samples"] == len(goods)
    assert set(v2["trained_on"]["inspection_ids"]) == {g["id"] for g in goods}
    assert p.trainer.fitter.last_node in {n["NodeID"] for n in ray.nodes()}  # fitted by a task on the cluster


@pytest.fixture()
def served_for_ray(model_file: Path, tmp_path: Path) -> Iterator[tuple[object, object, object]]:
    from fastapi.testclient import TestClient

    from serverkit import make_platform_app, write_recipe

    recipe = write_recipe(tmp_path, "cell-1", model_file, "http")
    app, p, keys = make_platform_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, [recipe])
    with TestClient(app) as client:
        yield client, p, keys
