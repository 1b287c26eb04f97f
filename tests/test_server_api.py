"""The REST API with the real app, real hosted stations and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from huoyan.sampleline.generator import make_sample
from huoyan.server.platform import Platform
from huoyan.store.accounts import Role
from huoyan.store.schema import AuditRow, ReviewRow
from huoyan.vision.imageio import list_images, read_image
from serverkit import PASSWORD, Keys, make_platform_app, make_platform_app_again, png, write_recipe

ADMIN, ENGINEER, OPERATOR = Role.ADMIN, Role.ENGINEER, Role.OPERATOR


def good_images(line_dir: Path) -> list[np.ndarray]:
    return [read_image(f) for f in list_images(line_dir / "train" / "good")]


def upload(
    client: TestClient, keys: Keys, data: bytes, name: str, role: Role = OPERATOR, lot: str | None = None
) -> dict[str, Any]:
    r = client.post(
        "/api/stations/cell-1/inspect",
        files={"image": (name, data, "image/png")},
        data={"lot": lot} if lot else None,
        headers=keys.headers(role),
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def three_good_one_ng(
    client: TestClient, keys: Keys, line_dir: Path, defect_sample: tuple[np.ndarray, np.ndarray]
) -> dict[str, Any]:
    """G0, G1, G2 (good) and D1 (a defect) uploaded in that order; D1's result."""
    for i, img in enumerate(good_images(line_dir)[:3]):
        upload(client, keys, png(img), f"G{i}.png")
    return upload(client, keys, png(defect_sample[0]), "D1.png")


def login(client: TestClient, username: str) -> str:
    r = client.post("/api/session", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    csrf: str = r.json()["csrf_token"]
    return csrf


def test_health_is_open_and_everything_else_needs_credentials(served: tuple[TestClient, Platform, Keys]) -> None:
    client, _, keys = served
    assert client.get("/api/health").json()["status"] == "ok"
    ready = client.get("/api/health/ready")
    assert ready.status_code == 200 and ready.json() == {
        "status": "ready",
        "database": True,
        "stations": {"cell-1": True},
    }
    assert client.get("/api/inspections").status_code == 401
    assert client.get("/api/inspections", headers={"X-API-Key": "hy_not-a-key"}).status_code == 401
    assert (
        client.get("/api/inspections", headers={"Authorization": f"Bearer {keys.by_role[OPERATOR]}"}).status_code == 200
    )


def test_session_login_csrf_logout_and_audit(
    served: tuple[TestClient, Platform, Keys], defect_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    client, p, keys = served
    assert client.post("/api/session", json={"username": "operator", "password": "wrong-password"}).status_code == 401
    assert client.post("/api/session", json={"username": "nobody", "password": PASSWORD}).status_code == 401
    cross = client.post(
        "/api/session", json={"username": "operator", "password": PASSWORD}, headers={"Origin": "http://evil.example"}
    )
    assert cross.status_code == 403
    csrf = login(client, "operator")
    cookie = client.cookies.get("huoyan_session")
    assert cookie and len(cookie) > 30
    me = client.get("/api/me").json()
    assert me["username"] == "operator" and me["role"] == "operator" and me["csrf_token"] == csrf

    rec = upload(client, keys, png(defect_sample[0]), "D1.png")
    assert rec["verdict"] == "NG"
    review = {"outcome": "defect", "label": "hole"}
    assert client.post(f"/api/inspections/{rec['id']}/reviews", json=review).status_code == 403  # no CSRF token
    bad = client.post(f"/api/inspections/{rec['id']}/reviews", json=review, headers={"X-CSRF-Token": "x" * 43})
    assert bad.status_code == 403
    ok = client.post(f"/api/inspections/{rec['id']}/reviews", json=review, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201 and ok.json()["reviewer"] == "operator"

    assert client.delete("/api/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    client.cookies.set("huoyan_session", cookie)  # a stolen cookie after logout opens nothing
    assert client.get("/api/me").status_code == 401

    trail = p.audit.entries()
    seen = {(e["actor"], e["action"], e["outcome"]) for e in trail}
    assert {("operator", "login", "denied"), ("nobody", "login", "denied"), ("operator", "login", "ok")} <= seen
    assert ("operator", "csrf-check", "denied") in seen and ("operator", "review", "ok") in seen
    assert p.audit.verify().intact


def test_upload_records_filters_and_images(
    served: tuple[TestClient, Platform, Keys], line_dir: Path, defect_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    client, _, keys = served
    goods = good_images(line_dir)[:4]
    results = [upload(client, keys, png(img), f"G{i}.png", lot="L-7" if i < 2 else None) for i, img in enumerate(goods)]
    assert [r["verdict"] for r in results] == ["OK"] * 4
    assert [r["lot"] for r in results] == ["L-7", "L-7", None, None]
    assert results[0]["part_id"] == "G0" and results[0]["id"] is not None
    bad = upload(client, keys, png(defect_sample[0]), "D1.png")
    assert bad["verdict"] == "NG" and bad["regions"] and bad["normalised_score"] > 1
    heat = cv2.imdecode(np.frombuffer(base64.b64decode(bad["heatmap_png_base64"]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert heat.shape == (128, 128) and heat.max() > 128  # 128 marks the threshold
    broken = upload(client, keys, b"\x89PNG\r\n\x1a\nnot really", "X1.png")
    assert broken["verdict"] == "ERROR" and broken["error"]

    h = keys.headers(OPERATOR)
    page = client.get("/api/inspections", params={"limit": 2}, headers=h).json()
    assert page["total"] == 6 and len(page["items"]) == 2 and page["items"][0]["part_id"] == "X1"  # newest first
    older = client.get("/api/inspections", params={"limit": 2, "offset": 4}, headers=h).json()
    assert [r["part_id"] for r in older["items"]] == ["G1", "G0"]
    ng = client.get("/api/inspections", params={"verdict": "NG"}, headers=h).json()
    assert [r["part_id"] for r in ng["items"]] == ["D1"]
    assert client.get("/api/inspections", params={"part_id": "G2"}, headers=h).json()["total"] == 1
    assert [r["part_id"] for r in client.get("/api/inspections", params={"lot": "L-7"}, headers=h).json()["items"]] == [
        "G1",
        "G0",
    ]
    assert client.get("/api/inspections", params={"station": "elsewhere"}, headers=h).json()["total"] == 0
    assert client.get("/api/inspections", params={"recipe": "washer-top"}, headers=h).json()["total"] == 6
    future = client.get("/api/inspections", params={"since": "2999-01-01T00:00:00Z"}, headers=h).json()
    assert future["total"] == 0
    assert client.get("/api/inspections", params={"verdict": "MAYBE"}, headers=h).status_code == 422

    detail = client.get(f"/api/inspections/{bad['id']}", headers=h).json()
    assert detail["recipe_id"] == "washer-top" and detail["model_version"] == 1 and detail["threshold"] > 0
    image = client.get(f"/api/inspections/{bad['id']}/image", headers=h)
    assert image.status_code == 200 and image.content == png(defect_sample[0])
    overlay = client.get(f"/api/inspections/{bad['id']}/overlay", params={"max_side": 64}, headers=h)
    drawn = cv2.imdecode(np.frombuffer(overlay.content, np.uint8), cv2.IMREAD_COLOR)
    assert overlay.headers["content-type"] == "image/png" and drawn.shape == (64, 64, 3)
    assert client.get(f"/api/inspections/{bad['id']}/heatmap", headers=h).status_code == 200
    # Each piece of evidence is served with its media type, and only as part of its own record.
    image_ev, heat_ev = detail["evidence"]
    assert (image_ev["kind"], image_ev["media_type"], heat_ev["kind"]) == ("image", "image/png", "anomaly-map")
    got = client.get(f"/api/inspections/{bad['id']}/evidence/{heat_ev['sha256']}", headers=h)
    assert got.headers["content-type"] == "image/png"
    assert got.content == base64.b64decode(bad["heatmap_png_base64"])
    others = results[0]["evidence"][0]["sha256"]
    assert client.get(f"/api/inspections/{bad['id']}/evidence/{others}", headers=h).status_code == 404
    assert detail["rules"][0] == {
        "rule": "score above threshold",
        "met": True,
        "value": bad["score"],
        "limit": bad["threshold"],
    }
    assert client.get("/api/inspections/999999", headers=h).status_code == 404
    assert client.get(f"/api/inspections/{broken['id']}/heatmap", headers=h).status_code == 404

    nowhere = client.post("/api/stations/nowhere/inspect", files={"image": ("a.png", b"x")}, headers=h)
    assert nowhere.status_code == 404
    by_recipe = client.post(
        "/api/inspect", data={"recipe": "washer-top"}, files={"image": ("R7.png", png(goods[0]))}, headers=h
    )
    assert by_recipe.status_code == 200 and by_recipe.json()["part_id"] == "R7"
    unknown = client.post(
        "/api/inspect", data={"recipe": "gear"}, files={"image": ("R8.png", png(goods[0]))}, headers=h
    )
    assert unknown.status_code == 404
    status = client.get("/api/stations/cell-1", headers=h).json()
    assert status["counts"] == {"OK": 5, "NG": 1, "ERROR": 1} and status["running"] and status["model_version"] == 1


def test_review_queue_and_outcome_rules(
    served: tuple[TestClient, Platform, Keys], line_dir: Path, defect_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    client, p, keys = served
    h = keys.headers(OPERATOR)
    ok = upload(client, keys, png(good_images(line_dir)[0]), "G0.png")
    ng = upload(client, keys, png(defect_sample[0]), "D1.png")
    queue = client.get("/api/reviews/queue", headers=h).json()
    assert {r["id"] for r in queue["items"]} == {ok["id"], ng["id"]}  # keep_ok_every 1: every OK is sampled

    wrong = client.post(f"/api/inspections/{ng['id']}/reviews", json={"outcome": "good"}, headers=h)
    assert wrong.status_code == 409 and "NG part" in wrong.json()["detail"]
    assert client.post("/api/inspections/424242/reviews", json={"outcome": "good"}, headers=h).status_code == 404
    assert client.post(f"/api/inspections/{ng['id']}/reviews", json={"outcome": "meh"}, headers=h).status_code == 422
    r = client.post(f"/api/inspections/{ng['id']}/reviews", json={"outcome": "false_alarm", "note": "dust"}, headers=h)
    assert r.status_code == 201
    first_id = r.json()["id"]
    r = client.post(
        f"/api/inspections/{ok['id']}/reviews", json={"outcome": "missed_defect", "label": "scratch"}, headers=h
    )
    assert r.status_code == 201

    assert client.get("/api/reviews/queue", headers=h).json()["total"] == 0
    summary = client.get("/api/reviews/summary", headers=h).json()
    assert summary == {"defect": 0, "false_alarm": 1, "good": 0, "missed_defect": 1, "pending": 0}
    # A second opinion is kept beside the first; the latest counts.
    client.post(
        f"/api/inspections/{ng['id']}/reviews",
        json={"outcome": "defect", "label": "hole"},
        headers=keys.headers(ENGINEER),
    )
    detail = client.get(f"/api/inspections/{ng['id']}", headers=h).json()
    assert [x["outcome"] for x in detail["reviews"]] == ["false_alarm", "defect"]
    assert detail["review"]["reviewer"] == "engineer" and detail["review"]["label"] == "hole"
    listed = client.get("/api/inspections", params={"verdict": "OK"}, headers=h).json()["items"][0]
    assert listed["review"]["outcome"] == "missed_defect"
    # Confirming a defect, a reviewer names (or corrects) what a region is, by its position.
    n = len(detail["regions"])
    assert n >= 1
    beyond = {"outcome": "defect", "regions": [{"index": n, "label": "crack"}]}
    refused = client.post(f"/api/inspections/{ng['id']}/reviews", json=beyond, headers=h)
    assert refused.status_code == 409 and f"has {n} regions" in refused.json()["detail"]
    named = {"outcome": "defect", "regions": [{"index": 0, "label": "crack"}]}
    assert client.post(f"/api/inspections/{ng['id']}/reviews", json=named, headers=h).status_code == 201
    review = client.get(f"/api/inspections/{ng['id']}", headers=h).json()["review"]
    assert review["regions"] == [{"index": 0, "label": "crack"}]

    # Each review extends the station's review chain; its audit entry is the checkpoint.
    admin = keys.headers(Role.ADMIN)
    assert client.get("/api/audit/chains", headers=h).status_code == 403
    found = client.get("/api/audit/chains", headers=admin).json()
    assert found["intact"] and [(r["station_id"], r["records"]) for r in found["reviews"]] == [("cell-1", 4)]
    with Session(p.engine) as s, s.begin():
        s.execute(update(ReviewRow).where(ReviewRow.chain_pos == 1).values(outcome="defect"))
    found = client.get("/api/audit/chains", params={"station": "cell-1"}, headers=admin).json()
    assert not found["intact"] and found["audit"]["intact"] and found["records"][0]["intact"]
    assert found["reviews"][0]["problems"][0].startswith(f"review {first_id} of ")


def test_retrain_compare_activate_and_roll_back(
    served: tuple[TestClient, Platform, Keys], line_dir: Path, defect_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    client, p, keys = served
    h = keys.headers(ENGINEER)
    goods = [upload(client, keys, png(img), f"G{i}.png") for i, img in enumerate(good_images(line_dir)[:10])]
    ng = upload(client, keys, png(defect_sample[0]), "D1.png")
    client.post(f"/api/inspections/{ng['id']}/reviews", json={"outcome": "defect"}, headers=h)
    for g in goods[:3]:
        client.post(f"/api/inspections/{g['id']}/reviews", json={"outcome": "good"}, headers=h)
    client.post(f"/api/inspections/{goods[3]['id']}/reviews", json={"outcome": "missed_defect"}, headers=h)

    assert client.post("/api/training-jobs", json={"station_id": "nowhere"}, headers=h).status_code == 404
    job = client.post("/api/training-jobs", json={"station_id": "cell-1", "max_images": 50}, headers=h)
    assert job.status_code == 202 and job.json()["status"] == "queued"
    claimed = p.versions.claim(["cell-1"])
    assert claimed is not None and claimed["id"] == job.json()["id"]
    p.trainer.run(claimed)  # the worker's step, run here so the test waits for it
    done = client.get(f"/api/training-jobs/{claimed['id']}", headers=h).json()
    assert done["status"] == "done", done["message"]

    versions = {v["version"]: v for v in client.get("/api/models", params={"station": "cell-1"}, headers=h).json()}
    v1, v2 = versions[1], versions[2]
    assert v1["status"] == "active" and v2["status"] == "candidate" and v2["parent_id"] == v1["id"]
    # Lineage: trained on the kept OK images minus the one flagged as a missed defect.
    expected = {g["id"] for g in goods} - {goods[3]["id"]}
    assert set(v2["trained_on"]["inspection_ids"]) == expected and v2["trained_on"]["images"] == 9
    m = v2["metrics"]
    assert m["reviewed_parts"] == 5 and m["in_training_set"] == 3
    assert m["candidate"]["defects"] == 2 and m["active"]["good"] == 3 and m["active"]["n"] == 5
    assert v2["card"]["train_samples"] == 9 and v2["model_sha256"] != v1["model_sha256"]

    Path(v2["path"]).write_bytes(b"overwritten")  # a version is its content in the blob store, not this file
    operator = client.post(f"/api/models/{v2['id']}/activate", headers=keys.headers(OPERATOR))
    assert operator.status_code == 403
    act = client.post(f"/api/models/{v2['id']}/activate", headers=h)
    assert act.status_code == 200 and act.json()["status"] == "active"
    assert client.get("/api/stations/cell-1", headers=h).json()["model_version"] == 2
    after = upload(client, keys, png(good_images(line_dir)[11]), "G99.png")
    assert after["model_sha256"] == v2["model_sha256"]
    assert client.get(f"/api/inspections/{after['id']}", headers=h).json()["model_version"] == 2

    back = client.post("/api/stations/cell-1/rollback", headers=h)
    assert back.status_code == 200 and back.json()["model_version"] == 1
    again = upload(client, keys, png(good_images(line_dir)[12]), "G98.png")
    assert again["model_sha256"] == v1["model_sha256"]
    assert client.post("/api/stations/cell-1/rollback", headers=h).status_code == 409  # v1 has no parent
    statuses = {v["version"]: v["status"] for v in client.get("/api/models", headers=h).json()}
    assert statuses == {1: "active", 2: "retired"}
    actions = [(e["action"], e["outcome"]) for e in p.audit.entries(actor="engineer")]
    assert ("model-activate", "ok") in actions and ("model-rollback", "ok") in actions


def test_training_refuses_too_few_images(served: tuple[TestClient, Platform, Keys], line_dir: Path) -> None:
    client, p, keys = served
    upload(client, keys, png(good_images(line_dir)[0]), "G0.png")
    client.post("/api/training-jobs", json={"station_id": "cell-1"}, headers=keys.headers(ENGINEER))
    job = p.versions.claim(["cell-1"])
    assert job is not None
    p.trainer.run(job)
    failed = p.versions.job(job["id"])
    assert failed is not None and failed["status"] == "failed" and "at least 8" in failed["message"]


def test_users_and_api_keys_by_admin(served: tuple[TestClient, Platform, Keys]) -> None:
    client, p, keys = served
    h = keys.headers(ADMIN)
    made = client.post(
        "/api/users", json={"username": "li.wei", "password": "long-enough-1", "role": "operator"}, headers=h
    )
    assert made.status_code == 201
    dup = client.post(
        "/api/users", json={"username": "li.wei", "password": "long-enough-1", "role": "operator"}, headers=h
    )
    assert dup.status_code == 409
    short = client.post("/api/users", json={"username": "x", "password": "short", "role": "operator"}, headers=h)
    assert short.status_code == 422
    assert client.post("/api/session", json={"username": "li.wei", "password": "long-enough-1"}).status_code == 200
    client.cookies.clear()
    key = client.post("/api/api-keys", json={"username": "li.wei", "name": "gateway"}, headers=h).json()
    assert client.get("/api/me", headers={"X-API-Key": key["key"]}).json()["username"] == "li.wei"
    assert client.patch("/api/users/li.wei", json={"active": False}, headers=h).status_code == 200
    assert client.get("/api/me", headers={"X-API-Key": key["key"]}).status_code == 401  # disabled user: key dead too
    assert client.post("/api/session", json={"username": "li.wei", "password": "long-enough-1"}).status_code == 401
    client.patch("/api/users/li.wei", json={"active": True}, headers=h)
    assert client.delete(f"/api/api-keys/{key['id']}", headers=h).status_code == 204
    assert client.get("/api/me", headers={"X-API-Key": key["key"]}).status_code == 401
    assert client.patch("/api/users/admin", json={"role": "operator"}, headers=h).status_code == 409  # no self-demotion
    own = next(k for k in p.accounts.api_keys() if k["username"] == "admin")
    assert client.delete(f"/api/api-keys/{own['id']}", headers=h).status_code == 409
    assert client.patch("/api/users/ghost", json={"active": False}, headers=h).status_code == 404
    check = client.get("/api/audit/verify", headers=h).json()
    assert check["intact"] and check["first_bad_id"] is None and check["problem"] is None


def test_user_names_in_any_script_and_one_spelling(served: tuple[TestClient, Platform, Keys]) -> None:
    """A plant's people are 李 工 and Müller (#18). The same name typed as composed or
    decomposed Unicode is one user; what a name may not hold is said in words."""
    import unicodedata

    client, _, keys = served
    h = keys.headers(ADMIN)
    for name in ("李 工", "Jürgen Müller"):
        body = {"username": name, "password": "long-enough-1", "role": "operator"}
        assert client.post("/api/users", json=body, headers=h).status_code == 201, name
    decomposed = unicodedata.normalize("NFD", "Jürgen Müller")
    assert decomposed != "Jürgen Müller"
    again = client.post(
        "/api/users", json={"username": decomposed, "password": "long-enough-1", "role": "operator"}, headers=h
    )
    assert again.status_code == 409  # already there, in its composed spelling
    login = client.post("/api/session", json={"username": decomposed, "password": "long-enough-1"})
    assert login.status_code == 200 and client.get("/api/me").json()["username"] == "Jürgen Müller"
    client.cookies.clear()
    assert client.post("/api/session", json={"username": "李 工", "password": "long-enough-1"}).status_code == 200
    client.cookies.clear()
    for bad in ("bad/name", " lead", "two  spaces", "tab\there"):
        refused = client.post("/api/users", json={"username": bad, "password": "long-enough-1", "role": "operator"},
                              headers=h)  # fmt: skip
        assert refused.status_code == 422, bad
        assert "letters or digits (any script)" in refused.json()["detail"][0]["msg"]


def test_metrics_count_parts(
    served: tuple[TestClient, Platform, Keys], line_dir: Path, defect_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    client, _, keys = served
    three_good_one_ng(client, keys, line_dir, defect_sample)
    assert client.get("/metrics").status_code == 401
    text = client.get("/metrics", headers=keys.headers(OPERATOR)).text
    assert 'huoyan_parts_total{station="cell-1",verdict="OK"} 3.0' in text
    assert 'huoyan_parts_total{station="cell-1",verdict="NG"} 1.0' in text
    assert 'huoyan_inspection_latency_seconds_count{station="cell-1"} 4.0' in text
    assert 'huoyan_ng_rate{station="cell-1"} 0.25' in text and 'huoyan_station_up{station="cell-1"} 1.0' in text


def test_audit_chain_detects_an_edited_entry(served: tuple[TestClient, Platform, Keys]) -> None:
    _, p, _ = served
    for i in range(4):
        p.audit.add("someone", "thing", str(i))
    assert p.audit.verify().intact
    third = p.audit.entries()[1]["id"]
    with Session(p.engine) as s, s.begin():
        s.execute(update(AuditRow).where(AuditRow.id == third).values(actor="someone-else"))
    check = p.audit.verify()
    assert not check.intact and check.first_bad_id == third


def test_sample_upload_of_a_drawn_defect(
    served: tuple[TestClient, Platform, Keys],
) -> None:
    client, _, keys = served
    image, mask = make_sample("washer", "scratch", 128, np.random.default_rng(5))
    rec = upload(client, keys, png(image), "S1.png")
    assert rec["verdict"] == "NG"
    ys, xs = np.nonzero(mask)
    box = rec["regions"][0]
    # the region found overlaps the drawn scratch
    assert box["x"] <= xs.max() and box["x"] + box["width"] >= xs.min()
    assert box["y"] <= ys.max() and box["y"] + box["height"] >= ys.min()


def test_database_outage_answers_503_and_uploads_still_work(
    postgres_server: Any, model_file: Path, tmp_path: Path, line_dir: Path
) -> None:
    recipe = write_recipe(tmp_path, "cell-1", model_file, "http")
    app, _, keys = make_platform_app(postgres_server.new_database(), tmp_path, [recipe])
    h = keys.headers(OPERATOR)
    with TestClient(app) as client:
        assert upload(client, keys, png(good_images(line_dir)[0]), "G0.png")["id"] is not None
        postgres_server.stop()
        try:
            down = client.get("/api/inspections", headers=h)
            assert down.status_code == 503 and "database" in down.json()["detail"]
            ready = client.get("/api/health/ready")
            assert ready.status_code == 503 and ready.json()["database"] is False
            assert client.get("/api/health").status_code == 200
            # The line goes on: a key seen before still uploads; the part is judged and spooled.
            spooled = upload(client, keys, png(good_images(line_dir)[1]), "G1.png")
            assert spooled["verdict"] == "OK" and spooled["id"] is None and spooled["part_id"] == "G1"
            login = client.post("/api/session", json={"username": "operator", "password": PASSWORD})
            assert login.status_code == 503
        finally:
            postgres_server.start()
        status = client.get("/api/stations/cell-1", headers=h)
        assert status.status_code == 200 and status.json()["running"]
        # The spooled record reaches the database once it is back, and the outage is on record.
        deadline = time.monotonic() + 30
        while client.get("/api/inspections", params={"part_id": "G1"}, headers=h).json()["total"] != 1:
            assert time.monotonic() < deadline, "spooled record never stored"
            time.sleep(0.5)
        events = client.get("/api/events", params={"station": "cell-1"}, headers=h).json()
        outage = [(e["severity"], e["active"]) for e in events if e["kind"] == "database-unavailable"]
        assert outage == [("info", False), ("alarm", True)]  # newest first: cleared after raised
        assert client.get("/api/events", params={"severity": "alarm"}, headers=h).json()[0]["kind"] == (
            "database-unavailable"
        )


def test_engineer_sets_threshold_kept_across_restart_and_cleared_by_activation(
    db_url: str, model_file: Path, tmp_path: Path, line_dir: Path
) -> None:
    recipe = write_recipe(tmp_path, "cell-1", model_file, "http")
    app, _, keys = make_platform_app(db_url, tmp_path, [recipe])
    e = keys.headers(ENGINEER)
    good = png(good_images(line_dir)[0])
    with TestClient(app) as client:
        calibrated = client.get("/api/stations/cell-1", headers=e).json()["threshold"]
        assert (
            client.put(
                "/api/stations/cell-1/threshold", json={"threshold": 1e-3}, headers=keys.headers(OPERATOR)
            ).status_code
            == 403
        )
        assert client.put("/api/stations/cell-1/threshold", json={"threshold": -1}, headers=e).status_code == 422
        status = client.put("/api/stations/cell-1/threshold", json={"threshold": 1e-3}, headers=e).json()
        assert (
            status["threshold"] == 1e-3 and status["threshold_set"] and status["recipe_version"] == "1+threshold=0.001"
        )
        strict = upload(client, keys, good, "T1.png")
        assert (
            strict["verdict"] == "NG"
            and strict["threshold"] == 1e-3
            and strict["recipe_version"] == "1+threshold=0.001"
        )
    # A restart keeps it: the same recipe version and model are running.
    app2, p2 = make_platform_app_again(db_url, tmp_path, [recipe])
    with TestClient(app2) as client:
        status = client.get("/api/stations/cell-1", headers=e).json()
        assert status["threshold"] == 1e-3 and status["threshold_set"]
        status = client.put("/api/stations/cell-1/threshold", json={"threshold": None}, headers=e).json()
        assert status["threshold"] == calibrated and not status["threshold_set"] and status["recipe_version"] == "1"
        assert upload(client, keys, good, "T2.png")["verdict"] == "OK"
        client.put("/api/stations/cell-1/threshold", json={"threshold": 1e-3}, headers=e)
        v1 = client.get("/api/models", headers=e).json()[0]
        assert client.post(f"/api/models/{v1['id']}/activate", headers=e).status_code == 200
        status = client.get("/api/stations/cell-1", headers=e).json()
        assert status["threshold"] == calibrated and not status["threshold_set"]  # raw scores belong to a model
    trail = [(x["action"], x["detail"].get("after")) for x in p2.audit.entries(actor="engineer")]
    assert ("threshold-set", calibrated) in trail and ("threshold-set", 1e-3) in trail


def test_password_guessing_is_throttled(served: tuple[TestClient, Platform, Keys]) -> None:
    client, p, _ = served
    for _ in range(4):  # three free guesses, then each one costs a growing wait
        assert client.post("/api/session", json={"username": "engineer", "password": "guess-123"}).status_code == 401
    blocked = client.post("/api/session", json={"username": "engineer", "password": PASSWORD})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert client.post("/api/session", json={"username": "operator", "password": PASSWORD}).status_code == 200
    throttled = [e for e in p.audit.entries(actor="engineer") if e["outcome"] == "throttled"]
    assert len(throttled) == 1


def test_openapi_document_needs_login_and_no_public_docs(served: tuple[TestClient, Platform, Keys]) -> None:
    client, _, keys = served
    assert client.get("/api/openapi.json").status_code == 401
    doc = client.get("/api/openapi.json", headers=keys.headers(OPERATOR)).json()
    assert "/api/inspections" in doc["paths"] and "/api/stations/{station_id}/inspect" in doc["paths"]
    assert {"X-API-Key", "huoyan_session"} <= {s.get("name") for s in doc["components"]["securitySchemes"].values()}
    for public in ("/openapi.json", "/docs", "/redoc"):
        assert client.get(public).status_code == 404


def test_a_station_whose_active_model_is_gone_runs_and_reports_the_recipes_model(
    db_url: str, model_file: Path, tmp_path: Path
) -> None:
    recipe = write_recipe(tmp_path, "cell-1", model_file, "http")
    app, p, keys = make_platform_app(db_url, tmp_path, [recipe])
    with TestClient(app):
        v1 = p.versions.active("cell-1")
        assert v1 is not None
        lost = p.versions.add("cell-1", "f" * 64, "lost.safetensors", v1["card"], str(tmp_path / "lost"), "engineer")
        p.versions.mark_active(lost["id"])  # its file is in neither the blob store nor at its path
    app2, _ = make_platform_app_again(db_url, tmp_path, [recipe])
    with TestClient(app2) as client:
        status = client.get("/api/stations/cell-1", headers=keys.headers(ENGINEER)).json()
    assert status["running"] and status["model_sha256"] == v1["model_sha256"] and status["model_version"] == 1


def test_a_hosted_station_checkpoints_its_record_chain_in_the_servers_audit_trail(
    served: tuple[TestClient, Platform, Keys], line_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huoyan.store import chain

    monkeypatch.setattr(chain, "CHECKPOINT_EVERY", 2)
    client, p, keys = served
    for i, path in enumerate(list_images(line_dir / "train" / "good")[:5]):
        assert upload(client, keys, path.read_bytes(), f"part-{i}.png")["verdict"]
    marks = [(d["pos"], d["sha256"]) for d in p.audit.details(chain.CHECKPOINT_ACTION, "cell-1")]
    assert [pos for pos, _ in marks] == [2, 4]
    assert p.audit.verify().intact  # written under the server's key: the trail still verifies
    assert chain.verify_station(p.engine, "cell-1", marks).intact


def test_records_sort_by_score_or_time_and_total_per_verdict(
    served: tuple[TestClient, Platform, Keys], line_dir: Path, defect_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    client, _, keys = served
    h = keys.headers(OPERATOR)
    three_good_one_ng(client, keys, line_dir, defect_sample)
    page = client.get("/api/inspections", params={"sort": "-score"}, headers=h).json()
    scores = [r["score"] for r in page["items"]]
    assert scores == sorted(scores, reverse=True) and page["items"][0]["part_id"] == "D1"
    assert page["counts"] == {"OK": 3, "NG": 1, "ERROR": 0} and page["total"] == 4
    oldest = client.get("/api/inspections", params={"sort": "time", "limit": 1}, headers=h).json()
    assert oldest["items"][0]["part_id"] == "G0" and oldest["total"] == 4  # totals of all, not of the page
    only_ng = client.get("/api/inspections", params={"verdict": "NG"}, headers=h).json()
    assert only_ng["counts"] == {"OK": 0, "NG": 1, "ERROR": 0}
    assert client.get("/api/inspections", params={"sort": "size"}, headers=h).status_code == 422


def test_a_threshold_preview_counts_the_recent_parts_that_would_change_verdict(
    served: tuple[TestClient, Platform, Keys], line_dir: Path, defect_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    client, _, keys = served
    ng = three_good_one_ng(client, keys, line_dir, defect_sample)
    url = "/api/stations/cell-1/threshold/preview"
    assert client.get(url, params={"threshold": 1.0}, headers=keys.headers(OPERATOR)).status_code == 403
    h = keys.headers(ENGINEER)
    low = client.get(url, params={"threshold": 1e-6}, headers=h).json()
    assert (low["parts"], low["ng_now"], low["ng_then"], low["ok_to_ng"], low["ng_to_ok"]) == (4, 1, 4, 3, 0)
    high = client.get(url, params={"threshold": ng["score"] * 2}, headers=h).json()
    assert (high["ng_then"], high["ok_to_ng"], high["ng_to_ok"]) == (0, 0, 1)
    assert client.get(url, params={"threshold": 0}, headers=h).status_code == 422
    only_two = client.get(url, params={"threshold": 1e-6, "parts": 2}, headers=h).json()
    assert only_two["parts"] == 2


def test_a_products_defect_types_are_what_reviews_name_and_many_parts_are_reviewed_at_once(
    served: tuple[TestClient, Platform, Keys], line_dir: Path, defect_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    client, p, keys = served
    ngs = [upload(client, keys, png(defect_sample[0]), f"D{i}.png") for i in range(3)]
    ok = upload(client, keys, png(good_images(line_dir)[0]), "G0.png")
    h, engineer = keys.headers(OPERATOR), keys.headers(ENGINEER)
    url = "/api/products/washer/defect-types"
    assert client.put(url, json={"types": ["burr"]}, headers=h).status_code == 403  # engineers keep the list
    kept = client.put(url, json={"types": ["burr", " Burr ", "dent", "", "划痕"]}, headers=engineer)
    assert kept.status_code == 422  # an empty name
    kept = client.put(url, json={"types": ["burr", " Burr ", "dent", "划痕"]}, headers=engineer).json()
    assert kept == {"product": "washer", "types": ["burr", "dent", "划痕"]}  # trimmed, one spelling each
    assert client.get("/api/stations/cell-1/defect-types", headers=h).json()["types"] == ["burr", "dent", "划痕"]
    assert client.get("/api/stations/nowhere/defect-types", headers=h).status_code == 404

    typo = client.post(
        f"/api/inspections/{ngs[0]['id']}/reviews", json={"outcome": "defect", "label": "bur"}, headers=h
    )
    assert typo.status_code == 409 and "'bur' is not a defect type of washer" in typo.json()["detail"]
    bulk = client.post(
        "/api/reviews/bulk",
        json={"inspection_ids": [ngs[1]["id"], ngs[2]["id"], ok["id"], 999999, ngs[1]["id"]], "outcome": "defect",
              "label": "划痕"},
        headers=h,
    ).json()  # fmt: skip
    assert bulk["reviewed"] == [ngs[1]["id"], ngs[2]["id"]]  # each once
    assert [r["inspection_id"] for r in bulk["refused"]] == [ok["id"], 999999]
    assert "OK part can be reviewed as" in bulk["refused"][0]["reason"]
    for ng in ngs[1:]:
        assert client.get(f"/api/inspections/{ng['id']}", headers=h).json()["review"]["label"] == "划痕"
    # Each review of the batch is its own link of the review chain, audited as its checkpoint.
    assert [e["action"] for e in p.audit.entries(limit=10)].count("review") == 2
    cleared = client.put(url, json={"types": []}, headers=engineer).json()
    assert cleared["types"] == []
    free = client.post(
        f"/api/inspections/{ngs[0]['id']}/reviews", json={"outcome": "defect", "label": "bur"}, headers=h
    )
    assert free.status_code == 201  # without a list, any type again


def test_a_user_has_a_display_name_in_any_script_shown_in_the_header(
    served: tuple[TestClient, Platform, Keys],
) -> None:
    client, p, keys = served
    admin = keys.headers(ADMIN)
    named = client.patch("/api/users/operator", json={"display_name": "  王  师傅 "}, headers=admin)
    assert named.status_code == 200 and named.json()["display_name"] == "王 师傅"
    assert client.patch("/api/users/operator", json={"display_name": "x\u0007"}, headers=admin).status_code == 422
    assert client.patch("/api/users/operator", json={"display_name": "y" * 101}, headers=admin).status_code == 422
    login(client, "operator")
    assert '<span id="who" title="operator">王 师傅</span>' in client.get("/stations").text
    cleared = client.patch("/api/users/operator", json={"display_name": ""}, headers=admin).json()
    assert cleared["display_name"] is None
    assert p.audit.entries(limit=1)[0]["detail"]["display_name"] == ""


def test_an_engineer_pauses_and_resumes_a_hosted_station_with_a_reason(
    served: tuple[TestClient, Platform, Keys],
) -> None:
    client, p, keys = served
    assert client.post("/api/stations/cell-1/pause", headers=keys.headers(OPERATOR)).status_code == 403
    paused = client.post("/api/stations/cell-1/pause", json={"reason": "lens cleaning"}, headers=keys.headers(ENGINEER))
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert client.get("/api/stations/cell-1", headers=keys.headers(OPERATOR)).json()["paused"] is True
    resumed = client.post("/api/stations/cell-1/resume", headers=keys.headers(ENGINEER))
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    actions = [(e["action"], e["detail"].get("reason")) for e in p.audit.entries(actor="engineer")]
    assert ("station-pause", "lens cleaning") in actions and ("station-resume", None) in actions
    assert client.post("/api/stations/nowhere/pause", headers=keys.headers(ENGINEER)).status_code == 404


def test_a_recipe_outside_the_hosted_stations_table_is_refused_and_audited(
    served: tuple[TestClient, Platform, Keys],
) -> None:
    client, p, keys = served
    body = {"recipe": "washer-bottom", "reason": "lot change"}
    assert client.put("/api/stations/cell-1/recipe", json=body, headers=keys.headers(OPERATOR)).status_code == 403
    refused = client.put("/api/stations/cell-1/recipe", json=body, headers=keys.headers(ENGINEER))
    assert refused.status_code == 409 and "no recipe 'washer-bottom'" in refused.json()["detail"]
    assert client.get("/api/stations/cell-1", headers=keys.headers(OPERATOR)).json()["recipe_id"] == "washer-top"
    entry = p.audit.entries(actor="engineer")[0]
    assert (entry["action"], entry["outcome"], entry["detail"]["to"]) == ("recipe-switch", "failed", "washer-bottom")
