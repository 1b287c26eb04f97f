"""Records exported with the records page's filters: CSV and Excel round-trip to the same
records the API lists, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from huoyan.store.accounts import Role
from test_quality_api import line  # noqa: F401  (records of station st-1 beside a served app)

OPERATOR = Role.OPERATOR


def listed(client: Any, keys: Any, **filters: str) -> list[dict[str, Any]]:
    out, offset = [], 0
    while True:
        page = client.get(
            "/api/inspections", params={**filters, "limit": 500, "offset": offset}, headers=keys.headers(OPERATOR)
        ).json()
        out += page["items"]
        offset += 500
        if offset >= page["total"]:
            return out[::-1]  # oldest first, as exported


def test_a_filtered_csv_export_round_trips(line: Any) -> None:  # noqa: F811
    client, _, keys, _, records = line
    filters = {"station": "st-1", "verdict": "NG", "lot": "L01"}
    r = client.get("/api/inspections/export", params=filters, headers=keys.headers(OPERATOR))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    want = listed(client, keys, **filters)
    assert len(rows) == len(want) == sum(x.verdict == "NG" and x.lot == "L01" for x in records) > 0
    for got, api in zip(rows, want, strict=True):
        assert int(got["id"]) == api["id"] and got["key"] == api["key"] and got["lot"] == "L01"
        assert float(got["score"]) == pytest.approx(api["score"]) and got["verdict"] == "NG"
        assert int(got["regions"]) == len(api["regions"]) and got["recipe_id"] == "line-2-top"
    # a time window, and values that are SQL to a careless exporter, are filters like any other
    since = {
        "station": "st-1",
        "since": records[100].arrived_at.isoformat(),
        "until": records[200].arrived_at.isoformat(),
    }
    window = client.get("/api/inspections/export", params=since, headers=keys.headers(OPERATOR)).content
    assert window.decode("utf-8-sig").count("\n") == 100 + 1
    odd = {"station": "st-1", "lot": "L01'; DROP TABLE inspections; --"}
    quoted = client.get("/api/inspections/export", params=odd, headers=keys.headers(OPERATOR))
    assert quoted.status_code == 200 and quoted.content.decode("utf-8-sig").count("\n") == 1
    everything = client.get("/api/inspections/export", params={"station": "st-1"}, headers=keys.headers(OPERATOR))
    assert everything.content.decode("utf-8-sig").count("\n") == len(records) + 1
    assert client.get("/api/inspections/export").status_code == 401


def test_an_excel_export_holds_the_same_records(line: Any) -> None:  # noqa: F811
    from openpyxl import load_workbook

    client, _, keys, _, records = line
    filters = {"station": "st-1", "verdict": "ERROR"}
    r = client.get("/api/inspections/export", params={**filters, "format": "xlsx"}, headers=keys.headers(OPERATOR))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.openxmlformats")
    sheet = load_workbook(io.BytesIO(r.content), read_only=True)["records"]
    rows = list(sheet.iter_rows(values_only=True))
    header, body = rows[0], rows[1:]
    want = listed(client, keys, **filters)
    assert len(body) == len(want) == sum(x.verdict == "ERROR" for x in records)
    ids = [row[header.index("id")] for row in body]
    assert ids == [x["id"] for x in want]
    assert all(row[header.index("error")] == "unreadable" for row in body)
