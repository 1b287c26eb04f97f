"""The dashboard in Chinese and English: the catalogue covers every message of the pages
and their scripts, the language follows the user's choice or the browser, and pages
render in it (the browser test drives the switch in Chromium)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from huoyan.server import i18n
from huoyan.server.platform import Platform
from huoyan.store.accounts import Role as UserRole
from serverkit import Keys

SERVER = Path(i18n.__file__).parent
# Messages whose id the code picks at run time (t(key)): states, statuses, roles, drift levels.
CHOSEN_AT_RUN_TIME = {"paused", "running", "stopped", "candidate", "active", "retired", "stable", "watch", "drift"}


def extracted() -> dict[str, str]:
    """msgid -> the file it comes from, for every message the templates, scripts and page code use."""
    found: dict[str, str] = {}

    def add(messages: object, where: str) -> None:
        for _, message, _, _ in messages:  # type: ignore[attr-defined]
            found.setdefault(message[0] if isinstance(message, tuple) else message, where)

    for f in sorted((SERVER / "templates").glob("*.html")):
        add(extract_from_file("jinja2.ext:babel_extract", str(f), keywords={"_": None}), f.name)
    for f in sorted((SERVER / "static").glob("*.js")):
        add(extract_from_file("javascript", str(f), keywords={"t": None}), f.name)
    add(extract_from_file("python", str(SERVER / "routes" / "pages.py"), keywords={"_": None}), "pages.py")
    # What the server says in its answers (core.text.Message), wherever the text is raised.
    for f in sorted(SERVER.parent.rglob("*.py")):
        add(extract_from_file("python", str(f), keywords={"Message": None, "N_": None}), f.name)
    return found


def catalogue() -> dict[str, str]:
    with (i18n.LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return {m.id: m.string for m in read_po(f) if m.id}


def test_every_message_of_the_pages_and_scripts_has_its_chinese_translation() -> None:
    used, zh = extracted(), catalogue()
    assert len(used) > 250  # the extraction found the pages' texts, not nothing
    missing = {m: where for m, where in used.items() if not zh.get(m)}
    assert not missing, f"messages without a Chinese translation: {missing}"
    assert not CHOSEN_AT_RUN_TIME - set(zh)
    placeholders = re.compile(r"\{(\w+)\}")
    wrong = {m: s for m, s in zh.items() if set(placeholders.findall(m)) != set(placeholders.findall(s))}
    assert not wrong, f"translations whose {{placeholders}} differ from the message's: {wrong}"
    stale = (
        set(zh)
        - set(used)
        - CHOSEN_AT_RUN_TIME
        - {
            "{total} record: {ok} OK · {ng} NG · {error} ERROR · yield {yield}%",
            "{recent} OK scores against the model's calibration ({size} good parts)",
        }
    )
    assert not stale, f"translations of messages no page uses any more: {stale}"


@pytest.mark.parametrize(
    ("saved", "accept", "language"),
    [
        (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        (None, "zh", "zh-CN"),
        (None, "zh-Hans-CN", "zh-CN"),
        (None, "zh-TW,en;q=0.5", "en"),  # traditional Chinese is not offered: the next choice
        (None, "fr-FR, de;q=0.5", "en"),
        (None, "", "en"),
        (None, "x-klingon;;q=;,", "en"),
        ("en", "zh-CN", "en"),  # the user's own choice wins over the browser's
        ("zh-CN", "en-US", "zh-CN"),
        ("xx", "zh-CN", "zh-CN"),
    ],
)
def test_the_language_is_the_users_choice_else_the_browsers_else_english(
    saved: str | None, accept: str, language: str
) -> None:
    assert i18n.choose(saved, accept) == language


def test_pages_render_in_the_users_language_and_the_browsers_by_default(
    served: tuple[TestClient, Platform, Keys],
) -> None:
    from serverkit import PASSWORD

    client, p, _ = served
    login = client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert '<html lang="zh-CN">' in login.text and "登录" in login.text
    assert ">Log in<" in client.get("/login", headers={"Accept-Language": "en-GB"}).text
    client.post("/api/session", json={"username": "operator", "password": PASSWORD})
    csrf = client.get("/api/me").json()["csrf_token"]
    english = client.get("/records", headers={"Accept-Language": "en"})
    assert ">Records<" in english.text and '"Records"' not in english.text.split('id="messages"')[1][:50]
    chosen = client.put("/api/me/language", json={"language": "zh-CN"}, headers={"X-CSRF-Token": csrf})
    assert chosen.status_code == 200 and chosen.json()["language"] == "zh-CN"
    page = client.get("/records", headers={"Accept-Language": "en"})  # the choice wins over the browser
    assert '<html lang="zh-CN">' in page.text and "<h1>记录</h1>" in page.text and "筛选" in page.text
    carried = re.search(r'<script id="messages" type="application/json">(.*?)</script>', page.text, re.S)
    assert (
        carried and json.loads(carried.group(1))["Wrong user or password."] == "用户名或密码错误。"
    )  # the scripts' own
    assert p.accounts.get("operator").language == "zh-CN"  # type: ignore[union-attr]
    assert client.put("/api/me/language", json={"language": "fr"}, headers={"X-CSRF-Token": csrf}).status_code == 422
    client.put("/api/me/language", json={"language": None}, headers={"X-CSRF-Token": csrf})
    assert ">Records<" in client.get("/records", headers={"Accept-Language": "en"}).text


def test_the_servers_answers_are_said_in_the_readers_language(served: tuple[TestClient, Platform, Keys]) -> None:
    from serverkit import PASSWORD

    client, _, keys = served
    zh = {"Accept-Language": "zh-CN"}
    missing = client.get("/api/inspections/999999", headers={**keys.headers(UserRole.OPERATOR), **zh})
    assert missing.status_code == 404 and missing.json()["detail"] == "未找到检测 999999"
    english = client.get("/api/inspections/999999", headers=keys.headers(UserRole.OPERATOR))
    assert english.json()["detail"] == "no inspection 999999"  # the same answer, for a reader of English
    assert client.get("/api/stations", headers=zh).json()["detail"] == "请登录或提供 API 密钥"
    client.post("/api/session", json={"username": "operator", "password": PASSWORD})
    csrf = client.get("/api/me").json()["csrf_token"]
    client.put("/api/me/language", json={"language": "zh-CN"}, headers={"X-CSRF-Token": csrf})
    page = client.get("/models", headers={"Accept-Language": "en"})  # the user's choice wins
    assert page.status_code == 403 and "此操作需要工程师角色；您是操作员" in page.text
    assert "页面不存在" in client.get("/no/such/page").text


def test_a_refused_review_says_why_in_the_readers_language_alone_or_in_a_batch(
    served: tuple[TestClient, Platform, Keys], line_dir: Path
) -> None:
    from serverkit import png
    from test_server_api import good_images, upload

    client, _, keys = served
    ok = upload(client, keys, png(good_images(line_dir)[0]), "G0.png")
    wrong = client.post(
        f"/api/inspections/{ok['id']}/reviews", json={"outcome": "false_alarm"},
        headers={**keys.headers(UserRole.OPERATOR), "Accept-Language": "zh-CN"},
    )  # fmt: skip
    assert wrong.status_code == 409 and wrong.json()["detail"].startswith("OK 零件只能复核为")
    bulk = client.post(
        "/api/reviews/bulk", json={"inspection_ids": [ok["id"], 999999], "outcome": "false_alarm"},
        headers={**keys.headers(UserRole.OPERATOR), "Accept-Language": "zh-CN"},
    ).json()  # fmt: skip
    first, second = bulk["refused"]
    assert first["reason"].startswith("OK 零件只能复核为") and second["reason"] == "未找到检测 999999"


def test_a_form_field_refused_by_our_own_rule_is_said_in_the_readers_language(
    served: tuple[TestClient, Platform, Keys],
) -> None:
    client, _, keys = served
    body = {"username": "li/gong", "password": "a long password", "role": "operator"}
    zh = client.post("/api/users", json=body, headers={**keys.headers(UserRole.ADMIN), "Accept-Language": "zh-CN"})
    assert zh.status_code == 422
    (error,) = zh.json()["detail"]
    assert error["loc"] == ["body", "username"] and error["msg"].startswith("用户名为 1–100 个字母或数字")
    en = client.post("/api/users", json=body, headers=keys.headers(UserRole.ADMIN)).json()["detail"][0]
    assert "letters or digits (any script)" in en["msg"]
    short = client.post("/api/users", json={**body, "username": "li", "password": "short"},
                        headers={**keys.headers(UserRole.ADMIN), "Accept-Language": "zh-CN"})  # fmt: skip
    assert short.status_code == 422 and all(not e["msg"].isascii() for e in short.json()["detail"])


def test_pydantic_validation_and_quality_errors_are_said_in_the_readers_language(
    served: tuple[TestClient, Platform, Keys],
) -> None:
    client, _, keys = served
    zh = {**keys.headers(UserRole.ADMIN), "Accept-Language": "zh-CN"}
    body = {"username": "li", "password": "short", "role": "operator"}
    (error,) = client.post("/api/users", json=body, headers=zh).json()["detail"]
    assert error["loc"] == ["body", "password"] and error["msg"].startswith("字符串至少应有 ")
    en = client.post("/api/users", json=body, headers=keys.headers(UserRole.ADMIN)).json()["detail"][0]
    assert en["msg"].startswith("String should have at least")  # pydantic's own text for English readers
    missing = client.post("/api/users", json={"username": "li"}, headers=zh).json()["detail"]
    assert {e["msg"] for e in missing} == {"此字段必填"}
    chart = {"station": "st-1", "chart": "p", "metric": "score"}
    wrong = client.get("/api/quality/charts", params=chart, headers=zh)
    assert wrong.status_code == 422 and wrong.json()["detail"] == "score 应绘制在计量型控制图上，而不是 p 图"
