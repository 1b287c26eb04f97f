"""Packages imported from the dashboard: verified exactly as the CLI verifies them, refused
with the reason (and audited) when they do not verify, and a carried model made a
candidate version of a hosted station that can be activated."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from huoyan.server.platform import Platform
from huoyan.share.keys import Role, TrustStore, new_keypair
from huoyan.store.accounts import Role as UserRole
from serverkit import Keys
from test_share_packages import _add, make

ENGINEER = UserRole.ENGINEER


def tar_of(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(folder, arcname=folder.name)
    return buf.getvalue()


def zip_of(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(folder.parent).as_posix())
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def post(client: TestClient, keys: Keys, body: bytes, station: str | None = None, role: UserRole = ENGINEER) -> object:
    params = {"station": station} if station else {}
    headers = {**keys.headers(role), "Content-Type": "application/x-tar"}
    return client.post("/api/packages", content=body, params=params, headers=headers)


def test_an_engineer_imports_a_signed_package_and_activates_its_model(
    served: tuple[TestClient, Platform, Keys], model_file: Path, tmp_path: Path
) -> None:
    client, p, keys = served
    key, public = new_keypair("plant-a", tmp_path / "keys", b"correct horse battery staple")
    trust = TrustStore()
    trust.trust("plant-a", public.read_bytes(), [Role.PUBLISH_MODELS])
    trust.save(p.settings.data_dir / "trust.json")
    # Plant A froze the station's score chart; the limits travel with the model.
    from huoyan.quality.charts import Limits
    from huoyan.share.limits import FILE, limits_file
    from huoyan.store.quality import freeze_limits

    freeze_limits(p.engine, "cell-1", "score", Limits("imr", {"mean": 0.4, "mr_bar": 0.05}, 60), "qe-a")
    pkg = make(tmp_path, key, model_file, version=2, extras={FILE: limits_file(p.engine, "cell-1")})

    assert post(client, keys, tar_of(pkg), role=UserRole.OPERATOR).status_code == 403
    assert post(client, keys, tar_of(pkg), station="nowhere").status_code == 404
    done = post(client, keys, tar_of(pkg), station="cell-1")
    assert done.status_code == 201, done.text
    out = done.json()
    assert out["package"]["name"] == "washer-top" and out["package"]["version"] == 2 and out["package"]["files"] == 3
    assert out["control_limits"] == [{"metric": "score", "chart": "imr", "version": 2}]
    limits = client.get(
        "/api/quality/limits", params={"station": "cell-1", "metric": "score", "chart": "imr"},
        headers=keys.headers(ENGINEER),
    ).json()  # fmt: skip
    assert limits[0]["version"] == 2 and limits[0]["params"] == {"mean": 0.4, "mr_bar": 0.05}
    candidate = out["model_version"]
    assert candidate["status"] == "candidate" and candidate["trained_on"]["publisher"] == "plant-a"
    listed = client.get("/api/packages", headers=keys.headers(ENGINEER)).json()
    assert [(k["publisher"], k["name"], k["version"]) for k in listed] == [("plant-a", "washer-top", 2)]
    active = client.post(f"/api/models/{candidate['id']}/activate", json={"reason": "proven at plant A"},
                         headers=keys.headers(ENGINEER))  # fmt: skip
    assert active.status_code == 200 and active.json()["status"] == "active"

    # Each refusal says why, installs nothing and is audited.
    older = make(tmp_path, key, model_file, version=1, name="old")
    tampered = make(tmp_path, key, model_file, version=3, name="tampered")
    _add(tampered)
    cases = [
        (tar_of(older), "not newer than version 2"),
        (zip_of(tampered), "does not verify"),
        (zip_of(make(tmp_path, key, model_file, version=4, name="escape"), {"../evil.txt": b"x"}), "outside"),
        (b"not an archive at all", "not a tar or zip archive"),
        (zip_of(tmp_path / "keys"), "holds no package"),
    ]
    for body, reason in cases:
        refused = post(client, keys, body)
        assert refused.status_code == 422 and reason in refused.json()["detail"], refused.text
    zh = {**keys.headers(ENGINEER), "Content-Type": "application/x-tar", "Accept-Language": "zh-CN"}
    chinese = client.post("/api/packages", content=tar_of(older), headers=zh)
    assert chinese.json()["detail"] == "已拒绝：plant-a/washer-top 的版本 1 不比已安装的版本 2 新"
    assert [(k["name"], k["version"]) for k in client.get("/api/packages", headers=keys.headers(ENGINEER)).json()] == [
        ("washer-top", 2)
    ]
    actions = [(e["action"], e["outcome"]) for e in p.audit.entries(limit=50)]
    assert actions.count(("package-refused", "refused")) == len(cases) + 1
    assert ("package-imported", "ok") in actions and ("model-version-add", "ok") in actions
    assert not list((p.settings.data_dir / "incoming").iterdir())  # uploads do not pile up


@pytest.mark.parametrize("sealed_for_us", [True, False])
def test_a_sealed_package_opens_with_the_servers_box_key_only(
    served: tuple[TestClient, Platform, Keys], model_file: Path, tmp_path: Path, sealed_for_us: bool
) -> None:
    from huoyan.share.package import export_package

    client, p, keys = served
    key, public = new_keypair("plant-a", tmp_path / "a", None)
    new_keypair("plant-b", tmp_path / "b", None)
    new_keypair("plant-c", tmp_path / "c", None)
    at_a = TrustStore()
    receiver = "plant-b" if sealed_for_us else "plant-c"
    at_a.trust(receiver, (tmp_path / receiver[-1] / f"{receiver}.pub").read_bytes(), [Role.RECEIVE_DATA],
               (tmp_path / receiver[-1] / f"{receiver}.box.pub").read_bytes())  # fmt: skip
    at_b = TrustStore()
    at_b.trust("plant-a", public.read_bytes(), [Role.PUBLISH_MODELS])
    at_b.save(p.settings.data_dir / "trust.json")
    p.settings.box_key = tmp_path / "b" / "plant-b.box.key"  # as `huoyan serve --box-key` sets it
    sealed = tmp_path / "sealed"
    export_package(sealed, name="washer-top", version=1, publisher="plant-a", private_key=key, passphrase=None,
                   model=model_file, recipe=None, exported_by="e", seal_for=at_a.named(receiver))  # fmt: skip
    r = post(client, keys, tar_of(sealed))
    if sealed_for_us:
        assert r.status_code == 201 and r.json()["model_version"] is None, r.text
    else:
        assert r.status_code == 422 and "sealed for plant-c, not for this plant's key" in r.json()["detail"]
