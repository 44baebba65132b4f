"""The console in a real browser: Debian's chromium driven by Playwright, app under uvicorn.

The agency manager signs in, switches to the tea brand, creates a store and a guide assigned
to it, and finds both on the org tree and staff pages — once in Chinese, once in English.
The rule builder updates its live count while a rule is typed.
A screenshot of the org page lands in ``test-artifacts/browser/`` (git-ignored).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parents[1] / "test-artifacts" / "browser"

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TEXT = {
    "zh-CN": {
        "sign_in": "登录",
        "overview": "概览",
        "org": "组织架构",
        "staff": "员工与角色",
        "create_unit": "创建组织",
        "unit_created": "组织 T-S02 已创建",
        "create_staff": "创建员工",
        "staff_created": "员工 t.kerry 已保存",
        "store": "门店",
        "guide": "导购",
        "own": "本人",
        "store_name": "嘉里中心店",
        "guide_name": "陈静",
    },
    "en": {
        "sign_in": "Sign in",
        "overview": "Overview",
        "org": "Org tree",
        "staff": "Staff & roles",
        "create_unit": "Create unit",
        "unit_created": "Org unit T-S02 created",
        "create_staff": "Create staff member",
        "staff_created": "Staff member t.kerry saved",
        "store": "Store",
        "guide": "Guide",
        "own": "Own",
        "store_name": "Kerry Centre",
        "guide_name": "Jing Chen",
    },
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def live_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The real app on a loopback port, over a migrated SQLite file holding the test cast."""
    import uvicorn

    from siyu.core.db import dispose_engines, make_engine, open_session, session_factory
    from siyu.core.settings import reset_settings
    from siyu.migrations import upgrade
    from siyu.server import create_app
    from tests.factories import build_world

    url = f"sqlite:///{tmp_path / 'browser.db'}"
    monkeypatch.setenv("SIYU_DATABASE_URL", url)
    reset_settings()
    upgrade(url)
    dispose_engines()
    engine = make_engine(url)
    with open_session(engine) as db:
        build_world(db)
    app = create_app()
    app.state.session_factory = session_factory(engine)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    engine.dispose()


@pytest.fixture
def browser_page() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1440, "height": 960})
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        context.close()
        browser.close()


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_agency_manager_builds_a_store_with_a_guide(
    live_server: str, browser_page: Any, lang: str
) -> None:
    from playwright.sync_api import expect

    page, text = browser_page, TEXT[lang]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # sign in, in the chosen language
    page.goto(f"{live_server}/login?lang={lang}")
    expect(page.locator("html")).to_have_attribute("lang", lang)
    page.fill("#username", "a.am")
    page.fill("#password", "password123")
    page.get_by_role("button", name=text["sign_in"]).click()
    expect(page.get_by_role("heading", name=text["overview"], exact=True)).to_be_visible()
    expect(page.locator(".chart svg")).to_be_visible()  # ECharts rendered

    # switch brand through the top-bar switcher
    page.select_option("#brand-select", "a-tea")
    expect(page.locator(".brand-card .brand-name")).to_have_text("A 茶饮")
    expect(page.get_by_role("heading", name=text["org"], exact=True)).to_be_visible()
    expect(page).to_have_url(f"{live_server}/b/a-tea/org")

    # create a store under the tea HQ
    page.fill("#unit-code", "T-S02")
    page.fill("#unit-name", text["store_name"])
    page.select_option("#unit-kind", "store")
    page.select_option("#unit-parent", "T-HQ")
    page.get_by_role("button", name=text["create_unit"]).click()
    expect(page.get_by_text(text["unit_created"])).to_be_visible()
    store = page.locator('li[data-code="T-S02"]')
    expect(store.locator(".node-name")).to_have_text(text["store_name"])
    expect(store.locator(".kind").first).to_have_text(text["store"])

    # create a guide assigned to that store
    page.get_by_role("link", name=text["staff"], exact=True).click()
    page.fill("#staff-name", text["guide_name"])
    page.fill("#staff-username", "t.kerry")
    page.select_option("#staff-role", "guide")
    page.select_option("#staff-unit", "T-S02")
    page.fill("#staff-password", "kerry-password-1")
    page.get_by_role("button", name=text["create_staff"]).click()
    expect(page.get_by_text(text["staff_created"])).to_be_visible()
    row = page.locator('tr[data-username="t.kerry"]')
    expect(row).to_contain_text(text["guide_name"])
    expect(row).to_contain_text(text["guide"])
    expect(row).to_contain_text(text["own"])
    expect(row).to_contain_text(text["store_name"])

    # the guide appears under the new store in the tree
    page.get_by_role("link", name=text["org"], exact=True).click()
    person = page.locator('li[data-code="T-S02"] .person')
    expect(person).to_contain_text(text["guide_name"])
    expect(person).to_contain_text(text["guide"])

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"org-{lang}.png"), full_page=True)
    assert errors == []


def test_typing_a_rule_updates_the_live_count(live_server: str, browser_page: Any) -> None:
    """The rule builder: htmx checks the rule while it is typed and shows the count, or the
    error with the offending part marked."""
    from playwright.sync_api import expect

    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server}/login")
    page.fill("#username", "a.admin")
    page.fill("#password", "password123")
    page.get_by_role("button", name="登录").click()
    page.goto(f"{live_server}/b/a-coffee/tags")
    check = page.locator("#tag-check")
    expect(check.locator('[data-check="empty"]')).to_be_visible()

    rule = page.locator("#tag-rule")
    rule.press_sequentially("count(order_payed) >= 1")
    expect(check.locator('[data-code="tags.unknown_event"]')).to_be_visible()
    expect(check.locator("mark")).to_have_text("order_payed")

    rule.fill("")
    rule.press_sequentially("count(order_paid, last 90d) >= 2")
    expect(check.locator("[data-count]")).to_have_text("0")  # nobody has bought yet
    assert errors == []


def test_guide_completes_a_task_on_a_phone(live_server: str) -> None:
    """The workbench in a phone-sized browser: the guide signs in, opens the customer card,
    ticks a checklist item and marks the top task done; it shows as done, and stays so."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed")
    import os

    from playwright.sync_api import expect, sync_playwright

    from siyu.core.db import make_engine, open_session
    from tests.test_workbench import seed_tasks

    engine = make_engine(os.environ["SIYU_DATABASE_URL"])
    with open_session(engine) as db:
        seeded = seed_tasks(db)
    engine.dispose()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        context = browser.new_context(
            viewport={"width": 390, "height": 844},
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
        )
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        page.goto(f"{live_server}/login")
        page.fill("#username", "a.guide")
        page.fill("#password", "password123")
        page.get_by_role("button", name="登录").click()
        expect(page.locator(".topbar")).to_be_visible()
        page.get_by_role("link", name="导购工作台").click()
        expect(page.get_by_role("heading", name="今日任务")).to_be_visible()
        expect(page).to_have_url(f"{live_server}/b/a-coffee/workbench")

        tasks = page.locator("#wb-open article.wb-task")
        expect(tasks).to_have_count(3)
        top = page.locator(f'article[data-task="{seeded.high}"]')
        expect(tasks.first).to_have_attribute("data-task", seeded.high)  # ranked by value
        expect(page.locator(f'article[data-task="{seeded.late}"] [data-overdue]')).to_be_visible()
        # nothing wider than the phone: no sideways scrolling
        assert page.evaluate("document.documentElement.scrollWidth") <= 390

        # the customer card loads when opened
        top.locator("summary.wb-summary").tap()
        expect(top.locator("[data-phone]")).to_have_text("135****6810")

        # the done button is a comfortable tap target
        done = top.get_by_role("button", name="完成")
        box = done.bounding_box()
        assert box is not None and box["height"] >= 44

        top.get_by_text("送券").tap()
        expect(top.locator('input[name="check"][value="1"]')).to_be_checked()
        done.tap()
        expect(top).to_have_attribute("data-status", "done")
        expect(top.locator('[data-state="done"]')).to_be_visible()
        expect(top.locator('[data-check="1"]')).to_have_attribute("data-done", "true")

        page.reload()
        expect(page.locator(f'#wb-closed article[data-task="{seeded.high}"]')).to_have_attribute(
            "data-status", "done"
        )
        expect(page.locator("#wb-open article.wb-task")).to_have_count(2)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "workbench-mobile.png"), full_page=True)
        context.close()
        browser.close()
    assert errors == []
