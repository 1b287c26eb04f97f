"""The dashboard in real headless Chromium (Debian's), driven by Playwright.

An operator logs in, watches a part dropped into the station's hot folder appear on
the live page, marks it a false alarm in the review queue, finds the review in the
records, and is refused the models page. A screenshot of the live view is kept as a
CI artifact in ``$HUOYAN_ARTIFACTS`` (default ``artifacts/``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from serverkit import PASSWORD, live_server, make_platform_app, png, write_recipe

CHROMIUM = os.environ.get("HUOYAN_CHROMIUM", "/usr/bin/chromium")
# As the machine notes say: no sandbox as root, and no background calls to a network we do not have.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("HUOYAN_ARTIFACTS", "artifacts"))


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM}; .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


def log_in(page: object, base: str, user: str) -> None:
    """Log in as ``user`` (one of serverkit's, one per role) and wait for the home page."""
    from playwright.sync_api import expect

    page.goto(f"{base}/login")  # type: ignore[attr-defined]
    page.fill("input[name=username]", user)  # type: ignore[attr-defined]
    page.fill("input[name=password]", PASSWORD)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    expect(page).to_have_url(f"{base}/stations/cell-1")  # type: ignore[arg-type]


def drop(inbox: Path, name: str, data: bytes) -> None:
    tmp = inbox / f".{name}.tmp"
    tmp.write_bytes(data)
    tmp.rename(inbox / name)


def signed_package(tmp_path: Path, model_file: Path) -> Path:
    """A package of the station's model signed by plant A, whose key the server trusts, as a .tar.gz."""
    import tarfile

    from huoyan.share.keys import Role, TrustStore, new_keypair
    from test_share_packages import make

    key, public = new_keypair("plant-a", tmp_path / "keys", b"correct horse battery staple")
    trust = TrustStore()
    trust.trust("plant-a", public.read_bytes(), [Role.PUBLISH_MODELS])
    trust.save(tmp_path / "data" / "trust.json")
    folder = make(tmp_path, key, model_file)
    archive = tmp_path / "washer-top-v1.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(folder, arcname=folder.name)
    return archive


def test_operator_sees_part_live_reviews_it_and_cannot_reach_models(
    browser: object, model_file: Path, tmp_path: Path, defect_sample: tuple[object, object]
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    recipe = write_recipe(tmp_path, "cell-1", model_file, str(inbox))
    app, _, _ = make_platform_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, [recipe])
    with live_server(app) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        missing: list[str] = []  # every request the pages make is answered (the favicon too)
        page.on("response", lambda r: missing.append(r.url) if r.status == 404 and "999999" not in r.url else None)

        page.goto(f"{base}/stations/cell-1")
        expect(page).to_have_url(f"{base}/login?next=/stations/cell-1")
        page.fill("input[name=username]", "operator")
        page.fill("input[name=password]", "wrong password")
        page.click("button[type=submit]")
        expect(page.locator("#login-error")).to_contain_text("Wrong")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{base}/stations/cell-1")
        expect(page.locator("#state")).to_have_text("running")

        drop(inbox, "D42_part.png", png(defect_sample[0]))  # type: ignore[arg-type]
        expect(page.locator("#recent li").first).to_contain_text("D42", timeout=20_000)
        expect(page.locator("#verdict")).to_have_text("NG")
        expect(page.locator("#count-ng")).to_have_text("1")
        assert page.eval_on_selector("#preview", "img => img.src.startsWith('data:image/jpeg') && img.naturalWidth > 0")
        page.wait_for_function("document.querySelector('#ng-chart .main-svg') !== null")  # plotly drew the chart
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "live-view.png"), full_page=True)

        page.goto(f"{base}/review")
        card = page.locator(".review-item", has_text="D42")
        expect(card).to_have_count(1)
        card.locator("button.false-alarm").click()
        expect(page.locator(".review-item", has_text="D42")).to_have_count(0)

        page.goto(f"{base}/records")
        row = page.locator("#records tbody tr", has_text="D42")
        expect(row.locator(".review")).to_have_text("false alarm · operator")
        row.locator("a").click()
        expect(page.locator("#verdict")).to_have_text("NG")
        expect(page.locator("#reviews li")).to_contain_text("false alarm")
        page.wait_for_function("document.querySelector('#overlay').naturalWidth > 0")
        # The part as the camera took it, then zoomed to twice its size (#18).
        page.click("#show-raw")
        expect(page.locator("#show-raw")).to_have_attribute("aria-pressed", "true")
        page.wait_for_function(
            "(i => i.src.endsWith('/image') && i.complete && i.naturalWidth > 0)(document.querySelector('#overlay'))"
        )
        page.select_option("#zoom", "2")
        page.wait_for_function(
            "(i => i.getBoundingClientRect().width === 2 * i.naturalWidth)(document.querySelector('#overlay'))"
        )
        page.click("#show-overlay")
        page.wait_for_function("document.querySelector('#overlay').src.endsWith('/overlay')")

        # A part the station could not read: its record says so instead of showing a broken image (#18).
        drop(inbox, "BAD1_part.png", b"\x89PNG\r\n\x1a\n not really")
        bad = page.locator("#records tbody tr", has_text="BAD1")
        for _ in range(60):  # until the station has stored it (the records page shows what is stored)
            page.goto(f"{base}/records?verdict=ERROR")
            page.wait_for_function("document.querySelector('#page-info').textContent !== ''")
            if bad.count():
                break
            page.wait_for_timeout(500)
        page.select_option("#filters select[name=verdict]", "NG")
        page.click("#filters button[type=submit]")
        expect(page).to_have_url(f"{base}/records?verdict=NG")  # a filtered view can be bookmarked (#18)
        expect(page.locator("#totals")).to_contain_text("1 record: 0 OK · 1 NG · 0 ERROR")
        page.click("#records th[data-sort=score] button")  # sorted by score, highest first, in the address too
        expect(page).to_have_url(f"{base}/records?verdict=NG&sort=-score")
        expect(page.locator("#records th[data-sort=score]")).to_have_attribute("aria-sort", "descending")
        page.goto(f"{base}/records?verdict=ERROR")
        bad.locator("a").click()
        expect(page.locator("#verdict")).to_have_text("ERROR")
        expect(page.locator("#no-image")).to_contain_text("cannot be shown as an image")
        assert page.eval_on_selector("#overlay", "img => img.hidden")
        page.goto(f"{base}/records/999999")
        expect(page.locator("#error-detail")).to_contain_text("no inspection 999999")

        response = page.goto(f"{base}/models")
        assert response is not None and response.status == 403
        expect(page.locator("#error-detail")).to_contain_text("engineer role")

        # An engineer sets the station's threshold on the models page, then returns to the calibrated one.
        page.goto(f"{base}/records")
        page.click("#logout")
        expect(page).to_have_url(f"{base}/login")
        log_in(page, base, "engineer")  # home is the first station's live view
        # Each engineering action asks why (#18): the reason goes to the audit trail.
        dialogs: list[tuple[str, str]] = []

        def answer(d: object) -> None:
            dialogs.append((d.type, d.message))  # type: ignore[attr-defined]
            d.accept("trial of a tighter threshold") if d.type == "prompt" else d.dismiss()  # type: ignore[attr-defined]

        page.on("dialog", answer)
        page.goto(f"{base}/models")
        section = page.locator(".model-station[data-station=cell-1]")
        expect(section.locator(".versions tbody tr")).to_have_count(1)
        expect(section.locator(".thr-source")).to_have_text("(calibrated)")
        section.locator(".thr-input").fill("0.5")
        # Before it is set, what it would have done to the recent parts (D42, NG, scored far above 0.5).
        expect(section.locator(".thr-preview")).to_contain_text("Of the last 1 parts, 1 would be NG instead of 1")
        section.locator(".thr-set").click()
        expect(section.locator(".thr-source")).to_have_text("(set on the line)")
        expect(section.locator(".thr-value")).to_have_text("0.5000")
        section.locator(".thr-reset").click()
        expect(section.locator(".thr-source")).to_have_text("(calibrated)")

        # #18: what an engineer is offered and told on the models page, with no browser alert().
        expect(section.locator("button.rollback")).to_be_hidden()  # one version: no parent to go back to
        section.locator(".thr-input").fill("-1")
        section.locator(".thr-set").click()
        expect(section.locator(".thr-error")).to_contain_text("raw score above 0")
        expect(section.locator(".thr-source")).to_have_text("(calibrated)")
        section.locator(".thr-input").fill("0.7")
        section.locator(".thr-set").click()
        expect(section.locator(".thr-value")).to_have_text("0.7000")
        expect(section.locator(".thr-error")).to_be_hidden()  # the earlier error is gone after a success
        expect(section.locator(".thr-input")).to_have_value("")  # the field no longer shows a stale value
        section.locator(".thr-reset").click()
        expect(section.locator(".thr-source")).to_have_text("(calibrated)")
        # #21: pausing a station asks why too; the button then offers to resume it.
        section.locator("button.pause").click()
        expect(section.locator("button.pause")).to_have_text("Resume the station")
        assert any(message.startswith("Pause cell-1") for _, message in dialogs)
        section.locator("button.pause").click()
        expect(section.locator("button.pause")).to_have_text("Pause the station")
        assert {kind for kind, _ in dialogs} == {"prompt"}  # asked why each time, never an alert
        # ... and imports a package plant A signed: verified, its model a candidate version.
        page.set_input_files("#import-package input[type=file]", str(signed_package(tmp_path, model_file)))
        page.select_option("#import-package select[name=station]", "cell-1")
        page.click("#import-package button[type=submit]")
        expect(page.locator("#package-done")).to_contain_text("candidate version v2 of cell-1")
        expect(section.locator(".versions tbody")).to_contain_text("package washer-top v1 from plant-a")
        expect(page.locator("#packages tbody tr")).to_have_count(1)
        page.click("#import-package button[type=submit]")  # no file chosen: said in words
        expect(page.locator("#package-error")).to_contain_text("Choose the package archive")
        assert any("set the threshold to 0.7" in message for _, message in dialogs)
        assert any("0 OK would turn NG, 0 NG would turn OK" in message for _, message in dialogs)

        # An administrator's mistake is said in words, and forgotten after the next success.
        page.click("#logout")
        expect(page).to_have_url(f"{base}/login")
        log_in(page, base, "admin")
        page.goto(f"{base}/admin")
        form = page.locator("#new-user")
        form.locator("input[name=username]").fill("li/gong")
        form.locator("input[name=password]").fill("a long password")
        form.locator("button[type=submit]").click()
        error = page.locator("#user-error")
        expect(error).to_contain_text("username: a user name is 1-100 letters or digits (any script)")
        assert not error.inner_text().lstrip().startswith(("[", "{"))
        form.locator("input[name=username]").fill("李 工")  # a Chinese name, with its space
        form.locator("input[name=password]").fill("a long password")
        form.locator("button[type=submit]").click()
        expect(page.locator("#users tbody")).to_contain_text("李 工")
        expect(error).to_be_hidden()
        # ... and named as the shift knows him, in any script (#18).
        name = page.locator("#users tbody tr", has_text="李 工").locator("input.display-name")
        name.fill("李师傅（B 班）")
        name.press("Tab")  # the change is kept when the field is left
        page.wait_for_load_state("networkidle")
        page.reload()
        expect(page.locator("#users tbody tr", has_text="李 工").locator("input.display-name")).to_have_value(
            "李师傅（B 班）"
        )
        expect(page.locator("#who")).to_have_text("admin")  # the admin has none: the user name
        expect(page.locator("#audit tbody")).to_contain_text("trial of a tighter threshold")
        # The administrator checks the record and review chains on request.
        page.locator("#verify-chains button[type=submit]").click()
        expect(page.locator("#chains-state")).to_have_text("intact")
        expect(page.locator("#chains tbody")).to_contain_text("cell-1")
        expect(page.locator("#chains tbody tr")).to_have_count(2)  # cell-1's records and reviews
        assert not errors, errors
        assert not missing, missing
        page.close()


def test_live_view_holds_the_last_ng_counts_the_shift_and_takes_alarm_acknowledgements(
    browser: object, model_file: Path, tmp_path: Path, defect_sample: tuple[object, object], line_dir: Path
) -> None:
    """#18: an operator reads the shift's counts and yield, sees the last NG held with a
    strip of the recent ones (each opening its record), resets the counters (audited) and
    acknowledges a raised alarm, all on the live view."""
    from datetime import UTC, datetime

    from playwright.sync_api import Browser, expect
    from sqlalchemy.orm import Session

    from huoyan.store.records import query_events
    from huoyan.store.schema import EventRow
    from huoyan.vision.imageio import list_images, read_image

    assert isinstance(browser, Browser)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    recipe = write_recipe(tmp_path, "cell-1", model_file, str(inbox))
    app, p, _ = make_platform_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, [recipe])
    good = read_image(list_images(line_dir / "train" / "good")[0])
    with live_server(app) as base:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        reasons = iter(["start of shift B", "cleared the jam at the feeder"])
        page.on("dialog", lambda d: d.accept(next(reasons)))
        log_in(page, base, "operator")
        expect(page.locator("#state")).to_have_text("running")
        expect(page.locator("#no-ng")).to_be_visible()

        drop(inbox, "G1_part.png", png(good))  # type: ignore[arg-type]
        drop(inbox, "D7_part.png", png(defect_sample[0]))  # type: ignore[arg-type]
        drop(inbox, "D8_part.png", png(defect_sample[0]))  # type: ignore[arg-type]
        expect(page.locator("#shift-ng")).to_have_text("2", timeout=20_000)
        expect(page.locator("#shift-ok")).to_have_text("1")
        expect(page.locator("#shift-yield")).to_have_text("33.3%")
        expect(page.locator("#last-ng-part")).to_contain_text("D8")
        page.wait_for_function(
            "!document.querySelector('#last-ng').hidden && document.querySelector('#last-ng').naturalWidth > 0"
        )
        expect(page.locator("#ng-strip li")).to_have_count(2, timeout=10_000)
        page.locator("#ng-strip li a").first.click()  # the newest NG part's record
        expect(page.locator("#verdict")).to_have_text("NG")
        page.go_back()

        page.click("#shift-reset")
        expect(page.locator("#shift-ng")).to_have_text("0")
        expect(page.locator("#shift-yield")).to_have_text("—")
        expect(page.locator("#shift-since")).to_contain_text("reset by operator")
        reset = [e for e in p.audit.entries(limit=20) if e["action"] == "counters-reset"]
        assert reset and reset[0]["detail"]["counts"]["NG"] == 2 and reset[0]["detail"]["reason"] == "start of shift B"

        with Session(p.engine) as s, s.begin():
            s.add(EventRow(station_id="cell-1", at=datetime.now(UTC), kind="feeder", severity="alarm",
                           message="parts jammed at the feeder", active=True))  # fmt: skip
        page.reload()
        item = page.locator("#open-alarms li", has_text="parts jammed")
        expect(item).to_have_count(1)
        item.locator("button.ack").click()
        expect(page.locator("#alarm-list")).to_be_hidden()
        events = query_events(p.engine, "cell-1")
        assert [(e["acknowledged_by"], e["ack_comment"]) for e in events] == [
            ("operator", "cleared the jam at the feeder")
        ]

        # 中文: the operator switches the language; the page, its script's texts and the menu follow.
        page.select_option("#language", "zh-CN")
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        expect(page.locator("header nav")).to_contain_text("记录")
        expect(page.locator("#state")).to_have_text("运行中")  # written by the script, from the catalogue
        expect(page.locator("#shift-reset")).to_have_text("班次计数清零")
        expect(page.locator("#shift-since")).to_contain_text("由 operator 清零")
        page.goto(f"{base}/records")  # the choice is the user's: every page, until changed
        expect(page.locator("h1")).to_have_text("记录")
        expect(page.locator("#totals")).to_contain_text("条记录")
        page.select_option("#language", "")  # back to the browser's language (English here)
        expect(page.locator("h1")).to_have_text("Records")
        assert not errors, errors
        page.close()


@pytest.mark.parametrize("width", [768, 1366])
def test_pages_fit_the_screen_without_sideways_scrolling_and_every_input_is_labelled(
    browser: object, model_file: Path, tmp_path: Path, width: int
) -> None:
    """#18: usable on a 768 px panel and at 1366×768 (Admin overflowed); every form field
    has a label a screen reader can say."""
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    recipe = write_recipe(tmp_path, "cell-1", model_file, "http")
    app, _, _ = make_platform_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, [recipe])
    with live_server(app) as base:
        page = browser.new_page(viewport={"width": width, "height": 768})
        log_in(page, base, "admin")
        for path in ["/stations/cell-1", "/stations", "/records", "/review", "/reinspections", "/models", "/admin",
                     "/quality/cell-1"]:  # fmt: skip
            page.goto(f"{base}{path}")
            page.wait_for_load_state("networkidle")
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{path} at {width} px scrolls sideways by {overflow} px"
            unlabelled = page.evaluate(
                """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                   .filter((e) => !e.labels?.length && !e.getAttribute('aria-label') && !e.closest('label'))
                   .map((e) => e.name || e.id || e.outerHTML.slice(0, 60))"""
            )
            assert not unlabelled, f"{path}: fields without a label: {unlabelled}"
        page.close()


def test_engineer_keeps_defect_types_and_a_reviewer_picks_from_them_for_many_parts_at_once(
    browser: object, model_file: Path, tmp_path: Path, defect_sample: tuple[object, object]
) -> None:
    """#18: the product's defect-type catalogue (models page), picked from a list when a
    part is reviewed, and bulk review of the parts selected on the records page."""
    import httpx
    from playwright.sync_api import Browser, expect

    from huoyan.store.accounts import Role

    assert isinstance(browser, Browser)
    recipe = write_recipe(tmp_path, "cell-1", model_file, "http")
    app, _, keys = make_platform_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, [recipe])
    with live_server(app) as base:
        for i in range(3):
            httpx.post(f"{base}/api/stations/cell-1/inspect", files={"image": (f"D{i}.png", png(defect_sample[0]))},
                       headers=keys.headers(Role.OPERATOR), timeout=60).raise_for_status()  # type: ignore[arg-type]  # fmt: skip
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        log_in(page, base, "engineer")
        page.goto(f"{base}/models")
        section = page.locator(".model-station[data-station=cell-1]")
        expect(section.locator(".types-product")).to_have_text("washer")
        section.locator(".types-input").fill("burr\ndent\n划痕")
        section.locator(".types-save").click()
        expect(section.locator(".types-error")).to_be_hidden()

        page.goto(f"{base}/records")
        expect(page.locator("#records tbody tr")).to_have_count(3)
        page.locator("#records tbody tr input.pick").nth(0).check()
        page.locator("#records tbody tr input.pick").nth(1).check()
        page.select_option("#bulk-review select[name=outcome]", "defect")
        page.fill("#bulk-review input[name=label]", "burr")
        page.click("#bulk-review button[type=submit]")
        expect(page.locator("#bulk-result")).to_have_text("Reviewed 2 parts.")
        expect(page.locator("#records tbody .review", has_text="defect (burr)")).to_have_count(2)

        page.goto(f"{base}/review")  # the third part: its type is picked from the product's list
        card = page.locator(".review-item")
        expect(card).to_have_count(1)
        pick = card.locator("select.label-input")
        expect(pick.locator("option")).to_have_text(["defect type…", "burr", "dent", "划痕"])
        pick.select_option("划痕")
        card.locator("button.confirm").click()
        expect(page.locator(".review-item")).to_have_count(0)
        assert not errors, errors
        page.close()


CONTRAST = """() => {
  // WCAG 2 contrast of each visible text against the first opaque background behind it.
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (node) => {
    for (let n = node; n; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const poor = [];
  for (const node of document.querySelectorAll("body *")) {
    const own = [...node.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim());
    const style = getComputedStyle(node);
    if (!own || style.visibility === "hidden" || !node.getClientRects().length) continue;
    const fg = rgb(style.color), bg = background(node);
    let opacity = 1;
    for (let n = node; n; n = n.parentElement) opacity *= Number(getComputedStyle(n).opacity);
    const shown = fg.slice(0, 3).map((v, i) => v * opacity + bg[i] * (1 - opacity));
    const [a, b] = [lum(shown), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const what = `${node.tagName.toLowerCase()}.${node.className}`;
    if (ratio < 4.5) poor.push(`${what}: ${ratio.toFixed(2)} "${node.textContent.trim().slice(0, 30)}"`);
  }
  return poor;
}"""


def test_text_is_readable_against_its_background_on_every_page(
    browser: object, model_file: Path, tmp_path: Path, defect_sample: tuple[object, object]
) -> None:
    """#18: every text on the pages has a contrast of at least 4.5:1 (WCAG AA) with what is behind it."""
    import httpx
    from playwright.sync_api import Browser

    from huoyan.store.accounts import Role

    assert isinstance(browser, Browser)
    recipe = write_recipe(tmp_path, "cell-1", model_file, "http")
    app, _, keys = make_platform_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, [recipe])
    with live_server(app) as base:
        httpx.post(f"{base}/api/stations/cell-1/inspect", files={"image": ("D1.png", png(defect_sample[0]))},
                   headers=keys.headers(Role.OPERATOR), timeout=60).raise_for_status()  # type: ignore[arg-type]  # fmt: skip
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.goto(f"{base}/login")
        assert page.evaluate(CONTRAST) == []
        log_in(page, base, "admin")
        for path in ["/stations/cell-1", "/stations", "/records", "/records/1", "/review", "/reinspections",
                     "/models", "/admin", "/quality/cell-1", "/sensors"]:  # fmt: skip
            page.goto(f"{base}{path}")
            page.wait_for_load_state("networkidle")
            assert page.evaluate(CONTRAST) == [], path
        page.close()


def test_a_re_inspection_run_shows_which_parts_would_change_verdict(
    browser: object, model_file: Path, tmp_path: Path, defect_sample: tuple[object, object]
) -> None:
    """#21: the Re-inspections page lists each run and, opened, its verdict table and the
    parts whose verdict would change, each linked to its original record."""
    import httpx
    from playwright.sync_api import Browser, expect

    from huoyan.store.accounts import Role
    from huoyan.store.reinspections import open_run, store_results

    assert isinstance(browser, Browser)
    recipe = write_recipe(tmp_path, "cell-1", model_file, "http")
    app, p, keys = make_platform_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, [recipe])
    with live_server(app) as base:
        part = httpx.post(f"{base}/api/stations/cell-1/inspect", files={"image": ("D1.png", png(defect_sample[0]))},
                          headers=keys.headers(Role.OPERATOR), timeout=60).json()  # fmt: skip
        run = open_run(p.engine, "march-archive", ("a" * 64, "washer-v2.safetensors"), 1.5, ("washer-top", "1"),
                       {"records": {"station": "cell-1"}}, 2, "engineer")  # fmt: skip
        store_results(p.engine, run.id, [
            {"item": part["key"], "inspection_id": part["id"], "source_name": "D1.png", "verdict": "OK",
             "score": 1.2, "regions": 0, "original_verdict": part["verdict"], "original_score": part["score"]},
            {"item": "other", "source_name": "G7.png", "verdict": "OK", "score": 0.4, "regions": 0,
             "original_verdict": "OK", "original_score": 0.5},
        ])  # fmt: skip
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        log_in(page, base, "operator")
        page.goto(f"{base}/reinspections")
        row = page.locator("#runs tbody tr")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("washer-v2.safetensors")
        expect(row).to_contain_text("2 / 2")
        page.get_by_role("button", name="march-archive").click()
        expect(page.locator("#run-name")).to_have_text("Run march-archive")
        expect(page.locator("#verdict-table tbody tr")).to_have_count(2)
        changed = page.locator("#changed tbody tr")
        expect(changed).to_have_count(1)  # the NG part now OK; the OK part that stayed OK is not listed
        changed.get_by_role("link", name="D1.png").click()
        page.wait_for_url(f"{base}/records/{part['id']}")
        page.close()


def test_an_admin_makes_a_key_for_one_line_pc_and_sees_its_stations(
    browser: object, model_file: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    recipe = write_recipe(tmp_path, "cell-1", model_file, "http")
    app, _, _ = make_platform_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, [recipe])
    with live_server(app) as base:
        page = browser.new_page()
        log_in(page, base, "admin")
        page.goto(f"{base}/admin")
        form = page.locator("#new-key")
        form.locator("input[name=username]").fill("engineer")
        form.locator("input[name=name]").fill("line 3 PC")
        form.locator("input[value=upload]").uncheck()
        form.locator("input[value=station]").check()
        form.locator("input[name=stations]").fill("line3-a, line3-b")
        form.locator("button[type=submit]").click()
        expect(page.locator("#new-key-value")).to_contain_text("hy_")
        row = page.locator("#keys tbody tr", has_text="line 3 PC")
        expect(row).to_contain_text("line3-a, line3-b")
        # Reading is not limited by station: the form says so instead of making a half-limited key.
        form.locator("input[name=name]").fill("reader")
        form.locator("input[value=read]").check()
        form.locator("button[type=submit]").click()
        expect(page.locator("#key-error")).to_contain_text("read")
        expect(page.locator("#keys tbody tr", has_text="reader")).to_have_count(0)
        page.close()
