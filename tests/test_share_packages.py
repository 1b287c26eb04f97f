"""Signed packages between plants: a tamper suite, each case refused with its reason, and the
OpenSSF model_signing tool verifying a Huoyan-signed package on its own."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from huoyan.cli import main
from huoyan.share.keys import Role, TrustStore, new_keypair
from huoyan.share.package import CONTENT, MANIFEST, SIGNATURE, PackageRefused, export_package, import_package

PASS_ENV = "HUOYAN_TEST_KEY_PASSPHRASE"


@pytest.fixture
def plant_a(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv(PASS_ENV, "correct horse battery staple")
    return new_keypair("plant-a", tmp_path / "keys", b"correct horse battery staple")


def make(
    tmp: Path,
    key: Path,
    model: Path,
    version: int = 1,
    valid_days: int = 365,
    name: str = "pkg",
    extras: dict[str, bytes] | None = None,
) -> Path:
    recipe = tmp / "washer-top.yaml"
    recipe.write_text("station: st-1\nrecipe: washer-top\n")
    out = tmp / f"{name}-v{version}"
    export_package(
        out,
        name="washer-top",
        version=version,
        publisher="plant-a",
        private_key=key,
        passphrase=b"correct horse battery staple",
        model=model,
        recipe=recipe,
        exported_by="engineer@plant-a",
        valid_days=valid_days,
        extras=extras,
    )
    return out


def trusted(public: Path, roles: list[Role] | None = None) -> TrustStore:
    store = TrustStore()
    store.trust("plant-a", public.read_bytes(), roles or [Role.PUBLISH_MODELS])
    return store


def test_a_signed_package_installs_once_and_an_older_or_same_version_is_a_replay(
    model_file: Path, tmp_path: Path, plant_a: tuple[Path, Path]
) -> None:
    key, public = plant_a
    into = tmp_path / "plant-b"
    v2 = make(tmp_path, key, model_file, version=2)
    target = import_package(v2, trusted(public), into)
    assert (target / "model" / model_file.name).read_bytes() == model_file.read_bytes()
    manifest = json.loads((target / MANIFEST).read_text())
    assert manifest["version"] == 2 and manifest["publisher"] == "plant-a"
    assert manifest["lineage"]["kind"] == "patchcore" and len(manifest["lineage"]["train_content_sha256"]) == 64
    assert manifest["software"].startswith("huoyan ")
    for replay in (v2, make(tmp_path, key, model_file, version=1)):
        with pytest.raises(PackageRefused, match="not newer than version 2"):
            import_package(replay, trusted(public), into)


def _byte(pkg: Path) -> None:
    _flip(next((pkg / CONTENT / "model").iterdir()))


def _rename(pkg: Path) -> None:
    recipe = next((pkg / CONTENT / "recipe").iterdir())
    recipe.rename(recipe.with_name("washer-bottom.yaml"))


def _add(pkg: Path) -> None:
    (pkg / CONTENT / "recipe" / "extra.yaml").write_text("threshold: 0\n")


def _remove(pkg: Path) -> None:
    next((pkg / CONTENT / "recipe").iterdir()).unlink()


def _manifest(pkg: Path) -> None:
    path = pkg / CONTENT / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["version"] = 99
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (_byte, "does not verify"),
        (_rename, "does not verify"),
        (_add, "does not verify"),
        (_remove, "does not verify"),
        (_manifest, "does not verify"),
    ],
    ids=["byte-changed", "file-renamed", "file-added", "file-removed", "manifest-edited"],
)
def test_a_tampered_package_is_refused_and_installs_nothing(
    model_file: Path, tmp_path: Path, plant_a: tuple[Path, Path], tamper: Callable[[Path], None], reason: str
) -> None:
    key, public = plant_a
    pkg = make(tmp_path, key, model_file)
    tamper(pkg)
    into = tmp_path / "plant-b"
    with pytest.raises(PackageRefused, match=reason):
        import_package(pkg, trusted(public), into)
    assert not into.exists()


def test_expired_unknown_signer_and_signer_without_the_publishing_role_are_refused(
    model_file: Path, tmp_path: Path, plant_a: tuple[Path, Path]
) -> None:
    key, public = plant_a
    pkg = make(tmp_path, key, model_file, valid_days=1)
    later = datetime.now(UTC) + timedelta(days=2)
    with pytest.raises(PackageRefused, match="expired on"):
        import_package(pkg, trusted(public), tmp_path / "b", now=later)
    _, stranger = new_keypair("stranger", tmp_path / "other", None)
    with pytest.raises(PackageRefused, match="unknown signer"):
        import_package(pkg, trusted(stranger), tmp_path / "b")
    with pytest.raises(PackageRefused, match="may not publish models"):
        import_package(pkg, trusted(public, [Role.RECEIVE_DATA]), tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_the_model_signing_tool_verifies_a_huoyan_signed_package(
    model_file: Path, tmp_path: Path, plant_a: tuple[Path, Path]
) -> None:
    key, public = plant_a
    pkg = make(tmp_path, key, model_file)
    tool = Path(sys.executable).with_name("model_signing")
    verify = [str(tool), "verify", "key", "--signature", str(pkg / SIGNATURE), "--public_key", str(public)]
    ok = subprocess.run([*verify, str(pkg / CONTENT)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    _byte(pkg)
    bad = subprocess.run([*verify, str(pkg / CONTENT)], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0


def test_cli_keys_trust_export_import_and_refusal_in_the_audit_trail(
    model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PASS_ENV, "s3cret passphrase")
    data = tmp_path / "data"
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    common = ["--db", db, "--data-dir", str(data)]
    assert main(["keys", "new", "plant-a", "--dir", str(tmp_path / "keys"), "--passphrase-env", PASS_ENV]) == 0
    with pytest.raises(SystemExit, match="exist already"):
        main(["keys", "new", "plant-a", "--dir", str(tmp_path / "keys"), "--passphrase-env", PASS_ENV])
    pub = tmp_path / "keys" / "plant-a.pub"
    roles = ["--role", "publish-models", "--role", "receive-data"]
    assert main(["keys", "trust", "plant-a", str(pub), "--role", "publish-models", *common]) == 0
    assert "plant-a" in capsys.readouterr().out
    recipe = tmp_path / "washer-top.yaml"
    recipe.write_text("station: st-1\n")
    pkg = tmp_path / "pkg"

    def export(out: Path, version: int) -> list[str]:
        return ["pkg", "export", str(out), "--name", "washer-top", "--version", str(version), "--publisher", "plant-a"]

    key = ["--key", str(tmp_path / "keys" / "plant-a.key"), "--passphrase-env", PASS_ENV]
    with pytest.raises(SystemExit, match="station st-1 has no frozen control limits to carry"):
        main([*export(pkg, 3), *key, "--model", str(model_file), "--spc-of", "st-1", *common])
    assert not pkg.exists()
    assert main([*export(pkg, 3), *key, "--model", str(model_file), "--recipe-file", str(recipe), *common]) == 0
    tampered = tmp_path / "tampered"
    shutil.copytree(pkg, tampered)
    _add(tampered)
    assert main(["pkg", "import", str(pkg), "--into", str(tmp_path / "installed"), *common]) == 0
    # Sealed for a receiver: plant A trusts its own box key to receive (a second site of its own).
    box_pub = tmp_path / "keys" / "plant-a.box.pub"
    assert main(["keys", "trust", "plant-a", str(pub), "--box-key", str(box_pub), *roles, *common]) == 0
    sealed = tmp_path / "sealed"
    assert main([*export(sealed, 4), *key, "--model", str(model_file), "--for", "plant-a", *common]) == 0
    box = ["--box-key", str(tmp_path / "keys" / "plant-a.box.key"), "--passphrase-env", PASS_ENV]
    with pytest.raises(SystemExit, match="give this plant's box key"):
        main(["pkg", "import", str(sealed), "--into", str(tmp_path / "installed"), *common])
    assert main(["pkg", "import", str(sealed), "--into", str(tmp_path / "installed"), *box, *common]) == 0
    assert (tmp_path / "installed" / "plant-a" / "washer-top" / "4" / "model" / model_file.name).is_file()
    with pytest.raises(SystemExit) as refused:
        main(["pkg", "import", str(tampered), "--into", str(tmp_path / "installed"), *common])
    assert "does not verify" in str(refused.value)
    assert main(["audit", "verify", *common]) == 0
    from huoyan.store.audit import AuditLog, audit_key
    from huoyan.store.database import make_engine

    entries = AuditLog(make_engine(db), audit_key(data)).entries()
    actions = [(e["action"], e["outcome"]) for e in entries]
    assert ("key-trusted", "ok") in actions and ("package-exported", "ok") in actions
    assert ("package-imported", "ok") in actions and ("package-refused", "refused") in actions


def test_a_package_sealed_for_plant_b_opens_only_with_plant_bs_box_key(
    model_file: Path, tmp_path: Path, plant_a: tuple[Path, Path]
) -> None:
    from huoyan.share.keys import box_private
    from huoyan.share.package import CIPHERTEXT, SEALED, SEALED_SIGNATURE

    key, public = plant_a
    new_keypair("plant-b", tmp_path / "b-keys", None)
    new_keypair("plant-c", tmp_path / "c-keys", None)
    at_a = trusted(public)  # plant A's view: B receives data
    at_a.trust(
        "plant-b",
        (tmp_path / "b-keys" / "plant-b.pub").read_bytes(),
        [Role.RECEIVE_DATA],
        (tmp_path / "b-keys" / "plant-b.box.pub").read_bytes(),
    )
    recipe = tmp_path / "washer-top.yaml"
    recipe.write_text("station: st-1\n")
    sealed = tmp_path / "sealed"
    export_package(
        sealed, name="washer-top", version=1, publisher="plant-a", private_key=key,
        passphrase=b"correct horse battery staple", model=model_file, recipe=recipe,
        exported_by="engineer", seal_for=at_a.named("plant-b"),
    )  # fmt: skip
    # Nothing of the model is readable in the sealed package.
    assert sorted(p.name for p in sealed.iterdir()) == [SEALED, SEALED_SIGNATURE]
    assert b"__metadata__" not in (sealed / SEALED / CIPHERTEXT).read_bytes()
    with pytest.raises(ValueError, match="not trusted to receive data"):
        export_package(
            tmp_path / "to-a", name="x", version=1, publisher="plant-a", private_key=key,
            passphrase=b"correct horse battery staple", model=model_file, recipe=None, exported_by="e",
            seal_for=at_a.named("plant-a"),
        )  # fmt: skip

    at_b = trusted(public)  # plant B trusts A to publish
    into = tmp_path / "installed"
    b_box = box_private(tmp_path / "b-keys" / "plant-b.box.key", None)
    c_box = box_private(tmp_path / "c-keys" / "plant-c.box.key", None)
    with pytest.raises(PackageRefused, match="sealed for plant-b, not for this plant's key"):
        import_package(sealed, at_b, into, box_key=c_box)
    with pytest.raises(PackageRefused, match="give this plant's box key"):
        import_package(sealed, at_b, into)
    tampered = tmp_path / "tampered"
    shutil.copytree(sealed, tampered)
    _flip(tampered / SEALED / CIPHERTEXT)
    with pytest.raises(PackageRefused, match="does not verify"):
        import_package(tampered, at_b, into, box_key=b_box)
    assert not into.exists()
    target = import_package(sealed, at_b, into, box_key=b_box)
    assert (target / "model" / model_file.name).read_bytes() == model_file.read_bytes()


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


def test_a_bad_package_name_is_refused_before_anything_is_written(
    model_file: Path, tmp_path: Path, plant_a: tuple[Path, Path]
) -> None:
    key, _ = plant_a
    with pytest.raises(ValueError, match="is not valid"):
        export_package(
            tmp_path / "out", name="../escape", version=1, publisher="plant-a", private_key=key,
            passphrase=b"correct horse battery staple", model=model_file, recipe=None, exported_by="e",
        )  # fmt: skip
    assert not (tmp_path / "out").exists()


def _line_records(tmp_path: Path) -> tuple[object, bytes]:
    """Three records of parts named by their serial numbers (in the part id, the file name,
    the key, the PLC's trigger and an error text), one NG with a kept image, reviewed with a
    name and a note."""
    import cv2
    import numpy as np

    from huoyan.core.models import Verdict
    from huoyan.core.records import Evidence, EvidenceKind, StoredRecord
    from huoyan.store.reviews import Outcome, Reviews
    from test_store import make_store, record

    store = make_store(f"sqlite:///{tmp_path / 'line.db'}", tmp_path)
    image = cv2.imencode(".png", np.full((8, 8), 200, np.uint8))[1].tobytes()
    sha = hashlib.sha256(image).hexdigest()
    for seq in (1, 2, 3):
        serial = f"SN-47{seq}"
        ng = seq == 2
        rec = record(f"st-1:hot_folder:{serial}_top.png", Verdict.NG if ng else Verdict.OK, seq=seq)
        rec = rec.model_copy(
            update={
                "part_id": serial,
                "source_name": f"{serial}_top.png",
                "trigger": {"part_id": serial, "job_id": 40 + seq},
                "evidence": [Evidence(kind=EvidenceKind.IMAGE, sha256=sha, media_type="image/png")] if ng else [],
                "error": f"cannot decode {serial}_top.png: truncated" if seq == 3 else None,
            }
        )
        store.write([StoredRecord(rec, blobs={sha: image} if ng else {})])  # type: ignore[attr-defined]
    ng_id = next(r.id for r in store_records(store) if r.verdict == "NG")
    Reviews(store.engine).add(ng_id, Outcome.DEFECT, "王 工", note="burr near SN-472's hole")  # type: ignore[attr-defined]
    return store, image


def store_records(store: object) -> list[object]:
    from huoyan.store.records import RecordFilter, query_inspections

    return list(query_inspections(store.engine, RecordFilter()))  # type: ignore[attr-defined]


@pytest.mark.parametrize("policy", ["", "part_ids=strip", "part_ids=keep,people=keep,comments=keep"])
def test_records_with_images_travel_sealed_and_redacted_by_the_export_policy(
    tmp_path: Path, plant_a: tuple[Path, Path], policy: str
) -> None:
    from huoyan.share.keys import box_private
    from huoyan.share.records import LINES, RecordSelection, Redaction, pseudonym, pseudonym_key
    from huoyan.store.blobs import BlobStore
    from huoyan.store.records import RecordFilter

    key, public = plant_a
    store, image = _line_records(tmp_path)
    new_keypair("supplier", tmp_path / "s-keys", None)
    at_a = TrustStore()
    at_a.trust(
        "supplier",
        (tmp_path / "s-keys" / "supplier.pub").read_bytes(),
        [Role.RECEIVE_DATA],
        (tmp_path / "s-keys" / "supplier.box.pub").read_bytes(),
    )
    secret = pseudonym_key(b"plant-a audit key")
    selection = RecordSelection(
        store.engine,  # type: ignore[attr-defined]
        RecordFilter(station="st-1"),
        limit=100,
        blobs=BlobStore(tmp_path / "blobs"),
        policy=Redaction.parse(policy),
        key=secret,
    )

    def export(out: Path, seal: bool) -> object:
        return export_package(
            out, name="burrs-week-48", version=1, publisher="plant-a", private_key=key,
            passphrase=b"correct horse battery staple", model=None, recipe=None, exported_by="qe",
            seal_for=at_a.named("supplier") if seal else None, records=selection,
        )  # fmt: skip

    with pytest.raises(ValueError, match="only sealed"):
        export(tmp_path / "plain", seal=False)
    assert not (tmp_path / "plain").exists()
    manifest = export(tmp_path / "to-supplier", seal=True)
    assert manifest.records["count"] == 3 and manifest.records["redaction"] == Redaction.parse(policy).model_dump()  # type: ignore[attr-defined]

    # The supplier trusts plant A for nothing but being who it is: records are not a model.
    at_supplier = trusted(public, [Role.RECEIVE_DATA])
    box = box_private(tmp_path / "s-keys" / "supplier.box.key", None)
    target = import_package(tmp_path / "to-supplier", at_supplier, tmp_path / "supplier", box_key=box)
    text = (target / "records" / LINES).read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()]
    ng = next(r for r in rows if r["verdict"] == "NG")
    (evidence,) = list((target / "records" / "evidence").iterdir())
    assert evidence.read_bytes() == image and evidence.name == f"{ng['evidence'][0]['sha256']}.png"
    assert ng["missing_evidence"] == []
    (review,) = ng["reviews"]
    assert review["outcome"] == "defect"
    if policy == "":  # the default: keyed pseudonyms for parts, no names, no notes
        assert "SN-47" not in text and "王" not in text and "burr" not in text
        assert ng["part_id"] == pseudonym(secret, "part", "SN-472")  # the same in every export of plant A
        assert ng["source_name"].startswith("source-") and ng["source_name"].endswith(".png")
        assert set(ng["trigger"]) == {"part_id", "job_id"} and review["reviewer"] is None and review["note"] is None
        assert len({r["key"] for r in rows}) == 3
    elif policy == "part_ids=strip":
        assert "SN-47" not in text
        assert [r["part_id"] for r in rows] == [None, None, None] and ng["trigger"] is None
        assert [r["key"] for r in rows] == ["record-1", "record-2", "record-3"]
        assert rows[2]["error"] == "cannot decode source-3.png: truncated"
    else:
        assert ng["part_id"] == "SN-472" and review["reviewer"] == "王 工" and "SN-472's hole" in review["note"]


def test_a_redaction_policy_with_a_wrong_field_or_choice_names_it() -> None:
    from huoyan.share.records import Redaction

    with pytest.raises(ValueError, match="part_ids: Input should be 'keep', 'strip' or 'pseudonym'"):
        Redaction.parse("part_ids=hide")
    with pytest.raises(ValueError, match="operators: Extra inputs"):
        Redaction.parse("operators=strip")
    with pytest.raises(ValueError, match="field=choice pairs"):
        Redaction.parse("strip")


def test_cli_exports_records_for_a_receiver_and_names_a_pseudonym_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from huoyan.share.keys import box_private
    from huoyan.share.package import unseal

    monkeypatch.setenv(PASS_ENV, "s3cret passphrase")
    store, _ = _line_records(tmp_path)  # blobs in tmp_path/blobs: tmp_path is the data dir
    common = ["--db", f"sqlite:///{tmp_path / 'line.db'}", "--data-dir", str(tmp_path)]
    keys = tmp_path / "keys"
    assert main(["keys", "new", "plant-a", "--dir", str(keys), "--passphrase-env", PASS_ENV]) == 0
    assert main(["keys", "new", "supplier", "--dir", str(keys)]) == 0
    trust = ["keys", "trust", "supplier", str(keys / "supplier.pub"), "--role", "receive-data"]
    assert main([*trust, "--box-key", str(keys / "supplier.box.pub"), *common]) == 0
    assert main(["keys", "trust", "plant-a", str(keys / "plant-a.pub"), "--role", "publish-models", *common]) == 0
    export = ["pkg", "export", str(tmp_path / "ng-parts"), "--name", "ng-parts", "--version", "1"]
    export += ["--publisher", "plant-a", "--key", str(keys / "plant-a.key"), "--passphrase-env", PASS_ENV]
    export += ["--records", "--verdict", "NG", "--images", *common]
    with pytest.raises(SystemExit, match="only sealed"):
        main(export)
    with pytest.raises(SystemExit, match="redaction policy 'people=hide'"):
        main([*export, "--for", "supplier", "--redact", "people=hide"])
    capsys.readouterr()
    assert main([*export, "--for", "supplier"]) == 0
    assert "1 records" in capsys.readouterr().out
    opened = unseal(
        tmp_path / "ng-parts", TrustStore.load(tmp_path / "trust.json"),
        box_private(keys / "supplier.box.key", None), tmp_path / "opened",
    )  # fmt: skip
    (row,) = [json.loads(line) for line in (opened / CONTENT / "records" / "records.jsonl").read_text().splitlines()]
    # Plant A, asked about a pseudonym, finds its part: the same key derives it.
    assert main(["pkg", "pseudonym", "SN-472", *common]) == 0
    assert capsys.readouterr().out.strip() == row["part_id"]
    from huoyan.store.audit import AuditLog, audit_key

    exported = AuditLog(store.engine, audit_key(tmp_path)).details("package-exported")  # type: ignore[attr-defined]
    assert exported[-1]["records"]["count"] == 1 and exported[-1]["sealed_for"] == "supplier"


def test_golden_templates_travel_beside_the_model_and_nothing_else_does(
    model_file: Path, tmp_path: Path, plant_a: tuple[Path, Path]
) -> None:
    key, public = plant_a
    golden = tmp_path / "golden"
    golden.mkdir()
    (golden / "00041_temp.jpg").write_bytes(b"\xff\xd8\xff template")
    for wrong in ("templates/../escape", "templates/..", "recipe/other.yaml", "spc/../../x.json", "templates/a/b.jpg"):
        with pytest.raises(ValueError, match="is not a file a package carries"):
            make(tmp_path, key, model_file, name=f"bad{len(wrong)}", extras={wrong: b"x"})
    pkg = make(tmp_path, key, model_file, extras={"templates/00041_temp.jpg": golden / "00041_temp.jpg"})
    target = import_package(pkg, trusted(public), tmp_path / "plant-b")
    assert (target / "templates" / "00041_temp.jpg").read_bytes() == b"\xff\xd8\xff template"
    assert "templates/00041_temp.jpg" in json.loads((target / MANIFEST).read_text())["files"]
