"""The tag and segment console: the library with health, the rule builder's live count and
positioned errors, the health page, segments (preview, snapshot, export) and tags on the
Customer 360 — over real HTTP, on SQLite and PostgreSQL.

The cast is ``world`` (tests/factories.py) plus the customers of tests/customer_factories.py,
with recent orders ingested so that rule tags have members.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from siyu.core.audit import AuditEntry
from siyu.core.clock import utcnow
from siyu.core.tenancy import SYSTEM
from siyu.ingest import actions as ingest
from siyu.org.queries import access_brand
from siyu.tags import actions
from siyu.tags.models import Tag
from siyu.tags.schemas import RunIn, TagIn, TagPatch
from tests.customer_factories import LI_PHONE, ZHANG_MASKED, ZHANG_PHONE, Cast, seed_customers
from tests.factories import login

HX = {"HX-Request": "true"}
MODEL_TAGS = ("p_alive", "expected_purchases", "expected_spend", "value_365")


@dataclass
class Tagged:
    cast: Cast
    run_id: str


def _order(eid: str, days_ago: int, phone: str, fen: int) -> dict[str, Any]:
    at = (utcnow() - timedelta(days=days_ago)).isoformat()
    return {
        "event_id": eid,
        "event_type": "order_paid",
        "occurred_at": at,
        "source": "test",
        "identifiers": [{"type": "phone", "value": phone}],
        "properties": {"order_id": f"O-{eid}", "channel": "pos", "paid_fen": fen},
    }


@pytest.fixture
def tagged(db: Session, world: Any) -> Tagged:
    """Zhang bought twice lately (a repeat buyer), Li once; a manual tag exists; the rule of
    ``broken`` no longer checks (as when its custom event type is withdrawn); one full run."""
    cast = seed_customers(db)
    brand = access_brand(db, SYSTEM, "a-coffee")
    events = [
        _order("z1", 20, ZHANG_PHONE, 3000),
        _order("z2", 5, ZHANG_PHONE, 4500),
        _order("l1", 10, LI_PHONE, 1800),
    ]
    assert ingest.ingest_batch(db, SYSTEM, brand, events).accepted == 3
    for key in MODEL_TAGS:  # the value model needs more history than three orders
        actions.update_tag(db, SYSTEM, brand, key, TagPatch(status="paused"))
    rule = "count(order_paid, last 90d) >= 2"
    actions.create_tag(
        db, SYSTEM, brand, TagIn(key="repeat_buyer", name="复购客户", group="rules", rule=rule)
    )
    actions.create_tag(
        db, SYSTEM, brand, TagIn(key="broken", name="坏规则", group="rules", rule=rule)
    )
    actions.create_tag(
        db, SYSTEM, brand, TagIn(key="coffee_fan", name="咖啡控", group="manual", kind="manual")
    )
    db.execute(update(Tag).where(Tag.key == "broken").values(rule="count(teleported) >= 1"))
    db.commit()
    run = actions.compute(db, SYSTEM, brand, RunIn(mode="full"))
    assert run.status == "partial"
    return Tagged(cast, run.id)


def fresh(db: Session) -> None:
    db.rollback()


def row(page: str, attr: str, key: str) -> str:
    """The table row carrying ``data-{attr}="{key}"``."""
    start = page.index(f'data-{attr}="{key}"')
    return page[start : page.index("</tr>", start)]


def section(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    return page[start : page.index("</section>", start)]


# ---------------------------------------------------------------- library and health


def test_library_shows_groups_members_and_a_failing_tag(client: Any, tagged: Tagged) -> None:
    login(client, "a.admin")
    r = client.get("/b/a-coffee/tags")
    assert r.status_code == 200
    assert 'class="nav-tags active"' in r.text
    assert 'data-group="rules"' in r.text and 'data-group="rfm_segment"' in r.text
    good = row(r.text, "tag", "repeat_buyer")
    assert 'data-health="ok"' in good and "count(order_paid, last 90d) &gt;= 2" in good
    assert '<td class="num">1</td>' in good  # Zhang
    bad = row(r.text, "tag", "broken")
    assert 'data-health="failing"' in bad and "失败" in bad
    assert "teleported" in bad  # the last error is shown
    paused = row(r.text, "tag", "p_alive")
    assert 'data-health="paused"' in paused
    assert 'data-health-count="failing"' in r.text
    # the forms of someone who may define and compute tags
    assert 'id="new-tag"' in r.text and 'id="compute"' in r.text and 'id="new-group"' in r.text


def test_health_page_lists_problems_first_then_runs(client: Any, tagged: Tagged) -> None:
    login(client, "a.admin")
    r = client.get("/b/a-coffee/tags/health")
    assert r.status_code == 200
    problems = section(r.text, "problems")
    assert 'data-tag="broken"' in problems and 'data-health="failing"' in problems
    assert "teleported" in problems
    assert 'data-tag="repeat_buyer"' not in problems
    runs = section(r.text, "runs")
    run = row(runs, "run", tagged.run_id)
    assert 'data-status="partial"' in run and "部分失败" in run and "全量" in run
    assert 'data-failed-tag="broken"' in run


def test_pages_in_english(client: Any, tagged: Tagged) -> None:
    login(client, "a.admin")
    client.get("/b/a-coffee/tags?lang=en")
    r = client.get("/b/a-coffee/tags")
    assert '<html lang="en">' in r.text
    assert "Tags by group with members and health" in r.text
    assert "Failing" in row(r.text, "tag", "broken")
    h = client.get("/b/a-coffee/tags/health").text
    assert "Needs attention" in h and "partly failed" in h
    s = client.get("/b/a-coffee/segments").text
    assert "New segment" in s and "Segments" in s
    e = client.get("/b/a-coffee/tags/repeat_buyer/edit").text
    assert "Edit tag" in e and "Customers matching now" in e
    c = client.get(f"/b/a-coffee/customers/{tagged.cast.zhang}").text
    assert "Add a manual tag" in section(c, "tags")


def test_pages_in_chinese(client: Any, tagged: Tagged) -> None:
    login(client, "a.admin")
    r = client.get("/b/a-coffee/tags")
    assert '<html lang="zh-CN">' in r.text and "新建标签" in r.text
    assert "需要处理" in client.get("/b/a-coffee/tags/health").text
    assert "新建人群" in client.get("/b/a-coffee/segments").text
    assert "修改标签" in client.get("/b/a-coffee/tags/repeat_buyer/edit").text


# ---------------------------------------------------------------- the rule builder


def test_live_count_of_a_rule(client: Any, tagged: Tagged) -> None:
    login(client, "a.admin")
    r = client.get(
        "/b/a-coffee/tags/check", params={"rule": "count(order_paid, last 90d) >= 1"}, headers=HX
    )
    assert r.status_code == 200
    assert "<html" not in r.text  # a fragment
    assert 'data-check="ok"' in r.text and 'data-count="2"' in r.text  # Zhang and Li
    assert "&#34;fn&#34;: &#34;count&#34;" in r.text  # the JSON tree of the builder
    # empty: a hint
    empty = client.get("/b/a-coffee/tags/check", params={"rule": " "}, headers=HX)
    assert 'data-check="empty"' in empty.text


def test_bad_rule_is_reported_at_its_position(client: Any, tagged: Tagged) -> None:
    login(client, "a.admin")
    r = client.get(
        "/b/a-coffee/tags/check", params={"rule": "count(order_payed, last 90d) >= 2"}, headers=HX
    )
    assert r.status_code == 200
    assert 'data-code="tags.unknown_event"' in r.text
    assert 'data-line="1" data-column="7"' in r.text
    assert "count(<mark>order_payed</mark>, last 90d) &gt;= 2" in r.text
    assert "第 1 行第 7 列" in r.text
    # a syntax error on the second line
    r = client.get(
        "/b/a-coffee/tags/check",
        params={"rule": "exists(order_paid)\n and count(order_paid >="},
        headers=HX,
    )
    assert 'data-code="tags.parse_error"' in r.text and 'data-line="2"' in r.text
    # without htmx the check is a page with its own form
    page = client.get("/b/a-coffee/tags/check", params={"rule": "exists(order_paid)"})
    assert "<html" in page.text and 'data-count="2"' in page.text


def test_create_edit_pause_and_delete_a_rule_tag(client: Any, db: Session, tagged: Tagged) -> None:
    login(client, "a.admin")
    form = {
        "csrf_token": client.cookies.get("siyu_csrf"),
        "group": "rules",
        "key": "big_spender",
        "name": "高消费",
        "rule": "sum(order_paid.paid_fen, last 90d) >= ¥50",
        "stale_after_hours": "26",
    }
    r = client.post("/b/a-coffee/tags", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"]).text
    assert 'data-done="created"' in page and 'data-health="never"' in row(
        page, "tag", "big_spender"
    )
    # a rule that does not check stays in the form, with the error at the rule
    bad = client.post("/b/a-coffee/tags", data={**form, "key": "typo", "rule": "sum(x) >= 1"})
    assert bad.status_code == 422
    new = section(bad.text, "new-tag")
    assert 'data-code="tags.unknown_event"' in new and "sum(x) &gt;= 1</textarea>" in new
    # edit the rule
    r = client.post(
        "/b/a-coffee/tags/big_spender/edit",
        data={
            "csrf_token": form["csrf_token"],
            "name": "高消费客户",
            "rule": "sum(order_paid.paid_fen, last 30d) >= ¥60",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    fresh(db)
    tag = db.scalar(select(Tag).where(Tag.key == "big_spender"))
    assert tag is not None and tag.name == "高消费客户"
    assert tag.rule == "sum(order_paid.paid_fen, last 30d) >= 6000"
    bad = client.post(
        "/b/a-coffee/tags/big_spender/edit",
        data={"csrf_token": form["csrf_token"], "name": "x", "rule": "count(order_paid"},
    )
    assert bad.status_code == 422 and 'data-code="tags.parse_error"' in bad.text
    # pause and resume
    token = {"csrf_token": form["csrf_token"]}
    client.post("/b/a-coffee/tags/big_spender/status", data={**token, "status": "paused"})
    assert 'data-health="paused"' in row(client.get("/b/a-coffee/tags").text, "tag", "big_spender")
    client.post("/b/a-coffee/tags/big_spender/status", data={**token, "status": "active"})
    assert 'data-health="never"' in row(client.get("/b/a-coffee/tags").text, "tag", "big_spender")
    # delete
    r = client.post("/b/a-coffee/tags/big_spender/delete", data=token, follow_redirects=False)
    assert r.status_code == 303
    assert 'data-tag="big_spender"' not in client.get("/b/a-coffee/tags").text
    assert client.get("/b/a-coffee/tags/big_spender/edit").status_code == 404
    fresh(db)
    audited = set(db.scalars(select(AuditEntry.action).where(AuditEntry.action.like("tag.%"))))
    assert {"tag.create", "tag.update", "tag.delete"} <= audited


def test_create_a_manual_tag_and_a_group(client: Any, tagged: Tagged) -> None:
    login(client, "a.admin")
    token = client.cookies.get("siyu_csrf")
    r = client.post(
        "/b/a-coffee/tags/groups",
        data={"csrf_token": token, "key": "habits", "name": "习惯", "kind": "manual"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    r = client.post(
        "/b/a-coffee/tags",
        data={"csrf_token": token, "group": "habits", "key": "oat_milk", "name": "燕麦奶"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    page = client.get("/b/a-coffee/tags").text
    assert 'data-tag="oat_milk"' in section(page, "group-habits")
    dup = client.post(
        "/b/a-coffee/tags",
        data={"csrf_token": token, "group": "habits", "key": "oat_milk", "name": "x"},
    )
    assert dup.status_code == 409 and 'data-code="tags.exists"' in dup.text


def test_compute_now(client: Any, tagged: Tagged) -> None:
    login(client, "a.admin")
    token = client.cookies.get("siyu_csrf")
    r = client.post(
        "/b/a-coffee/tags/compute",
        data={"csrf_token": token, "mode": "full"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get(r.headers["location"]).text
    assert 'id="run-notice"' in page and 'data-status="partial"' in page
    r = client.post(
        "/b/a-coffee/tags/compute",
        data={"csrf_token": token, "mode": "auto", "back": "health"},
        follow_redirects=False,
    )
    assert r.headers["location"].startswith("/b/a-coffee/tags/health?run=")
    health = client.get(r.headers["location"]).text
    assert len(re.findall(r'<tr data-run="', health)) == 3


# ---------------------------------------------------------------- permissions and tenancy


def test_another_tenants_tags_are_not_found(client: Any, tagged: Tagged) -> None:
    headers = login(client, "t.admin")
    for path in (
        "/b/a-coffee/tags",
        "/b/a-coffee/tags/health",
        "/b/a-coffee/tags/check?rule=exists(order_paid)",
        "/b/a-coffee/tags/repeat_buyer/edit",
        "/b/a-coffee/segments",
        "/b/a-coffee/segments/preview?definition=tag_repeat_buyer",
    ):
        assert client.get(path).status_code == 404, path
    r = client.post("/b/a-coffee/tags/compute", headers=headers)
    assert r.status_code == 404
    # and t.admin's own brand does not reach a-coffee's tag by its key
    assert client.get("/b/a-tea/tags/repeat_buyer/edit").status_code == 404


def test_without_tags_write_no_forms_and_no_writes(client: Any, tagged: Tagged) -> None:
    headers = login(client, "a.guide")
    page = client.get("/b/a-coffee/tags")
    assert page.status_code == 200
    assert 'data-tag="repeat_buyer"' in page.text
    assert 'id="new-tag"' not in page.text and 'id="compute"' not in page.text
    assert 'id="compute"' not in client.get("/b/a-coffee/tags/health").text
    assert 'id="edit-tag"' not in client.get("/b/a-coffee/tags/repeat_buyer/edit").text
    assert 'id="new-segment"' not in client.get("/b/a-coffee/segments").text
    token = {"csrf_token": headers["X-CSRF-Token"]}
    for path, data in (
        ("/b/a-coffee/tags", {"group": "rules", "key": "x_y", "name": "x", "rule": "true"}),
        ("/b/a-coffee/tags/groups", {"key": "g_g", "name": "g"}),
        ("/b/a-coffee/tags/compute", {}),
        ("/b/a-coffee/tags/repeat_buyer/edit", {"name": "x"}),
        ("/b/a-coffee/tags/repeat_buyer/status", {"status": "paused"}),
        ("/b/a-coffee/tags/repeat_buyer/delete", {}),
        ("/b/a-coffee/segments", {"key": "s_s", "name": "s", "definition": "true"}),
    ):
        r = client.post(path, data={**token, **data}, follow_redirects=False)
        assert r.status_code == 403, (path, r.status_code)
        assert 'data-code="auth.permission_denied"' in r.text
    check = client.get("/b/a-coffee/tags/check", params={"rule": "exists(order_paid)"}, headers=HX)
    assert check.status_code == 403


# ---------------------------------------------------------------- segments


def test_segment_preview_is_masked_and_counts_live(client: Any, tagged: Tagged) -> None:
    login(client, "a.admin")
    r = client.get(
        "/b/a-coffee/segments/preview",
        params={"definition": 'tag_repeat_buyer and city = "上海"'},
        headers=HX,
    )
    assert r.status_code == 200
    assert 'data-count="1"' in r.text
    rows = section_rows(r.text)
    assert rows == [tagged.cast.zhang]
    assert ZHANG_MASKED in r.text and ZHANG_PHONE not in r.text and "张**" in r.text
    bad = client.get(
        "/b/a-coffee/segments/preview", params={"definition": "tag_nope"}, headers=HX
    ).text
    assert 'data-code="tags.unknown_field"' in bad and "<mark>tag_nope</mark>" in bad


def section_rows(fragment: str) -> list[str]:
    return re.findall(r'<tr data-customer="([^"]+)"', fragment)


def test_segment_create_snapshot_and_export(client: Any, db: Session, tagged: Tagged) -> None:
    login(client, "a.admin")
    token = client.cookies.get("siyu_csrf")
    form = {"csrf_token": token, "key": "buyers", "name": "购买客户"}
    bad = client.post("/b/a-coffee/segments", data={**form, "definition": "tag_repeat_buyer and"})
    assert bad.status_code == 422
    assert 'data-code="tags.parse_error"' in section(bad.text, "new-segment")
    r = client.post(
        "/b/a-coffee/segments",
        data={**form, "definition": "tag_repeat_buyer or count(order_paid) >= 1"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"]).text
    assert 'data-done="created"' in page and 'data-segment="buyers"' in page
    r = client.post(
        "/b/a-coffee/segments/buyers/snapshot", data={"csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 303
    page = client.get(r.headers["location"]).text
    assert 'data-last-count="2"' in row(page, "segment", "buyers")
    # exports: the file itself, named, with masked values; each one audited
    r = client.post(
        "/b/a-coffee/segments/buyers/export", data={"csrf_token": token, "format": "csv"}
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert re.match(
        r'attachment; filename="buyers-\d{8}-\d{4}\.csv"', r.headers["content-disposition"]
    )
    lines = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert lines[0] == ["customer_id", "name", "phone", "city", "tags"]
    assert {line[0] for line in lines[1:]} == {tagged.cast.zhang, tagged.cast.li}
    assert ZHANG_PHONE not in r.text
    xlsx = client.post(
        "/b/a-coffee/segments/buyers/export", data={"csrf_token": token, "format": "xlsx"}
    )
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    audience = client.post(
        "/b/a-coffee/segments/buyers/export", data={"csrf_token": token, "format": "audience"}
    )
    assert audience.text.splitlines()[0] == "md5,sha256" and len(audience.text.splitlines()) == 3
    nope = client.post(
        "/b/a-coffee/segments/buyers/export", data={"csrf_token": token, "format": "pdf"}
    )
    assert nope.status_code == 422
    fresh(db)
    exports = list(db.scalars(select(AuditEntry).where(AuditEntry.action == "segment.export")))
    assert len(exports) == 3
    # an analyst defines segments but may not export them
    headers = login(client, "a.analyst")
    page = client.get("/b/a-coffee/segments").text
    assert 'data-export="buyers"' not in page and "/segments/buyers/snapshot" in page
    r = client.post(
        "/b/a-coffee/segments/buyers/export",
        data={"csrf_token": headers["X-CSRF-Token"], "format": "csv"},
    )
    assert r.status_code == 403


def test_segment_edit(client: Any, db: Session, tagged: Tagged) -> None:
    login(client, "a.admin")
    token = client.cookies.get("siyu_csrf")
    client.post(
        "/b/a-coffee/segments",
        data={"csrf_token": token, "key": "vips", "name": "VIP", "definition": "tag_repeat_buyer"},
    )
    page = client.get("/b/a-coffee/segments/vips/edit")
    assert page.status_code == 200 and 'data-count="1"' in page.text
    r = client.post(
        "/b/a-coffee/segments/vips/edit",
        data={"csrf_token": token, "name": "VIP 2", "definition": "not tag_repeat_buyer"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "not tag_repeat_buyer" in row(client.get("/b/a-coffee/segments").text, "segment", "vips")
    assert client.get("/b/a-coffee/segments/nope/edit").status_code == 404


# ---------------------------------------------------------------- Customer 360


def test_customer_tags_and_manual_tag_on_the_360(client: Any, db: Session, tagged: Tagged) -> None:
    login(client, "a.admin")
    zhang = tagged.cast.zhang
    page = client.get(f"/b/a-coffee/customers/{zhang}").text
    tags = section(page, "tags")
    assert 'data-tag="repeat_buyer"' in tags and "复购客户" in tags and "规则标签" in tags
    assert 'id="manual-tag-form"' in tags and 'value="coffee_fan"' in tags
    token = client.cookies.get("siyu_csrf")
    r = client.post(
        f"/b/a-coffee/customers/{zhang}/tags",
        data={"csrf_token": token, "tag": "coffee_fan", "present": "1"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    tags = section(client.get(f"/b/a-coffee/customers/{zhang}").text, "tags")
    held = row(tags, "tag", "coffee_fan")
    assert "咖啡控" in held and "A.ADMIN" in held and 'data-remove-tag="coffee_fan"' in held
    fresh(db)
    assert db.scalar(select(AuditEntry.id).where(AuditEntry.action == "tag.manual"))
    # a rule tag cannot be set by hand
    r = client.post(
        f"/b/a-coffee/customers/{zhang}/tags",
        data={"csrf_token": token, "tag": "repeat_buyer", "present": "1"},
    )
    assert r.status_code == 422 and 'data-code="tags.not_manual"' in section(r.text, "tags")
    # remove it again
    r = client.post(
        f"/b/a-coffee/customers/{zhang}/tags",
        data={"csrf_token": token, "tag": "coffee_fan", "present": "0"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert 'data-tag="coffee_fan"' not in section(
        client.get(f"/b/a-coffee/customers/{zhang}").text, "tags"
    )


def test_manual_tag_form_needs_customers_write(client: Any, tagged: Tagged) -> None:
    headers = login(client, "a.analyst")
    zhang = tagged.cast.zhang
    tags = section(client.get(f"/b/a-coffee/customers/{zhang}").text, "tags")
    assert 'data-tag="repeat_buyer"' in tags and 'id="manual-tag-form"' not in tags
    r = client.post(
        f"/b/a-coffee/customers/{zhang}/tags",
        data={"csrf_token": headers["X-CSRF-Token"], "tag": "coffee_fan"},
    )
    assert r.status_code == 403
    # another tenant's admin cannot reach the customer through its own brand either
    headers = login(client, "t.admin")
    r = client.post(
        f"/b/a-tea/customers/{zhang}/tags",
        data={"csrf_token": headers["X-CSRF-Token"], "tag": "coffee_fan"},
    )
    assert r.status_code == 404
