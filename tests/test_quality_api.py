"""The quality API on SQLite and PostgreSQL: charts of the records, frozen limits, score
drift, alarm acknowledgement and the shift calendar, each behind its role."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from huoyan.core.calibration import calibrate
from huoyan.core.models import Verdict
from huoyan.core.records import InspectionRecord, Severity, StationEvent, StoredRecord
from huoyan.server.platform import Platform
from huoyan.store.accounts import Role
from huoyan.store.blobs import BlobStore
from huoyan.store.records import RecordStore
from huoyan.store.spool import Spool
from serverkit import Keys
from test_quality_records import CALENDAR, START, parts

ADMIN, ENGINEER, OPERATOR = Role.ADMIN, Role.ENGINEER, Role.OPERATOR
MODEL = "c" * 64


def station_store(db_url: str, tmp_path: Path, card: dict[str, Any]) -> RecordStore:
    from huoyan.store.database import make_engine

    store = RecordStore(make_engine(db_url), BlobStore(tmp_path / "blobs-st"), Spool(tmp_path / "spool-st"))
    store.configure("st-1", "washer", "line-2-top", "1", "a" * 64, {"k": 1}, MODEL, "m.safetensors", card)
    store.register()
    return store


@pytest.fixture()
def line(
    served: tuple[TestClient, Platform, Keys], db_url: str, tmp_path: Path
) -> tuple[TestClient, Platform, Keys, RecordStore, list[InspectionRecord]]:
    client, p, keys = served
    rng = np.random.default_rng(0)
    card = {"calibration": calibrate(rng.gamma(2.0, 0.4, 1000), 0.005).model_dump(mode="json")}
    store = station_store(db_url, tmp_path, card)
    records = [r.model_copy(update={"model_sha256": MODEL, "recipe_id": "line-2-top"}) for r in parts(400)]
    store.write([StoredRecord(r) for r in records])
    return client, p, keys, store, records


def window() -> dict[str, str]:
    since = START.astimezone(UTC) - timedelta(hours=1)
    return {"since": since.isoformat(), "until": (since + timedelta(days=3)).isoformat()}


def test_a_p_chart_of_the_records_by_shift(line: Any) -> None:
    client, p, keys, _, records = line
    from huoyan.store.quality import set_shift_calendar

    set_shift_calendar(p.engine, CALENDAR, "admin")
    r = client.get(
        "/api/quality/charts",
        params={"station": "st-1", "chart": "p", "by": "shift", **window()},
        headers=keys.headers(OPERATOR),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    judged = [x for x in records if x.verdict != Verdict.ERROR]
    assert body["charts"][0]["center"][0] == pytest.approx(sum(x.verdict == Verdict.NG for x in judged) / len(judged))
    assert body["labels"][0] == "2026-11-29 Night" and body["charts"][0]["limits"]["version"] is None
    assert len(body["charts"][0]["statistic"]) == len(body["labels"])
    # a variables chart of the OK scores, by lot, with its S chart
    r = client.get(
        "/api/quality/charts",
        params={"station": "st-1", "chart": "xbar-s", "metric": "score", "by": "lot", **window()},
        headers=keys.headers(OPERATOR),
    )
    assert r.status_code == 200 and [c["chart"] for c in r.json()["charts"]] == ["xbar", "s"]
    mismatch = client.get(
        "/api/quality/charts",
        params={"station": "st-1", "chart": "p", "metric": "score", **window()},
        headers=keys.headers(OPERATOR),
    )
    assert mismatch.status_code == 422 and "variables chart" in mismatch.json()["detail"]
    empty = client.get("/api/quality/charts", params={"station": "nowhere"}, headers=keys.headers(OPERATOR))
    assert empty.status_code == 404
    assert client.get("/api/quality/charts", params={"station": "st-1"}).status_code == 401


def test_engineers_freeze_limits_that_later_charts_use(line: Any) -> None:
    client, p, keys, _, _ = line
    body = {"station": "st-1", "chart": "p", "by": "lot", "exclude": [0], "note": "lot L00 was a trial", **window()}
    assert client.post("/api/quality/limits", json=body, headers=keys.headers(OPERATOR)).status_code == 403
    r = client.post("/api/quality/limits", json=body, headers=keys.headers(ENGINEER))
    assert r.status_code == 200, r.text
    frozen = r.json()
    assert frozen["version"] == 1 and frozen["frozen_by"] == "engineer" and frozen["points"] == 4
    chart = client.get(
        "/api/quality/charts", params={"station": "st-1", "chart": "p", "by": "lot", **window()},
        headers=keys.headers(OPERATOR),
    ).json()  # fmt: skip
    assert chart["charts"][0]["limits"]["version"] == 1
    assert chart["charts"][0]["center"][0] == pytest.approx(frozen["params"]["p_bar"])
    history = client.get(
        "/api/quality/limits", params={"station": "st-1", "chart": "p"}, headers=keys.headers(OPERATOR)
    ).json()
    assert [h["version"] for h in history] == [1]
    audit = p.audit.entries(limit=5)
    assert audit[0]["action"] == "control-limits-frozen" and audit[0]["detail"]["note"] == "lot L00 was a trial"


def test_score_drift_compares_ok_scores_with_the_models_calibration(line: Any) -> None:
    client, _, keys, store, records = line
    r = client.get("/api/quality/drift", params={"station": "st-1"}, headers=keys.headers(OPERATOR))
    assert r.status_code == 200, r.text
    stable = r.json()
    assert stable["reference"] == "calibration" and stable["reference_size"] == 1000
    assert stable["model_sha256"] == MODEL and stable["recent"] == sum(x.verdict == Verdict.OK for x in records)
    # the scores of these parts come from the same gamma(2, 0.4) as the calibration
    assert stable["level"] == "stable" and not stable["alarm"]
    later = [
        r.model_copy(update={"key": f"later-{r.key}", "arrived_at": r.arrived_at + timedelta(days=1),
                             "score": None if r.score is None else r.score * 1.8})
        for r in records
    ]  # fmt: skip
    store.write([StoredRecord(r) for r in later])
    drifted = client.get("/api/quality/drift", params={"station": "st-1"}, headers=keys.headers(OPERATOR)).json()
    # half the compared scores are the shifted ones: the EWMA alarms, PSI and KS see it too
    assert drifted["level"] == "drift" and drifted["alarm"] and drifted["psi"] > 0.1 and drifted["ks_p_value"] < 1e-6


def test_alarms_are_acknowledged_once_with_a_comment(line: Any) -> None:
    client, p, keys, store, _ = line
    store.event(StationEvent(station_id="st-1", kind="score-drift", severity=Severity.ALARM, message="drifted"))
    store.event(StationEvent(station_id="st-1", kind="frame-dropped", severity=Severity.WARNING, message="late"))
    events = client.get("/api/events", params={"station": "st-1"}, headers=keys.headers(OPERATOR)).json()
    alarm = next(e for e in events if e["kind"] == "score-drift")
    warning = next(e for e in events if e["kind"] == "frame-dropped")
    assert alarm["acknowledged_by"] is None
    url = f"/api/events/{alarm['id']}/ack"
    assert client.post(url, json={"comment": ""}, headers=keys.headers(OPERATOR)).status_code == 422
    r = client.post(url, json={"comment": "lens cleaned, scores back"}, headers=keys.headers(OPERATOR))
    assert r.status_code == 200, r.text
    assert r.json()["acknowledged_by"] == "operator" and r.json()["ack_comment"] == "lens cleaned, scores back"
    again = client.post(url, json={"comment": "again"}, headers=keys.headers(OPERATOR))
    assert again.status_code == 409 and "already" in again.json()["detail"]
    other = client.post(f"/api/events/{warning['id']}/ack", json={"comment": "x"}, headers=keys.headers(OPERATOR))
    assert other.status_code == 409
    assert (
        client.post("/api/events/999999/ack", json={"comment": "x"}, headers=keys.headers(OPERATOR)).status_code == 404
    )
    assert p.audit.entries(limit=1)[0]["action"] == "alarm-acknowledged"


def test_the_shift_calendar_is_set_by_an_admin(served: tuple[TestClient, Platform, Keys]) -> None:
    client, _, keys = served
    assert client.get("/api/plant/shifts", headers=keys.headers(OPERATOR)).json()["timezone"] == "UTC"
    calendar = {
        "timezone": "Asia/Shanghai",
        "shifts": [{"name": "早班", "start": "08:00"}, {"name": "夜班", "start": "20:00"}],
    }
    assert client.put("/api/plant/shifts", json=calendar, headers=keys.headers(ENGINEER)).status_code == 403
    assert client.put("/api/plant/shifts", json=calendar, headers=keys.headers(ADMIN)).status_code == 200
    assert client.get("/api/plant/shifts", headers=keys.headers(OPERATOR)).json()["shifts"][1]["name"] == "夜班"
    bad = client.put("/api/plant/shifts", json={**calendar, "timezone": "Mars/Olympus"}, headers=keys.headers(ADMIN))
    assert bad.status_code == 422 and "not a time zone" in bad.text


def test_a_report_with_capability_fits_the_api_schema() -> None:
    from huoyan.quality.report import report
    from huoyan.quality.series import Series
    from huoyan.server.schemas import ChartReportOut

    rng = np.random.default_rng(3)
    series = Series([str(i) for i in range(30)], groups=[[float(v)] for v in rng.normal(10, 1, 30)])
    body = report("imr", series, "values", lsl=6.0, usl=14.0).as_dict()
    out = ChartReportOut.model_validate({**body, "metric": "feature:rms", "by": "part"})
    assert out.capability is not None and out.capability.cp is not None
    assert out.capability.cp.value == pytest.approx(body["capability"]["cp"]["value"])
    assert "Capability" in json.dumps(ChartReportOut.model_json_schema())


def test_capability_is_against_the_specification_the_parts_were_made_under(
    served: tuple[TestClient, Platform, Keys], db_url: str, tmp_path: Path
) -> None:
    """The specification comes with the recipe stored beside the records, so a station
    the server does not run (on another PC, or ``huoyan run``) gets its capability too, and
    after a recipe switch the chart is judged by the recipe its newest parts were made under."""
    from huoyan.store.database import make_engine

    client, _, keys = served
    store = RecordStore(make_engine(db_url), BlobStore(tmp_path / "blobs-st"), Spool(tmp_path / "spool-st"))
    body = {"quality": {"drift": True, "specs": {"score": {"lsl": None, "usl": 3.0}}}}
    store.configure("st-1", "washer", "top", "1", "a" * 64, body, MODEL, "m.safetensors", {})
    records = [r.model_copy(update={"model_sha256": MODEL, "recipe_id": "top"}) for r in parts(400)]
    store.write([StoredRecord(r) for r in records[:200]])
    fine = {"quality": {"drift": True, "specs": {"score": {"lsl": 0.1, "usl": 2.5}}}}
    store.switch(station_id="st-1", product="washer", recipe_id="top-fine", recipe_version="1", recipe_sha256="f" * 64,
                 recipe_body=fine, model_sha256=MODEL, model_name="m.safetensors", model_card={})  # fmt: skip
    store.write([StoredRecord(r.model_copy(update={"recipe_id": "top-fine"})) for r in records[200:]])

    def spec(until: datetime) -> dict[str, Any] | None:
        since = START.astimezone(UTC) - timedelta(hours=1)
        r = client.get(
            "/api/quality/charts",
            params={"station": "st-1", "chart": "imr", "metric": "score", "by": "part",
                    "since": since.isoformat(), "until": until.isoformat()},
            headers=keys.headers(OPERATOR),
        )  # fmt: skip
        assert r.status_code == 200, r.text
        capability: dict[str, Any] | None = r.json()["capability"]
        return capability

    before_switch = spec(records[199].arrived_at + timedelta(seconds=1))
    assert before_switch is not None and (before_switch["lsl"], before_switch["usl"]) == (None, 3.0)
    after = spec(records[-1].arrived_at + timedelta(seconds=1))
    assert after is not None and (after["lsl"], after["usl"]) == (0.1, 2.5)
