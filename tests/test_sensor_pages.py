"""A sensor station hosted by the server: its measurements and latest analysis through the
API, and the sensor page in real Chromium (trends, the envelope spectrum with the
expected defect frequencies marked, the diagnosis)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from huoyan.core.recipe import Recipe, load_recipe
from huoyan.signals.detector import VibrationMonitor
from huoyan.store.accounts import Role
from serverkit import PASSWORD, live_server, make_platform_app
from signalkit import RATE, RPM, signal_windows, vibration
from test_browser import browser  # noqa: F401  (the Chromium fixture)

STATION = "spindle-1"


def sensor_recipe(folder: Path) -> Recipe:
    model = VibrationMonitor(window_s=0.25, hop_s=0.25, bearing="6205", rpm=RPM)
    model.fit(signal_windows(4.0, None, 0, length=0.25, hop=0.125))
    path = model.save(folder / "spindle.safetensors")
    recorded = folder / "recorded"
    recorded.mkdir()
    np.save(recorded / "a_healthy.npy", vibration(1.0, None, 5))
    np.save(recorded / "b_outer.npy", vibration(1.0, "outer_race", 6))
    recipe = folder / "spindle.yaml"
    recipe.write_text(
        f"station: {STATION}\nproduct: spindle\nrecipe: spindle-condition\nversion: '1'\nmodel: {path}\n"
        f"source: {{type: sensor_replay, path: {recorded}, sample_rate: {RATE}, speed: 20}}\n"
        f"storage: {{data_dir: {folder / 'data'}, keep_ok_every: 1}}\n"
    )
    return load_recipe(recipe)


@pytest.fixture
def hosted(tmp_path: Path) -> Iterator[tuple[object, object]]:
    app, _, keys = make_platform_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, [sensor_recipe(tmp_path)])
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        headers = keys.headers(Role.OPERATOR)
        while time.monotonic() < deadline:
            page = client.get(f"/api/inspections?station={STATION}", headers=headers).json()
            if page["total"] >= 8:
                break
            time.sleep(0.2)
        yield app, (client, headers)


def test_measurements_and_the_latest_analysis_through_the_api(hosted: tuple[object, object]) -> None:
    _, (client, headers) = hosted
    assert isinstance(client, TestClient) and isinstance(headers, dict)
    names = client.get(f"/api/measurements/names?station={STATION}", headers=headers).json()
    assert {"channel": "0", "name": "kurtosis"} in names
    series = client.get(f"/api/measurements?station={STATION}&name=kurtosis", headers=headers).json()
    points = series["points"]
    assert len(points) == 8 and [p["verdict"] for p in points] == ["OK"] * 4 + ["NG"] * 4  # oldest first
    assert min(p["value"] for p in points[4:]) > max(p["value"] for p in points[:4])
    newest = client.get(f"/api/measurements?station={STATION}&name=kurtosis&limit=2", headers=headers).json()
    assert [p["inspection_id"] for p in newest["points"]] == [p["inspection_id"] for p in points[-2:]]
    latest = client.get(f"/api/conditions/latest?station={STATION}", headers=headers).json()
    assert latest["diagnosis"] == "outer_race" and latest["verdict"] == "NG"
    body = latest["condition"]
    assert body["iso_limits"] == [0.71, 1.8, 4.5] and len(body["envelope"]) > 100
    outer = next(f for f in body["diagnosis"]["evidence"] if f["family"] == "outer_race")
    assert outer["lines"][0]["name"] == "1x BPFO"
    assert client.get("/api/conditions/latest?station=elsewhere", headers=headers).status_code == 404
    assert client.get(f"/api/measurements?station={STATION}&name=rms").status_code == 401


def test_the_sensor_page_draws_trends_and_the_marked_envelope_spectrum(
    browser: object,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    app, _, _ = make_platform_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, [sensor_recipe(tmp_path)])
    with live_server(app) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/login?next=/sensors/{STATION}")
        page.fill("input[name=username]", "operator")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{base}/sensors/{STATION}")
        expect(page.locator("#families .diagnosed")).to_have_text("outer_race", timeout=60_000)
        page.wait_for_function("document.querySelector('#envelope .main-svg') !== null")
        marked = page.eval_on_selector("#envelope", "d => d.layout.annotations.map(a => a.text)")
        assert "1x BPFO" in marked and "1x BPFI" in marked
        traces = page.eval_on_selector("#trend-kurtosis", "d => d.data.map(t => t.y.length)")
        assert sum(traces) == 8
        zones = page.eval_on_selector("#trend-velocity", "d => d.layout.shapes.map(s => s.y0)")
        assert zones == [0.71, 1.8, 4.5]
        expect(page.locator("#condition")).to_contain_text("outer_race")
        page.locator("#condition a").click()  # the window's record
        expect(page.locator("#fields")).to_contain_text("outer_race")
        expect(page.locator("#measured")).to_contain_text("kurtosis")
        expect(page.locator("#no-image")).to_contain_text("A window of a sensor channel")
        assert page.eval_on_selector("#overlay", "img => img.hidden")
        page.goto(f"{base}/sensors")
        expect(page.locator("#sensor-note")).to_contain_text("Choose a station")
        assert not errors, errors
        page.close()
