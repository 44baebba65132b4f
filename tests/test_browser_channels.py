"""The outbox console in a real browser (chromium via Playwright, app under uvicorn): an admin
finds the dead letters with their reasons and attempts, retries one and then two at once,
and sees them re-queued (pending, attempts 0); then edits the brand's webhook settings and
sees the secret only masked. Once in Chinese (the default), once in English."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from siyu.core.clock import utcnow
from siyu.core.db import make_engine, open_session
from siyu.core.ids import new_id
from siyu.core.tenancy import SYSTEM
from siyu.org.queries import access_brand
from siyu.sop.models import Outbox
from tests.test_browser import ARTIFACTS, browser_page, live_server  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TEXT = {
    "zh-CN": {
        "sign_in": "登录",
        "nav": "渠道与发件箱",
        "dead": "死信",
        "reason": "无收件人",
        "retry": "重试",
        "retried1": "已重新排队 1 条消息。",
        "retried2": "已重新排队 2 条消息。",
        "selected": "重试所选",
        "settings": "渠道设置",
        "save": "保存",
        "saved": "Webhook设置已保存。",
    },
    "en": {
        "sign_in": "Sign in",
        "nav": "Channels & outbox",
        "dead": "Dead letters",
        "reason": "No recipient",
        "retry": "Retry",
        "retried1": "1 message(s) re-queued.",
        "retried2": "2 message(s) re-queued.",
        "selected": "Retry selected",
        "settings": "Channel settings",
        "save": "Save",
        "saved": "Webhook settings saved.",
    },
}


def _seed() -> None:
    engine = make_engine(os.environ["SIYU_DATABASE_URL"])
    with open_session(engine) as db:
        coffee = access_brand(db, SYSTEM, "a-coffee")
        at = utcnow() - timedelta(minutes=5)
        for key, channel, reason, attempts in (
            ("dl-nobody", "sms", "no_recipient", 1),
            ("dl-a", "webhook", "provider_timeout", 8),
            ("dl-b", "webhook", "provider_timeout", 8),
        ):
            db.add(
                Outbox(
                    id=new_id(),
                    brand_id=coffee.id,
                    idem_key=key,
                    channel=channel,
                    payload={"content": {}},
                    status="failed",
                    attempts=attempts,
                    reason=reason,
                    error=f"{reason}: seeded",
                    available_at=at,
                )
            )
        db.commit()
    engine.dispose()


def _states() -> dict[str, tuple[str, int]]:
    engine = make_engine(os.environ["SIYU_DATABASE_URL"])
    with open_session(engine) as db:
        rows = {r.idem_key: (r.status, r.attempts) for r in db.scalars(select(Outbox))}
    engine.dispose()
    return rows


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_admin_retries_dead_letters_and_edits_settings(
    live_server: str,  # noqa: F811
    browser_page: Any,  # noqa: F811
    lang: str,
) -> None:
    from playwright.sync_api import expect

    _seed()
    page, text = browser_page, TEXT[lang]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server}/login?lang={lang}")
    page.fill("#username", "a.admin")
    page.fill("#password", "password123")
    page.get_by_role("button", name=text["sign_in"]).click()
    page.goto(f"{live_server}/b/a-coffee/org")
    page.get_by_role("link", name=text["nav"], exact=True).click()
    expect(page).to_have_url(f"{live_server}/b/a-coffee/channels")
    expect(page.locator("#outbox-rows h2")).to_contain_text(text["dead"])
    expect(page.locator("[data-total-failed]")).to_have_attribute("data-total-failed", "3")

    # one dead letter, with its reason and attempts; retried from its row
    row = page.locator('tr[data-key="dl-nobody"]')
    expect(row).to_contain_text(text["reason"])
    expect(row.locator("[data-attempts]")).to_have_text("1")
    row.get_by_role("button", name=text["retry"]).click()
    expect(page.get_by_text(text["retried1"])).to_be_visible()
    expect(page.locator('tr[data-key="dl-nobody"]')).to_have_count(0)  # no longer dead
    assert _states()["dl-nobody"] == ("pending", 0)

    # it is re-queued: the pending filter shows it with a fresh attempt count
    page.select_option("#ob-status", "pending")
    page.locator("#outbox-filters button[type=submit]").click()
    requeued = page.locator('tr[data-key="dl-nobody"]')
    expect(requeued).to_have_attribute("data-status", "pending")
    expect(requeued.locator("[data-attempts]")).to_have_text("0")

    # the other two: filtered by reason, ticked, retried at once
    page.goto(f"{live_server}/b/a-coffee/channels?status=failed&reason=provider_timeout")
    page.check('tr[data-key="dl-a"] input[type=checkbox]')
    page.check('tr[data-key="dl-b"] input[type=checkbox]')
    page.get_by_role("button", name=text["selected"]).click()
    expect(page.get_by_text(text["retried2"])).to_be_visible()
    states = _states()
    assert states["dl-a"] == states["dl-b"] == ("pending", 0)
    expect(page.locator("[data-total-failed]")).to_have_count(1)
    expect(page.locator("[data-total-failed]")).to_have_attribute("data-total-failed", "0")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"channels-outbox-{lang}.png"), full_page=True)

    # settings: the secret is written once and only ever shown masked
    page.get_by_role("link", name=text["settings"]).click()
    form = page.locator("#settings-webhook")
    form.locator("#webhook-url").fill("https://crm.example.com/siyu")
    form.locator("#webhook-secret").fill("whsec-browser-secret-9876")
    form.get_by_role("button", name=text["save"]).click()
    expect(page.get_by_text(text["saved"])).to_be_visible()
    expect(page.locator("#settings-webhook [data-secret-hint]")).to_have_attribute(
        "data-secret-hint", "****9876"
    )
    assert "whsec-browser-secret-9876" not in page.content()
    expect(page.locator("#webhook-url")).to_have_value("https://crm.example.com/siyu")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"channels-settings-{lang}.png"), full_page=True)
    assert errors == []
