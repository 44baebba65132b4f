"""The SOP console: the list with live counts and templates, an SOP's steps and JSON editor,
the decision explorer with reason labels (acceptance 3), the dry-run and the breathing
policy — over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.core.tenancy import SYSTEM
from siyu.org.queries import access_brand
from siyu.sop import actions, engine
from siyu.sop.models import Sop, Touch
from siyu.sop.templates import from_template
from tests.factories import login
from tests.test_sop_engine import DAY1, add_sop, setup_brand, touch

PAGES = ("/sops", "/sops/decisions", "/sops/simulate", "/sops/policy", "/sops/welcome_journey")


def csrf(client: Any) -> str:
    return client.cookies.get("siyu_csrf") or ""


def section(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    return page[start : page.index("</section>", start)]


def row(page: str, attr: str, key: str) -> str:
    start = page.index(f'data-{attr}="{key}"')
    return page[start : page.index("</tr>", start)]


@pytest.fixture
def welcome(db: Session, world: Any) -> Sop:
    brand = access_brand(db, SYSTEM, "a-coffee")
    return actions.create_from_template(db, SYSTEM, brand, "welcome_journey")


@pytest.fixture
def planned(db: Session, world: Any) -> Any:
    """Two SOPs over the same two customers and a cap of one touch a day: the day's run sends
    the higher-priority touch and defers the other (``lost_arbitration``)."""
    brand = setup_brand(db, n=2)
    add_sop(db, brand, "high", [touch("高优先")], priority=80)
    add_sop(db, brand, "low", [touch("低优先", 96)], priority=20)
    return brand


# ---------------------------------------------------------------- pages and languages


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_pages_render_in_both_languages(client: Any, welcome: Sop, lang: str) -> None:
    login(client, "a.admin")
    client.get(f"/b/a-coffee?lang={lang}")
    for path in PAGES:
        r = client.get(f"/b/a-coffee{path}")
        assert r.status_code == 200, (path, r.text)
        assert 'class="nav-sop active"' in r.text
        assert ("SOP 自动化" if lang == "zh-CN" else "SOP automation") in r.text
    listed = client.get("/b/a-coffee/sops").text
    assert 'data-sop="welcome_journey"' in listed
    assert ("草稿" if lang == "zh-CN" else "Draft") in row(listed, "sop", "welcome_journey")
    assert 'data-count="sent_7d"' in listed and 'data-template="birthday"' in listed
    detail = client.get("/b/a-coffee/sops/welcome_journey").text
    steps = section(detail, "sop-steps")
    assert steps.count("<li data-step=") == len(from_template("welcome_journey").steps)
    assert 'data-type="guide_task"' in steps and "wecom_1to1" in steps
    # the editor holds the definition as JSON
    editor = unescape(section(detail, "sop-editor"))
    text = editor[editor.index(">", editor.index("<textarea")) + 1 : editor.index("</textarea>")]
    assert json.loads(text)["audience"]["event"] == "wecom_contact_added"


def test_create_from_template_and_enable(client: Any, world: Any) -> None:
    login(client, "a.admin")
    form = {"csrf_token": csrf(client), "template": "dormant_winback", "key": "winback_2"}
    r = client.post("/b/a-coffee/sops/from-template", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith("/b/a-coffee/sops/winback_2")
    page = client.get(r.headers["location"]).text
    assert 'data-done="created"' in page and 'data-state="draft"' in page
    branch = section(page, "sop-steps")
    assert 'data-type="branch"' in branch and "exists(message_received, last 3d)" in branch
    assert 'data-then="' in branch and 'data-else="' in branch
    # the same key again is refused next to the key field
    again = client.post("/b/a-coffee/sops/from-template", data=form)
    assert again.status_code == 409 and 'data-code="sop.exists"' in again.text
    # a template needing a missing segment says so
    missing = {"csrf_token": csrf(client), "template": "birthday"}
    r = client.post("/b/a-coffee/sops/from-template", data=missing)
    assert r.status_code == 404 and 'data-code="segments.not_found"' in r.text
    # enable from the list, then disable from the SOP's page
    r = client.post(
        "/b/a-coffee/sops/winback_2/enable",
        data={"csrf_token": csrf(client)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    listed = client.get(r.headers["location"]).text
    assert 'data-done="enabled"' in listed
    assert 'data-state="enabled"' in row(listed, "sop", "winback_2")
    r = client.post(
        "/b/a-coffee/sops/winback_2/disable",
        data={"csrf_token": csrf(client), "back": "detail"},
        follow_redirects=False,
    )
    assert r.headers["location"].startswith("/b/a-coffee/sops/winback_2?")
    assert 'data-state="disabled"' in client.get(r.headers["location"]).text


# ---------------------------------------------------------------- the JSON editor


def test_editor_shows_errors_with_their_place(client: Any, db: Session, world: Any) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    actions.create_from_template(db, SYSTEM, brand, "dormant_winback")
    login(client, "a.admin")
    sop = client.get("/b/a-coffee/sops/dormant_winback").text
    editor = unescape(section(sop, "sop-editor"))
    data = json.loads(
        editor[editor.index(">", editor.index("<textarea")) + 1 : editor.index("</textarea>")]
    )
    i = next(k for k, s in enumerate(data["steps"]) if s["type"] == "branch")
    url = "/b/a-coffee/sops/dormant_winback/edit"

    def post(text: str) -> Any:
        return client.post(url, data={"csrf_token": csrf(client), "definition": text})

    # a condition that does not check: where, line and column, the bad part marked
    bad = json.loads(json.dumps(data))
    bad["steps"][i]["condition"] = "exists(teleported, last 3d)"
    r = post(json.dumps(bad))
    assert r.status_code == 422
    assert f'data-where="steps[{i}].condition"' in r.text
    assert 'class="rule-line"' in r.text and "<mark>teleported</mark>" in r.text
    assert "exists(teleported, last 3d)" in r.text  # what was typed stays in the editor
    # pydantic errors name their field
    bad = json.loads(json.dumps(data))
    bad["priority"] = 500
    r = post(json.dumps(bad))
    assert r.status_code == 422 and 'data-code="validation.failed"' in r.text
    assert "<code>priority</code>" in r.text
    # not JSON at all
    r = post('{"name": ')
    assert r.status_code == 422 and "JSON" in r.text
    # a good change is saved and bumps the version
    data["priority"] = 77
    r = client.post(
        url,
        data={"csrf_token": csrf(client), "definition": json.dumps(data)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get(r.headers["location"]).text
    assert 'data-done="updated"' in page and "v2" in page
    fresh = db.scalar(select(Sop).where(Sop.key == "dormant_winback"))
    db.refresh(fresh)
    assert fresh is not None and fresh.priority == 77 and fresh.version == 2


# ---------------------------------------------------------------- decisions and dry-run


@pytest.mark.parametrize(
    ("lang", "label"),
    [("zh-CN", "预算被更高优先级的触达占用"), ("en", "A higher-priority touch took the budget")],
)
def test_decision_explorer_shows_the_reason(
    client: Any, db: Session, planned: Any, lang: str, label: str
) -> None:
    engine.run_day(db, SYSTEM, planned, DAY1)
    deferred = list(db.scalars(select(Touch).where(Touch.status == "deferred")))
    assert len(deferred) == 2 and {t.reason for t in deferred} == {"lost_arbitration"}
    login(client, "a.admin")
    client.get(f"/b/a-coffee?lang={lang}")
    r = client.get("/b/a-coffee/sops/decisions", params={"status": "deferred"})
    assert r.status_code == 200
    rows = section(r.text, "decisions")
    assert rows.count('data-reason="lost_arbitration"') == 2
    expected = label
    assert expected in rows and 'data-status="deferred"' in rows
    # "why didn't this customer get it?": one customer's decisions, both SOPs
    customer = deferred[0].customer_id
    r = client.get("/b/a-coffee/sops/decisions", params={"customer": customer})
    one = section(r.text, "decisions")
    assert one.count("data-decision=") == 2
    assert 'data-status="sent"' in one and 'data-status="deferred"' in one
    # filters by reason and SOP; a bad filter is explained
    r = client.get("/b/a-coffee/sops/decisions", params={"reason": "daily_cap"})
    assert "data-decision=" not in section(r.text, "decisions")
    r = client.get("/b/a-coffee/sops/decisions", params={"sop": "high"})
    assert section(r.text, "decisions").count('data-status="sent"') == 2
    r = client.get("/b/a-coffee/sops/decisions", params={"status": "lost"})
    assert r.status_code == 422 and 'data-code="sop.bad_filter"' in r.text
    # the SOP list counts the last 7 days' decisions; the SOP page lists them with labels
    listed = client.get("/b/a-coffee/sops").text
    low = row(listed, "sop", "low")
    assert re.search(r'data-count="deferred_7d"><a [^>]*>2</a>', low), low
    page = client.get("/b/a-coffee/sops/low").text
    assert expected in section(page, "sop-decisions")


def test_simulate_shows_per_day_counts_and_writes_nothing(
    client: Any, db: Session, planned: Any
) -> None:
    login(client, "a.admin")
    empty = client.get("/b/a-coffee/sops/simulate")
    assert empty.status_code == 200 and 'id="simulate-days"' not in empty.text
    r = client.get("/b/a-coffee/sops/simulate", params={"start": DAY1.isoformat(), "days": "3"})
    assert r.status_code == 200, r.text
    days = section(r.text, "simulate-days")
    for k in range(3):
        assert f'data-day="{(DAY1 + timedelta(days=k)).isoformat()}"' in days
    first = row(days, "day", DAY1.isoformat())
    assert 'data-candidates="4"' in first and 'data-sent="2"' in first
    assert "data-chart=" in days
    chart = json.loads(unescape(re.search(r"data-chart='([^']+)'", days).group(1)))  # type: ignore[union-attr]
    assert {s["name"] for s in chart["series"]} == {"high", "low"}
    # day 2: the deferred touches of "low" go out
    second = row(days, "day", (DAY1 + timedelta(days=1)).isoformat())
    assert 'data-sop-sent="low">2<' in second
    reasons = section(r.text, "simulate-reasons")
    assert 'data-reason="lost_arbitration"' in reasons
    pressure = section(r.text, "simulate-pressure")
    assert 'data-pressure="2"' in pressure
    assert 'id="simulate-guides"' in r.text
    assert db.scalar(select(func.count()).select_from(Touch)) == 0
    # more than 31 days is refused
    r = client.get("/b/a-coffee/sops/simulate", params={"start": DAY1.isoformat(), "days": "40"})
    assert r.status_code == 422 and 'data-code="sop.bad_filter"' in r.text


# ---------------------------------------------------------------- policy


def test_policy_view_edit_and_validation(client: Any, db: Session, world: Any) -> None:
    login(client, "a.admin")
    r = client.get("/b/a-coffee/sops/policy")
    assert 'data-quiet="21:30-09:00"' in r.text and 'id="policy-edit"' in r.text
    form = {
        "csrf_token": csrf(client),
        "caps_day": "2",
        "caps_week": "5",
        "caps_month": "",
        "channel_caps": '{"sms": {"day": 1}}',
        "mass_quota": "weekly_7",
        "min_gap_minutes": "120",
        "quiet_start": "25:00",
        "quiet_end": "08:00",
        "backoff_after": "3",
        "backoff_days": "7",
        "guide_capacity": "30",
        "automation_channel": "wecom_1to1",
    }
    bad = client.post("/b/a-coffee/sops/policy", data=form)
    assert bad.status_code == 422 and 'data-code="sop.policy_invalid"' in bad.text
    assert "quiet_hours" in bad.text and 'value="25:00"' in bad.text
    bad = client.post(
        "/b/a-coffee/sops/policy", data={**form, "quiet_start": "22:00", "caps_day": "x"}
    )
    assert bad.status_code == 422 and 'data-code="sop.policy_invalid"' in bad.text
    good = {**form, "quiet_start": "22:00"}
    r = client.post("/b/a-coffee/sops/policy", data=good, follow_redirects=False)
    assert r.status_code == 303
    page = client.get(r.headers["location"]).text
    assert 'data-done="policy"' in page and 'data-quiet="22:00-08:00"' in page
    assert 'data-capacity="30"' in page
    brand = access_brand(db, SYSTEM, "a-coffee")
    db.rollback()
    policy = actions.brand_policy(db, brand)
    assert policy.caps.day == 2 and policy.caps.month is None and policy.guide_capacity == 30


# ---------------------------------------------------------------- permissions and tenancy


def test_guide_reads_without_forms_and_cannot_write(client: Any, welcome: Sop) -> None:
    login(client, "a.guide")
    for path in PAGES:
        r = client.get(f"/b/a-coffee{path}")
        assert r.status_code == 200, (path, r.status_code)
        for anchor in ('id="new-sop"', 'id="sop-editor"', 'id="policy-edit"', "data-toggle="):
            assert anchor not in r.text, (path, anchor)
    token = {"csrf_token": csrf(client)}
    writes = [
        ("/b/a-coffee/sops/from-template", {**token, "template": "welcome_journey", "key": "w2"}),
        ("/b/a-coffee/sops/welcome_journey/enable", token),
        ("/b/a-coffee/sops/welcome_journey/disable", token),
        ("/b/a-coffee/sops/welcome_journey/edit", {**token, "definition": "{}"}),
        ("/b/a-coffee/sops/policy", {**token, "guide_capacity": "1"}),
    ]
    for url, data in writes:
        r = client.post(url, data=data, follow_redirects=False)
        assert r.status_code == 403, (url, r.status_code)


def test_other_tenant_is_404(client: Any, welcome: Sop) -> None:
    login(client, "a.admin")
    for path in PAGES:
        r = client.get(f"/b/b-shop{path}")
        assert r.status_code == 404, path
    r = client.post(
        "/b/b-shop/sops/welcome_journey/enable",
        data={"csrf_token": csrf(client)},
        follow_redirects=False,
    )
    assert r.status_code == 404
    assert client.get("/b/a-coffee/sops/no_such_sop").status_code == 404
