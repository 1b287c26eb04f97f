"""The tamper-evident record chain, on SQLite and PostgreSQL: an edited verdict, a deleted
record, a reordered pair and a tail cut off behind a checkpoint are each found and named."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from huoyan.core.models import Verdict
from huoyan.core.records import StoredRecord
from huoyan.store import chain
from huoyan.store.schema import InspectionRow, RegionRow
from test_store import make_store, record


def fill(db_url: str, tmp_path: Path, n: int = 12, checkpoints: list[tuple[int, str]] | None = None) -> object:
    store = make_store(db_url, tmp_path)
    if checkpoints is not None:
        store.on_checkpoint = lambda station, pos, sha: checkpoints.append((pos, sha))
    for start in range(0, n, 5):  # batches, as the writer thread stores them
        batch = [
            StoredRecord(record(f"k{i}", Verdict.NG if i % 3 == 0 else Verdict.OK, seq=i))
            for i in range(start + 1, min(start + 5, n) + 1)
        ]
        store.write(batch)
    return store


def test_an_untouched_chain_verifies_and_repeats_do_not_extend_it(db_url: str, tmp_path: Path) -> None:
    store = fill(db_url, tmp_path)
    store.write([StoredRecord(record("k3", Verdict.NG, seq=3))])  # a repeat: stored once
    report = chain.verify_station(store.engine, "st-1")
    assert report.intact and report.problems == []
    assert report.records == 12 and report.head_pos == 12 and report.unchained == 0


@pytest.mark.parametrize("tamper", ["edit-verdict", "edit-region", "delete", "reorder"])
def test_tampering_is_found_at_the_record_it_touched(db_url: str, tmp_path: Path, tamper: str) -> None:
    store = fill(db_url, tmp_path)
    with Session(store.engine) as s, s.begin():
        if tamper == "edit-verdict":
            s.execute(update(InspectionRow).where(InspectionRow.key == "k6").values(verdict="OK"))
        elif tamper == "edit-region":
            k9 = s.scalar(select(InspectionRow.id).where(InspectionRow.key == "k9"))
            s.execute(update(RegionRow).where(RegionRow.inspection_id == k9).values(max_score=0.1))
        elif tamper == "delete":
            s.execute(delete(InspectionRow).where(InspectionRow.key == "k7"))
        else:  # swap the positions of two records (through a free one: the position is unique)
            s.execute(update(InspectionRow).where(InspectionRow.key == "k4").values(chain_pos=1000))
            s.execute(update(InspectionRow).where(InspectionRow.key == "k5").values(chain_pos=4))
            s.execute(update(InspectionRow).where(InspectionRow.key == "k4").values(chain_pos=5))
    report = chain.verify_station(store.engine, "st-1")
    assert not report.intact
    first = report.problems[0]
    expected = {
        "edit-verdict": "record k6 at position 6 was edited",
        "edit-region": "record k9 at position 9 was edited",
        "delete": "records 7..7 of the chain are missing (deleted) before k8",
        "reorder": "record k5 at position 4 was edited",
    }[tamper]
    assert first.startswith(expected), report.problems


def test_a_tail_cut_off_behind_a_checkpoint_is_found(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chain, "CHECKPOINT_EVERY", 5)
    checkpoints: list[tuple[int, str]] = []
    store = fill(db_url, tmp_path, n=12, checkpoints=checkpoints)
    assert [pos for pos, _ in checkpoints] == [5, 10]
    assert chain.verify_station(store.engine, "st-1", checkpoints).intact
    with Session(store.engine) as s, s.begin():  # the last three records removed, chain otherwise whole
        s.execute(delete(InspectionRow).where(InspectionRow.chain_pos > 9))
    report = chain.verify_station(store.engine, "st-1", checkpoints)
    assert not report.intact and report.head_pos == 9
    assert "the chain ends at position 9, but a checkpoint says 10: tail cut off" in report.problems


def test_a_station_chains_its_records_across_restarts_and_checkpoints_to_the_audit_trail(
    line_dir: Path, model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huoyan.runner import open_station, run_station
    from huoyan.store.audit import AuditLog, audit_key
    from test_station import load, sample_images, write_recipe

    monkeypatch.setattr(chain, "CHECKPOINT_EVERY", 3)
    recipe = load(write_recipe(tmp_path, model_file, f"{{type: replay, path: {line_dir / 'test'}, rate: 200}}"))
    url = f"sqlite:///{tmp_path / 'r.db'}"
    run_station(open_station(recipe, url), max_parts=4, status=None)
    again = open_station(recipe, url)  # a restart continues the chain from its head
    run_station(again, status=None)
    audit = AuditLog(again.engine, audit_key(Path(recipe.storage.data_dir)))
    marks = [(d["pos"], d["sha256"]) for d in audit.details(chain.CHECKPOINT_ACTION, "st-1")]
    total = len(sample_images(line_dir))
    # A checkpoint at the end of each stored batch that passes a multiple of 3, none in between.
    positions = [pos for pos, _ in marks]
    assert positions == sorted(set(positions)) and max(positions) > total - 3 and audit.verify().intact
    assert all(a // 3 < b // 3 for a, b in itertools.pairwise(positions))
    report = chain.verify_station(again.engine, "st-1", marks)
    assert report.intact and report.records == total and report.head_pos == total, report.problems


@pytest.mark.parametrize("victim", ["k6", "k7", "k12"])
def test_a_chain_walked_in_stretches_by_several_processes_finds_the_same(tmp_path: Path, victim: str) -> None:
    """12 records in two stretches (1..6, 7..12): an edit or a deletion on either side of
    the cut, or at the end, is found as by one walker."""
    store = fill(f"sqlite:///{tmp_path / 'r.db'}", tmp_path)
    whole = chain.verify_station(store.engine, "st-1", workers=2, min_parallel=1)
    assert whole.intact and whole.records == 12 and whole.head_pos == 12
    with Session(store.engine) as s, s.begin():
        if victim == "k7":
            s.execute(delete(InspectionRow).where(InspectionRow.key == victim))
        else:
            s.execute(update(InspectionRow).where(InspectionRow.key == victim).values(score=99.0))
    single = chain.verify_station(store.engine, "st-1", workers=1)
    split = chain.verify_station(store.engine, "st-1", workers=2, min_parallel=1)
    assert not split.intact and split.problems[:1] == single.problems[:1], (split.problems, single.problems)


def reviewed(db_url: str, tmp_path: Path) -> tuple[object, list[tuple[int, str]]]:
    """Twelve records and five reviews of them, with each review's chain head as the
    route's audit entry would carry it."""
    from huoyan.store.reviews import Outcome, Reviews

    store = fill(db_url, tmp_path)
    reviews = Reviews(store.engine)  # type: ignore[attr-defined]
    with Session(reviews.engine) as s:
        ids = dict(s.execute(select(InspectionRow.key, InspectionRow.id)).all())
    marks = []
    for key, outcome in [
        ("k3", "defect"),
        ("k6", "false_alarm"),
        ("k1", "good"),
        ("k3", "false_alarm"),
        ("k2", "missed_defect"),
    ]:
        out = reviews.add(ids[key], Outcome(outcome), "li.gong", note=f"about {key}")
        marks.append((out["chain_pos"], out["chain_sha256"]))
    return store, marks


@pytest.mark.parametrize("tamper", ["none", "edit-outcome", "re-point", "delete", "cut-tail"])
def test_reviews_are_chained_per_station_and_tampering_is_named(db_url: str, tmp_path: Path, tamper: str) -> None:
    from huoyan.store.schema import ReviewRow

    store, marks = reviewed(db_url, tmp_path)
    engine = store.engine  # type: ignore[attr-defined]
    assert [pos for pos, _ in marks] == [1, 2, 3, 4, 5]
    with Session(engine) as s, s.begin():
        if tamper == "edit-outcome":  # a confirmed defect turned into a false alarm afterwards
            s.execute(update(ReviewRow).where(ReviewRow.chain_pos == 1).values(outcome="false_alarm"))
        elif tamper == "re-point":  # the review moved onto another part
            k9 = s.scalar(select(InspectionRow.id).where(InspectionRow.key == "k9"))
            s.execute(update(ReviewRow).where(ReviewRow.chain_pos == 2).values(inspection_id=k9))
        elif tamper == "delete":
            s.execute(delete(ReviewRow).where(ReviewRow.chain_pos == 3))
        elif tamper == "cut-tail":
            s.execute(delete(ReviewRow).where(ReviewRow.chain_pos == 5))
    report = chain.verify_reviews(engine, "st-1", marks)
    expected = {
        "none": None,
        "edit-outcome": "review 1 of k3 at position 1 was edited",
        "re-point": "review 2 of k9 at position 2 was edited",
        "delete": "reviews 3..3 of the chain are missing (deleted)",
        "cut-tail": "the chain ends at position 4, but a checkpoint says 5: tail cut off",
    }[tamper]
    if expected is None:
        assert report.intact and report.records == 5 and report.head_sha256 == marks[-1][1]
    else:
        assert not report.intact and report.problems[0].startswith(expected), report.problems


def _relink_from(engine: object, first: int) -> None:
    """What someone holding the database (and the audit key) could do: recompute every
    link from ``first`` on, so that the chain verifies again after an edit."""
    with Session(engine) as s, s.begin():  # type: ignore[call-overload]
        previous = s.scalar(select(InspectionRow.chain_sha256).where(InspectionRow.chain_pos == first - 1))
        for row, children in list(chain._rows(engine, "st-1", first, 10**9)):  # type: ignore[arg-type]
            previous = chain.link(previous, chain.content_digest(row, children))
            s.execute(update(InspectionRow).where(InspectionRow.id == row["id"]).values(chain_sha256=previous))


def _cut_audit_trail(engine: object, data: Path) -> None:
    """Remove the trail's newest entries and fix its head with the audit key: the trail
    then verifies on its own."""
    from huoyan.store.audit import HEAD_ID, AuditLog, audit_key
    from huoyan.store.schema import AuditHeadRow, AuditRow

    log = AuditLog(engine, audit_key(data))  # type: ignore[arg-type]
    with Session(engine) as s, s.begin():  # type: ignore[call-overload]
        first_id = s.scalar(select(AuditRow.id).order_by(AuditRow.id).limit(1))
        s.execute(delete(AuditRow).where(AuditRow.id > first_id))
        sha = s.scalar(select(AuditRow.sha256).where(AuditRow.id == first_id))
        head = s.get(AuditHeadRow, HEAD_ID)
        head.entries, head.last_id, head.last_sha256 = 1, first_id, sha
        head.mac = log._head_mac(1, first_id, sha)


@pytest.mark.parametrize("tamper", ["none", "cut-tail", "edit-and-relink", "cut-audit-trail"])
def test_a_signed_checkpoint_finds_what_the_database_keeper_could_hide(
    tmp_path: Path, tamper: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cut tail shorter than the checkpoint interval, or an edit whose chain was
    recomputed, passes the chain's own checks; against a signed checkpoint it does not."""
    import json

    from huoyan.cli import main

    db = tmp_path / "r.db"
    store = fill(f"sqlite:///{db}", tmp_path)
    common = ["--db", f"sqlite:///{db}", "--data-dir", str(tmp_path / "data")]
    assert main(["keys", "new", "plant-a", "--dir", str(tmp_path / "keys")]) == 0
    from huoyan.store.audit import AuditLog, audit_key

    trail = AuditLog(store.engine, audit_key(tmp_path / "data"))  # type: ignore[attr-defined]
    for i in range(3):
        trail.add("qe", "threshold-set", f"st-1 #{i}")
    signed = tmp_path / "cp.json"
    assert (
        main(["audit", "checkpoint", "--key", str(tmp_path / "keys" / "plant-a.key"), "--out", str(signed), *common])
        == 0
    )
    check = ["audit", "verify", "--checkpoint", str(signed), "--public-key", str(tmp_path / "keys" / "plant-a.pub")]
    with Session(store.engine) as s, s.begin():  # type: ignore[attr-defined]
        if tamper == "cut-tail":
            s.execute(delete(InspectionRow).where(InspectionRow.chain_pos > 10))
        elif tamper == "edit-and-relink":
            s.execute(update(InspectionRow).where(InspectionRow.key == "k5").values(verdict="OK", score=0.1))
    if tamper == "edit-and-relink":
        _relink_from(store.engine, 5)  # type: ignore[attr-defined]
    elif tamper == "cut-audit-trail":
        _cut_audit_trail(store.engine, tmp_path / "data")  # type: ignore[attr-defined]
    capsys.readouterr()
    plain = main(["audit", "verify", *common])
    assert plain == 0  # the chain's own checks see nothing: no checkpoint in the trail covers 12 records
    capsys.readouterr()
    assert main([*check, *common]) == (0 if tamper == "none" else 1)
    found = json.loads(capsys.readouterr().out)
    assert (
        found["records"][0]["problems"] + found["marks"]
        == {
            "none": [],
            "cut-tail": ["the chain ends at position 10, but a checkpoint says 12: tail cut off"],
            "edit-and-relink": ["position 12 differs from its checkpoint: the chain was rewritten"],
            "cut-audit-trail": ["the audit trail has 1 entries, but a checkpoint says 3: entries were removed"],
        }[tamper]
    )


def test_a_checkpoint_is_signed_only_over_intact_chains_and_read_only_with_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from huoyan.cli import main

    db = tmp_path / "r.db"
    store = fill(f"sqlite:///{db}", tmp_path)
    common = ["--db", f"sqlite:///{db}", "--data-dir", str(tmp_path / "data")]
    main(["keys", "new", "plant-a", "--dir", str(tmp_path / "keys")])
    main(["keys", "new", "mallory", "--dir", str(tmp_path / "keys")])
    key = ["--key", str(tmp_path / "keys" / "plant-a.key")]
    assert main(["audit", "checkpoint", *key, *common]) == 0
    (made,) = (tmp_path / "data" / "checkpoints").iterdir()  # the default place
    statement = json.loads(json.loads(made.read_text())["statement"])
    assert statement["records"] == {"st-1": {"pos": 12, "sha256": statement["records"]["st-1"]["sha256"]}}
    verify = ["audit", "verify", "--checkpoint", str(made), *common]
    with pytest.raises(SystemExit, match="does not verify with this public key"):
        main([*verify, "--public-key", str(tmp_path / "keys" / "mallory.pub")])
    forged = tmp_path / "forged.json"
    envelope = json.loads(made.read_text())
    envelope["statement"] = envelope["statement"].replace('"pos": 12', '"pos": 9')
    forged.write_text(json.dumps(envelope))
    with pytest.raises(SystemExit, match="does not verify"):
        main(["audit", "verify", "--checkpoint", str(forged), "--public-key", str(tmp_path / "keys" / "plant-a.pub"),
              *common])  # fmt: skip
    with pytest.raises(SystemExit, match="needs --public-key"):
        main(verify)
    with Session(store.engine) as s, s.begin():  # type: ignore[attr-defined]
        s.execute(update(InspectionRow).where(InspectionRow.key == "k3").values(verdict="OK"))
    with pytest.raises(
        SystemExit, match=re.escape("nothing signed: the chains do not verify (station st-1: record k3")
    ):
        main(["audit", "checkpoint", *key, *common])


def test_a_records_digest_stays_what_chains_already_stored_were_linked_with() -> None:
    """Chains in databases out there were linked with this digest: any change to how a
    record is serialised for it would break every one of them."""
    import datetime as dt
    import zoneinfo

    utc = zoneinfo.ZoneInfo("Etc/UTC")  # as psycopg hands a timestamptz back
    row = {
        "id": 1, "key": "st-1:camera:1", "seq": 1, "station_id": "st-1", "recipe_pk": 1, "model_pk": 1,
        "threshold": 2.0, "part_id": "P1", "source_name": "frame-0000000001", "verdict": "OK", "score": 0.9,
        "normalised_score": 0.4, "error": None, "width": None, "height": None,
        "arrived_at": dt.datetime(2026, 12, 1, 0, 0, 0, 33333, tzinfo=utc),
        "decided_at": dt.datetime(2026, 12, 1, 0, 0, 0, 64333, tzinfo=utc),
        "stored_at": dt.datetime(2026, 12, 1, 0, 0, 0, 64333),  # naive, as SQLite hands it back
        "latency_ms": 31.0, "rules": [], "trigger": None, "diagnosis": None, "lot": None, "chain_pos": 1,
        "chain_sha256": "ignored",
    }  # fmt: skip
    assert chain.content_digest(row, {}) == "81bc959cc973ae8fc13ff5e03127e0e08e29ee93a3c97f38b728285d81f342cb"
    region = {"id": 7, "inspection_id": 1, "x": 1, "y": 2, "label": "缺陷"}
    expected = "ef94c2834a500f0a9f0ea42b2cb5eb33adeace303ff58eb759783a68c4983b4a"
    assert chain.content_digest(row, {"regions": [region]}) == expected
