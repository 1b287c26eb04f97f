"""Guarded bank updates: reviewed false alarms join a memory-bank model without a refit,
and only when held-out good parts and confirmed defects show it costs nothing."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from huoyan.cli import main
from huoyan.core.detector import NotFittedError
from huoyan.sampleline.generator import make_sample
from huoyan.server.platform import Platform
from huoyan.store.accounts import Role
from huoyan.vision.bank_update import guarded_update
from huoyan.vision.patchcore import PatchCore
from serverkit import Keys, png
from test_server_api import good_images, upload

ENGINEER = Role.ENGINEER


def tinted(image: np.ndarray, red: int) -> np.ndarray:
    """``red`` added to the red channel, as a new material batch might look."""
    out = image.astype(np.int16)
    out[..., 0] += red
    return np.clip(out, 0, 255).astype(np.uint8)


def washers(n: int, seed: int, red: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [tinted(make_sample("washer", None, 64, rng)[0], red) for _ in range(n)]


def holes(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [make_sample("washer", "hole", 64, rng)[0] for _ in range(n)]


def reshot(image: np.ndarray, seed: int) -> np.ndarray:
    """The same part imaged again: a little sensor noise."""
    noise = np.random.default_rng(seed).integers(-3, 4, image.shape)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = PatchCore(image_size=64, coreset_ratio=0.25, seed=0).fit(washers(20, 0))
    return model.save(tmp_path_factory.mktemp("parent") / "washer.safetensors")


def test_added_false_alarms_pass_afterwards_and_the_card_says_where_they_came_from(parent: Path) -> None:
    model = PatchCore.load(parent)
    threshold, rows = model.threshold, model.bank_.shape[0]
    red = washers(12, 5, red=40)
    assert (model.score(red).raw > threshold).all()  # a new batch's colour: false alarms
    model.partial_fit(red[:8])
    assert model.threshold == threshold and model.bank_.shape[0] > rows
    assert (model.score(red[:8]).raw <= threshold).all()
    assert (model.score(red[8:]).raw <= threshold).mean() >= 0.5  # the lesson carries over to unseen ones
    update = model.card_.details["updates"][0]
    assert update["images"] == 8 and update["rows_added"] == model.bank_.shape[0] - rows
    assert update["parent_bank_sha256"] == PatchCore.load(parent).card_.details["bank_sha256"]
    saved = model.save(parent.with_name("updated.safetensors"))
    again = PatchCore.load(saved)
    assert again.card_.details["updates"] == model.card_.details["updates"]
    np.testing.assert_array_equal(again.score(red).raw, model.score(red).raw)
    with pytest.raises(NotFittedError):
        PatchCore().partial_fit(red)


def test_an_update_that_lets_a_confirmed_defect_through_is_refused(parent: Path) -> None:
    model = PatchCore.load(parent)
    confirmed = holes(4, 100)
    wrongly_cleared = holes(1, 555)[0]  # a reviewer marked this defective part a false alarm
    confirmed.append(reshot(wrongly_cleared, 1))  # ... and the same part, imaged again, is a confirmed defect
    check = guarded_update(model, [wrongly_cleared], washers(12, 7), confirmed)
    assert not check.accepted and check.defects_let_through == [4]
    assert "confirmed defect" in check.reasons[0]
    # without the mistake the same update goes through
    fine = guarded_update(PatchCore.load(parent), washers(8, 5, red=40), washers(12, 7), confirmed)
    assert fine.accepted and fine.defects_let_through == [] and fine.defects_caught_before >= 4


def test_an_update_that_would_break_the_false_reject_bound_is_refused(parent: Path) -> None:
    # Two new batches arrive; only one is reviewed and added. The other still fails on
    # held-out parts far more often than the card's bound allows: the model needs a refit.
    check = guarded_update(PatchCore.load(parent), washers(8, 5, red=40), washers(14, 9, red=-60), holes(3, 100))
    assert not check.accepted and not check.bound_holds
    assert check.held_out_rejected > check.false_reject_bound * check.held_out_good
    assert check.bound_p_value is not None and check.bound_p_value < 1 - check.confidence
    assert "needs a refit" in check.reasons[0]
    too_few = guarded_update(PatchCore.load(parent), washers(8, 5, red=40), washers(5, 7))
    assert not too_few.accepted and "at least 10" in too_few.reasons[0]


def _folder(path: Path, images: list[np.ndarray]) -> Path:
    path.mkdir(parents=True)
    for i, img in enumerate(images):
        cv2.imwrite(str(path / f"{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path


def test_the_update_command_writes_a_model_only_when_the_guard_passes(
    parent: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add = _folder(tmp_path / "alarms", washers(8, 5, red=40))
    good = _folder(tmp_path / "good", washers(12, 7))
    defects = _folder(tmp_path / "defects", holes(3, 100))
    out = tmp_path / "v2.safetensors"
    args = ["update", str(parent), "--add", str(add), "--defects", str(defects)]
    assert main([*args, "--good", str(good), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accepted"] and report["output"] == str(out) and out.is_file()
    assert PatchCore.load(out).card_.details["updates"][0]["images"] == 8

    bad = _folder(tmp_path / "bad", washers(12, 9, red=-60))
    refused = tmp_path / "refused.safetensors"
    assert main([*args, "--good", str(bad), "-o", str(refused)]) == 1
    assert "refused:" in capsys.readouterr().err and not refused.exists()


def test_the_server_adds_reviewed_false_alarms_under_the_guard(
    served: tuple[TestClient, Platform, Keys], line_dir: Path, defect_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    client, p, keys = served
    h = keys.headers(ENGINEER)
    goods = good_images(line_dir)
    for i, img in enumerate(goods[:12]):
        assert upload(client, keys, png(img), f"G{i}.png")["verdict"] == "OK"
    alarms = [upload(client, keys, png(tinted(img, 40)), f"R{i}.png") for i, img in enumerate(goods[7:16])]
    assert {a["verdict"] for a in alarms} == {"NG"}
    for a in alarms:
        client.post(f"/api/inspections/{a['id']}/reviews", json={"outcome": "false_alarm"}, headers=h)
    defect = upload(client, keys, png(defect_sample[0]), "D1.png")
    assert defect["verdict"] == "NG"
    client.post(f"/api/inspections/{defect['id']}/reviews", json={"outcome": "defect"}, headers=h)

    job = client.post("/api/training-jobs", json={"station_id": "cell-1", "mode": "update"}, headers=h).json()
    assert job["params"]["mode"] == "update"
    claimed = p.versions.claim(["cell-1"])
    assert claimed is not None and claimed["id"] == job["id"]
    p.trainer.run(claimed)
    done = client.get(f"/api/training-jobs/{job['id']}", headers=h).json()
    assert done["status"] == "done", done["message"]
    versions = {v["version"]: v for v in client.get("/api/models", params={"station": "cell-1"}, headers=h).json()}
    v1, v2 = versions[1], versions[2]
    assert v2["parent_id"] == v1["id"] and v2["status"] == "candidate"
    assert v2["trained_on"]["source"] == "guarded bank update" and v2["trained_on"]["images"] == 6  # 3 held out
    assert set(v2["trained_on"]["inspection_ids"]) < {a["id"] for a in alarms}
    guard = v2["metrics"]["guard"]
    assert guard["accepted"] and guard["held_out_good"] == 12 + 3 and guard["defects_caught_before"] == 1
    assert v2["card"]["calibration"]["threshold"] == v1["card"]["calibration"]["threshold"]
    assert v2["metrics"]["candidate"]["false_alarms"] < v2["metrics"]["active"]["false_alarms"]

    # a defective part cleared by mistake, while the same part imaged again is a confirmed defect
    wrong = upload(client, keys, png(reshot(defect_sample[0], 3)), "D2.png")
    client.post(f"/api/inspections/{wrong['id']}/reviews", json={"outcome": "false_alarm"}, headers=h)
    for a in alarms:  # second opinions: those were defects after all, so only the mistake is left to add
        client.post(f"/api/inspections/{a['id']}/reviews", json={"outcome": "defect"}, headers=h)
    client.post("/api/training-jobs", json={"station_id": "cell-1", "mode": "update"}, headers=h)
    claimed = p.versions.claim(["cell-1"])
    assert claimed is not None
    p.trainer.run(claimed)
    refused = p.versions.job(claimed["id"])
    assert refused is not None and refused["status"] == "failed"
    assert "update refused: 1 confirmed defect" in refused["message"]
    assert len(client.get("/api/models", params={"station": "cell-1"}, headers=h).json()) == 2
