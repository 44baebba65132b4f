"""KPI pages and the client report in a real browser (Debian's chromium, Playwright; the app
under uvicorn): the contract's four lines drawn by ECharts, the weekly HTML report rendered,
and a store manager clicking from their only store down to its customers.
Screenshots land in ``test-artifacts/browser/`` (git-ignored)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.test_browser import ARTIFACTS, browser_page, live_server  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOV = "start=2026-11-01&end=2026-11-30"


@pytest.fixture
def story_server(live_server: str) -> str:  # noqa: F811
    """The live server's database with the KPI story and a November contract."""
    from siyu.core.db import make_engine, open_session
    from siyu.core.tenancy import SYSTEM
    from siyu.ingest import actions as ingest
    from siyu.metrics import contract_store
    from siyu.org.queries import access_brand
    from tests.test_metrics_kpis import STORY

    engine = make_engine(os.environ["SIYU_DATABASE_URL"])
    try:
        with open_session(engine) as db:
            brand = access_brand(db, SYSTEM, "a-coffee")
            assert ingest.ingest_batch(db, SYSTEM, brand, STORY).rejected == 0
            body = {
                "key": "nov",
                "name": "November",
                "starts_on": "2026-11-01",
                "ends_on": "2026-11-30",
                "kpis": [
                    {
                        "kpi": "diversion_rate",
                        "fail": 0,
                        "normal": 0.05,
                        "good": 0.2,
                        "excess": 0.8,
                    },
                    {"kpi": "diverted_customers", "fail": 0, "normal": 2, "good": 4, "excess": 6},
                ],
            }
            contract_store.create_contract(
                db, SYSTEM, brand, contract_store.ContractIn.model_validate(body)
            )
    finally:
        engine.dispose()
    return live_server


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", "password123")
    page.locator("button[type=submit]").first.click()
    page.wait_for_url(lambda url: "/login" not in url)


def test_contract_bands_and_the_weekly_html_report(story_server: str, browser_page: Any) -> None:  # noqa: F811
    from playwright.sync_api import expect

    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, story_server, "a.admin")

    page.goto(f"{story_server}/b/a-coffee/metrics/contracts/nov")
    rows = page.locator("#contract-status tbody tr")
    expect(rows).to_have_count(2)
    # November: 3 of 4 reached customers diverted = 75% → good (lines 5% / 20% / 80%)
    expect(page.locator('#contract-status tr[data-kpi="diversion_rate"]')).to_have_attribute(
        "data-line", "good"
    )
    expect(page.locator('#contract-status tr[data-kpi="diverted_customers"]')).to_have_attribute(
        "data-line", "normal"
    )
    bands = page.locator(".chart-band svg")
    expect(bands).to_have_count(2)  # ECharts drew both
    expect(bands.first).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "metrics-contract.png"), full_page=True)

    page.goto(f"{story_server}/b/a-coffee/metrics/reports/weekly?format=html&day=2026-11-04")
    expect(page.locator("h1")).to_contain_text("A 咖啡")
    expect(page.locator("#summary .card")).to_have_count(8)
    expect(page.locator('#summary .card[data-kpi="gmv"] .v')).to_have_text("¥200.00")
    contract_rows = page.locator("#contract tr[data-kpi]")
    expect(contract_rows).to_have_count(2)
    svg = page.locator('#contract tr[data-kpi="diverted_customers"] svg')
    expect(svg).to_be_visible()
    box = svg.bounding_box()
    assert box is not None and box["width"] > 300  # the four bands take their width
    expect(page.locator("#stores tr").nth(1)).to_contain_text("静安店")  # best store first
    page.screenshot(path=str(ARTIFACTS / "metrics-weekly-report.png"), full_page=True)
    assert errors == []


def test_store_manager_clicks_down_to_their_customers(
    story_server: str,
    browser_page: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    sign_in(page, story_server, "a.sh01mgr")
    page.goto(f"{story_server}/b/a-coffee/metrics?{NOV}")
    expect(page.locator("[data-scoped]")).to_be_visible()
    page.goto(f"{story_server}/b/a-coffee/metrics/drill?level=region&{NOV}")
    regions = page.locator("#drill-table tbody tr[data-group]")
    expect(regions).to_have_count(1)
    regions.first.locator("a.strong").click()
    stores = page.locator("#drill-table tbody tr[data-group]")
    expect(stores).to_have_count(1)
    expect(stores.first).to_have_attribute("data-group", "A-SH01")
    stores.first.locator('a[data-kpi="diverted_customers"]').click()
    expect(page.locator("#behind")).to_have_attribute("data-total", "2")
    phones = page.locator("#behind td.pii")
    expect(phones).to_have_count(2)
    for text in phones.all_inner_texts():
        assert "****" in text
