"""The quality page in real Chromium: a control chart of the records with its violations,
the score-drift view, an alarm acknowledged with a comment, and limits frozen for Phase II."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from huoyan.core.calibration import calibrate
from huoyan.core.records import Severity, StationEvent, StoredRecord
from serverkit import PASSWORD, live_server, make_platform_app, write_recipe
from test_browser import browser  # noqa: F401  (the Chromium fixture)
from test_quality_api import MODEL, station_store
from test_quality_records import parts


def test_the_quality_page_charts_marks_acknowledges_and_freezes(
    browser: object,  # noqa: F811
    tmp_path: Path,
    model_file: Path,
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    app, p, _ = make_platform_app(url, tmp_path, [write_recipe(tmp_path, "cell-1", model_file, "http")])
    rng = np.random.default_rng(0)
    card = {"calibration": calibrate(rng.gamma(2.0, 0.4, 1000), 0.005).model_dump(mode="json")}
    store = station_store(url, tmp_path, card)
    records = parts(400)
    shift = datetime.now(UTC) - timedelta(hours=20) - records[0].arrived_at  # the page shows the last 24 h
    records = [
        r.model_copy(update={"model_sha256": MODEL, "recipe_id": "line-2-top", "arrived_at": r.arrived_at + shift})
        for r in records
        if r.arrived_at + shift < datetime.now(UTC)
    ]
    store.write([StoredRecord(r) for r in records])
    store.event(
        StationEvent(station_id="st-1", kind="score-drift", severity=Severity.ALARM, message="OK scores drifted")
    )
    with live_server(app) as base:
        page = browser.new_page(viewport={"width": 1366, "height": 1600})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda dialog: dialog.accept("lens cleaned, scores back"))
        page.goto(f"{base}/login?next=/quality/st-1%3Fchart%3Dp%26by%3Dhour%26rules%3DWE1")
        page.fill("input[name=username]", "engineer")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_function("document.querySelector('#chart-main .main-svg') !== null")
        hours = page.eval_on_selector("#chart-main", "d => d.data[0].y.length")
        labels = page.eval_on_selector("#chart-main", "d => d.data[0].x")
        assert hours == len(labels) >= 20
        judged = [r for r in records if r.verdict != "ERROR"]
        centre = page.eval_on_selector("#chart-main", "d => d.data[1].y[0]")
        assert abs(centre - sum(r.verdict == "NG" for r in judged) / len(judged)) < 1e-9
        expect(page.locator("#limits-note")).to_contain_text("Phase I: limits estimated")
        marked = page.eval_on_selector("#chart-main", "d => d.data[4].x.length")
        assert marked == page.locator("#violations tbody tr").count()
        expect(page.locator("#drift-note .pill")).to_have_text("stable")
        # the alarm, acknowledged with a comment (the prompt above answers it)
        page.locator("#alarms button.ack").click()
        expect(page.locator("#alarms tbody")).to_contain_text("engineer")
        expect(page.locator("#alarms tbody")).to_contain_text("lens cleaned, scores back")
        # Phase I, frozen for Phase II
        page.goto(f"{base}/quality/st-1?chart=p&by=hour&estimate=1")
        page.wait_for_function("document.querySelector('#chart-main .main-svg') !== null")
        # leaving a point out (a click on it) re-estimates the limits without it
        before = page.eval_on_selector("#chart-main", "d => d.data[1].y[0]")
        page.eval_on_selector("#chart-main", "d => d.emit('plotly_click', {points: [{pointIndex: 2, curveNumber: 0}]})")
        expect(page.locator("#limits-note")).to_contain_text(f"estimated from {hours - 1} of {hours} points")
        assert "exclude=2" in page.url
        after = page.eval_on_selector("#chart-main", "d => d.data[1].y[0]")
        assert after != before
        assert page.eval_on_selector("#chart-main", "d => d.data[5].x.length") == 1  # drawn as excluded
        page.locator("#freeze").click()
        expect(page.locator("#limits-note")).to_contain_text("Froze version 1")
        page.goto(f"{base}/quality/st-1?chart=p&by=hour")
        expect(page.locator("#limits-note")).to_contain_text("frozen limits version 1, frozen by engineer")
        expect(page.locator("#limits-note")).to_contain_text(f"from {hours - 1} points")
        # a chart the data cannot make says why, in words
        page.goto(f"{base}/quality/st-1?chart=p&metric=score")
        expect(page.locator(".quality-error")).to_contain_text("score is charted on a variables chart")
        # the report of the latest shift, offered from the chart by shift
        page.goto(f"{base}/quality/st-1?chart=p&by=shift")
        page.wait_for_function("document.querySelector('#chart-main .main-svg') !== null")
        shift = page.input_value("#report-pick input[name=period]")
        assert shift == page.eval_on_selector("#chart-main", "d => d.data[0].x[d.data[0].x.length - 1]")
        with page.expect_download() as download:
            page.click("#report-pick button[value=pdf]")
        assert download.value.suggested_filename.endswith(".pdf")
        # the records page exports what its filters select
        page.goto(f"{base}/records?station=st-1&verdict=NG&lot=L01")
        expect(page.locator("#page-info")).to_contain_text("of")
        href = page.get_attribute("#export-csv", "href")
        assert href is not None and "lot=L01" in href and "verdict=NG" in href
        exported = page.request.get(base + href).text().lstrip("\ufeff").splitlines()
        assert len(exported) - 1 == sum(r.verdict == "NG" and r.lot == "L01" for r in records) > 0
        assert not errors, errors
        page.close()
    assert p.audit.entries(limit=2)[0]["action"] == "control-limits-frozen"
