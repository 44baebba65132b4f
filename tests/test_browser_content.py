"""The content console in a real browser (acceptance 5): Debian's chromium driven by
Playwright against the app under uvicorn (the fixtures of ``tests/test_browser.py``).

The brand admin creates a material in the library, previews it for a real customer while
typing (the rendered text shows, the nickname masked, an unknown variable flagged), sends a
test (a row appears in the outbox table), opens its performance page, then approves a KOC
note with a reward. Screenshots land in ``test-artifacts/browser/`` (git-ignored).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.test_browser import ARTIFACTS, browser_page, live_server  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.slow]

XHS = "https://www.xiaohongshu.com/explore/6650a1b2c3d4e5f6a7b8c9d0"


def _seed() -> tuple[str, str]:
    """Zhang (a customer to preview for) and a submitted KOC note, in the live database."""
    from siyu.content import ugc
    from siyu.core.db import make_engine, open_session
    from siyu.core.tenancy import SYSTEM
    from siyu.org.queries import access_brand
    from tests.customer_factories import seed_customers

    engine = make_engine(os.environ["SIYU_DATABASE_URL"])
    with open_session(engine) as db:
        cast = seed_customers(db)
        brand = access_brand(db, SYSTEM, "a-coffee")
        note = ugc.submit_note(
            db,
            SYSTEM,
            brand,
            ugc.KocNoteIn(
                url=XHS, title="门店拿铁测评", author="latte_lover", customer_id=cast.zhang
            ),
        )
        ids = (cast.zhang, note.id)
    engine.dispose()
    return ids


def test_create_preview_send_test_stats_and_approve(
    live_server: str,  # noqa: F811 - the imported fixture
    browser_page: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    from tests.customer_factories import ZHANG_NAME, ZHANG_PHONE

    zhang, note_id = _seed()
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{live_server}/login")
    page.fill("#username", "a.admin")
    page.fill("#password", "password123")
    page.get_by_role("button", name="登录").click()
    expect(page.locator(".topbar")).to_be_visible()
    page.get_by_role("link", name="内容中心").click()
    expect(page.get_by_role("heading", name="素材库", exact=True)).to_be_visible()

    # create a text material from the library
    page.fill("#new-name", "新品拿铁")
    page.fill("#new-text", "{{ nickname }}，新品拿铁到店")
    page.fill("#new-tags", "新品, 咖啡")
    page.fill("#new-fallbacks", "nickname=亲")
    page.get_by_role("button", name="创建").click()
    expect(page.locator('[data-done="created"]')).to_be_visible()
    expect(page.get_by_role("heading", name="新品拿铁")).to_be_visible()

    # preview for a real customer while typing: rendered, nickname masked
    page.select_option("#ed-customer_id", zhang)
    preview = page.locator("#content-preview")
    expect(preview.locator("#preview-text")).to_contain_text("新品拿铁到店")
    text = page.locator("#ed-text")
    text.fill("")
    text.press_sequentially("{{ nick }}你好")
    expect(preview.locator('[data-code="content.template_unknown_variable"]')).to_be_visible()
    text.fill("")
    text.press_sequentially("{{ nickname }}，本周会员日买一送一")
    expect(preview.locator("#preview-text")).to_have_text("三*，本周会员日买一送一")
    expect(preview.locator('[data-var="nickname"]')).to_have_text("三*")
    assert ZHANG_NAME not in page.content() and ZHANG_PHONE not in page.content()

    # send a test: a row appears in the outbox table
    page.select_option("#test-channel", "console")
    page.get_by_role("button", name="发送测试").click()
    expect(page.locator('[data-done="test_sent"]')).to_be_visible()
    rows = page.locator("#test-sends tr[data-outbox]")
    expect(rows).to_have_count(1)
    expect(rows.first.locator('[data-status="pending"]')).to_be_visible()

    # the performance page
    page.get_by_role("link", name="效果 →").click()
    expect(page.locator('[data-stat="sends"]')).to_have_text("0")
    expect(page.locator("#ab-results")).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "content-stats.png"), full_page=True)

    # approve the KOC note with a reward
    page.goto(f"{live_server}/b/a-coffee/content/koc")
    expect(page.locator(f'tr[data-note="{note_id}"] [data-status="submitted"]')).to_be_visible()
    page.locator(f'tr[data-note="{note_id}"] a.strong').click()
    # the note's page reads the lake for its attribution (DuckDB's first start is slow)
    expect(page.locator("h1")).to_contain_text("门店拿铁测评", timeout=60_000)
    page.fill("#koc-reward_yuan", "15")
    page.fill("#koc-reward_points", "200")
    page.fill("#koc-state", "koc_latte_demo")
    page.get_by_role("button", name="通过并奖励").click()
    expect(page.locator('[data-done="approved"]')).to_be_visible(timeout=60_000)
    expect(page.locator('h1 [data-status="approved"]')).to_be_visible()
    expect(page.locator("#koc-state")).to_have_text("koc_latte_demo")
    expect(page.locator('#koc-rewards [data-amount="1500"]')).to_be_visible()
    expect(page.locator('#koc-rewards [data-amount="200"]')).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "content-koc.png"), full_page=True)
    assert errors == []
