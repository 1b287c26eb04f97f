"""Shift and lot reports: the PDF opens with the expected pages and numbers, the HTML stands
alone, from the API (with a shift named in Chinese) and from ``huoyan report``."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from huoyan.core.plant import Shift, ShiftCalendar
from huoyan.server.platform import Platform
from huoyan.store.accounts import Role
from huoyan.store.quality import set_shift_calendar
from serverkit import Keys, png
from test_server_api import good_images, upload

OPERATOR = Role.OPERATOR
# One shift all day long, named in Chinese, so the whole test's parts fall in today's.
CALENDAR = ShiftCalendar(timezone="UTC", shifts=[Shift(name="白班", start="00:00")])


@pytest.fixture()
def inspected(
    served: tuple[TestClient, Platform, Keys], line_dir: Path, defect_sample: tuple[np.ndarray, np.ndarray]
) -> tuple[TestClient, Platform, Keys, list[dict[str, Any]]]:
    client, p, keys = served
    set_shift_calendar(p.engine, CALENDAR, "admin")
    parts = [upload(client, keys, png(img), f"G{i}.png", lot="L-1") for i, img in enumerate(good_images(line_dir)[:5])]
    parts.append(upload(client, keys, png(defect_sample[0]), "D1.png", lot="L-1"))
    parts.append(upload(client, keys, b"\x89PNG\r\n\x1a\nnot really", "X1.png", lot="L-1"))
    assert [r["verdict"] for r in parts].count("NG") == 1
    return client, p, keys, parts


def today() -> str:
    return f"{datetime.now(UTC):%Y-%m-%d} 白班"


def test_the_shift_report_pdf_has_its_pages_and_numbers(inspected: Any) -> None:
    client, _, keys, _ = inspected
    r = client.get(
        "/api/quality/report", params={"station": "cell-1", "shift": today()}, headers=keys.headers(OPERATOR)
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert (
        "filename*=UTF-8''" in r.headers["content-disposition"]
        and "%E7%99%BD%E7%8F%AD" in r.headers["content-disposition"]
    )
    pdf = PdfReader(io.BytesIO(r.content))
    assert len(pdf.pages) == 3  # summary; control charts; examples
    first = pdf.pages[0].extract_text()
    assert "cell-1" in first and "白班" in first
    assert "7 5 1 1" in " ".join(first.split())  # parts, OK, NG, ERROR
    assert "washer-top" in first and "defect" in first
    assert "NG rate by hour" in pdf.pages[1].extract_text()
    assert "Examples" in pdf.pages[2].extract_text() and pdf.pages[2].images


def test_a_lot_report_as_self_contained_html(inspected: Any) -> None:
    client, _, keys, _ = inspected
    r = client.get(
        "/api/quality/report", params={"station": "cell-1", "lot": "L-1", "format": "html"},
        headers=keys.headers(OPERATOR),
    )  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "Lot L-1" in page and "data:image/jpeg;base64," in page
    assert "plotly" in page.lower() and "cdn" not in page.lower().split("<body>")[1][:2000]
    missing = client.get(
        "/api/quality/report", params={"station": "cell-1", "lot": "nope"}, headers=keys.headers(OPERATOR)
    )
    assert missing.status_code == 404
    bad_shift = client.get(
        "/api/quality/report", params={"station": "cell-1", "shift": "2026-11-30 Z"}, headers=keys.headers(OPERATOR)
    )
    assert bad_shift.status_code == 422 and "no shift 'Z'" in bad_shift.json()["detail"]


def test_huoyan_report_writes_pdf_and_html(inspected: Any, tmp_path: Path, db_url: str) -> None:
    from huoyan.cli import main

    out = tmp_path / "shift.pdf"
    html = tmp_path / "shift.html"
    data_dir = tmp_path / "data"
    argv = ["report", "--db", db_url, "--data-dir", str(data_dir), "--station", "cell-1", "--shift", today()]
    assert main([*argv, "--pdf", str(out), "--html", str(html)]) == 0
    assert len(PdfReader(out).pages) == 3 and "白班" in html.read_text(encoding="utf-8")
    with pytest.raises(SystemExit, match="--pdf FILE, --html FILE or both"):
        main(argv)
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert main(["report", "--db", db_url, "--station", "cell-1", "--since", since, "--pdf", str(out)]) == 0
