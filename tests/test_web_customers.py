"""The customer console: search, data scope, the Customer 360, reveal, split, merge, OneID
reviews and the full run — over real HTTP, on SQLite and PostgreSQL.

The cast is ``world`` (tests/factories.py) plus the customers of tests/customer_factories.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.audit import AuditEntry
from siyu.customers.models import Review
from siyu.customers.schemas import ID_TYPES
from siyu.customers.views import Customer360
from siyu.web.render import env, translator
from tests.customer_factories import (
    LI_PHONE,
    ZHANG_MASKED,
    ZHANG_PHONE,
    Cast,
    identity_ids,
    observation,
    seed_customers,
    seed_review,
)
from tests.factories import login

LOCALES = Path(__file__).parents[1] / "src" / "siyu" / "core" / "locales"


@pytest.fixture
def cast(db: Session, world: Any) -> Cast:
    return seed_customers(db)


def fresh(db: Session) -> None:
    """See what the app committed: end the test session's snapshot and forget loaded rows
    (its sessions do not expire on commit; a rollback always does)."""
    db.rollback()


def shown(page: str) -> set[str]:
    """Customer ids listed in the search results table."""
    return set(re.findall(r'<tr data-customer="([^"]+)"', page))


def section(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    return page[start : page.index("</section>", start)]


# ---------------------------------------------------------------- search and data scope


def test_search_by_full_phone_finds_the_customer(client: Any, cast: Cast) -> None:
    login(client, "a.admin")
    r = client.get("/b/a-coffee/customers", params={"q": ZHANG_PHONE})
    assert r.status_code == 200
    assert shown(r.text) == {cast.zhang}
    table = section(r.text, "customer-results")
    assert ZHANG_MASKED in table and ZHANG_PHONE not in table
    assert "张**" in table and "A.GUIDE" in table
    assert "2026-05-01 10:01:00" in table  # last seen, in the brand's zone (UTC+8)
    # the same phone typed another way, a member number, a WeCom contact, an id
    assert shown(client.get("/b/a-coffee/customers?q=%2B86%20135-1234-6810").text) == {cast.zhang}
    assert shown(client.get("/b/a-coffee/customers?q=M-002").text) == {cast.li}
    assert shown(client.get("/b/a-coffee/customers?q=wmZhang001").text) == {cast.zhang}
    assert shown(client.get(f"/b/a-coffee/customers?q={cast.wang}").text) == {cast.wang}
    # a partial phone number matches nothing: phones are matched by keyed hash only
    miss = client.get("/b/a-coffee/customers?q=1351234").text
    assert shown(miss) == set() and "没有找到匹配的客户" in miss
    # no query: the most recently seen customers
    assert shown(client.get("/b/a-coffee/customers").text) == {cast.zhang, cast.li, cast.wang}


def test_store_manager_sees_only_their_stores_customers(client: Any, cast: Cast) -> None:
    login(client, "a.sh01mgr")
    assert shown(client.get("/b/a-coffee/customers").text) == {cast.zhang}
    assert shown(client.get(f"/b/a-coffee/customers?q={LI_PHONE}").text) == set()
    assert client.get(f"/b/a-coffee/customers/{cast.zhang}").status_code == 200
    r = client.get(f"/b/a-coffee/customers/{cast.li}")
    assert r.status_code == 404
    assert 'data-code="customers.not_found"' in r.text


def test_regional_manager_sees_their_region(client: Any, cast: Cast) -> None:
    login(client, "a.east")
    assert shown(client.get("/b/a-coffee/customers").text) == {cast.zhang, cast.wang}


def test_guide_sees_only_the_customers_they_serve(client: Any, cast: Cast) -> None:
    login(client, "a.guide")
    assert shown(client.get("/b/a-coffee/customers").text) == {cast.zhang}
    assert client.get(f"/b/a-coffee/customers/{cast.wang}").status_code == 404
    # a guide of the store next door serves nobody yet, though a customer lives there
    login(client, "shared")
    assert shown(client.get("/b/a-coffee/customers").text) == set()
    assert client.get(f"/b/a-coffee/customers/{cast.wang}").status_code == 404


def test_other_brands_customers_are_not_found(client: Any, cast: Cast) -> None:
    login(client, "t.admin")
    assert shown(client.get("/b/a-tea/customers").text) == set()
    assert client.get(f"/b/a-tea/customers/{cast.zhang}").status_code == 404
    assert client.get(f"/b/a-coffee/customers/{cast.zhang}").status_code == 404


def test_another_tenants_customers_are_unreachable_through_ones_own_brand(
    client: Any, db: Session, cast: Cast
) -> None:
    # given a-coffee's real customer, identity and review ids
    review = seed_review(db)
    identity = identity_ids(db, cast.zhang, "unionid")[0]
    # when b-shop's admin uses them on b-shop's own paths
    headers = login(client, "b.admin")
    attempts = [
        ("GET", f"/b/b-shop/customers/{cast.zhang}", {}),
        ("POST", f"/b/b-shop/customers/{cast.zhang}/reveal", {"field": "phone"}),
        ("POST", f"/b/b-shop/customers/{cast.zhang}/split", {"identity": identity}),
        ("POST", f"/b/b-shop/customers/{cast.zhang}/merge", {"other": cast.li}),
        ("POST", f"/b/b-shop/oneid/reviews/{review.id}/decide", {"decision": "approve"}),
    ]
    for method, url, data in attempts:
        r = client.request(method, url, headers=headers, data=data)
        # then nothing of a-coffee exists for them
        assert r.status_code == 404, (url, r.status_code)
        assert ZHANG_PHONE not in r.text and ZHANG_MASKED not in r.text
    assert shown(client.get(f"/b/b-shop/customers?q={ZHANG_PHONE}").text) == set()
    fresh(db)
    assert db.scalar(select(Review.status).where(Review.id == review.id)) == "open"
    assert "customer.reveal" not in set(db.scalars(select(AuditEntry.action)))


def test_navigation_follows_permissions(client: Any, cast: Cast) -> None:
    login(client, "a.admin")
    page = client.get("/b/a-coffee").text
    assert 'href="/b/a-coffee/customers"' in page and 'href="/b/a-coffee/oneid/reviews"' in page
    login(client, "a.sh01mgr")
    page = client.get("/b/a-coffee").text
    assert 'href="/b/a-coffee/customers"' in page
    assert 'href="/b/a-coffee/oneid/reviews"' not in page
    r = client.get("/b/a-coffee/oneid/reviews")
    assert r.status_code == 403 and 'data-code="auth.permission_denied"' in r.text


# ---------------------------------------------------------------- the Customer 360


def test_360_shows_profile_identities_owners_and_consents(client: Any, cast: Cast) -> None:
    login(client, "a.admin")
    r = client.get(f"/b/a-coffee/customers/{cast.zhang}")
    assert r.status_code == 200
    profile = section(r.text, "profile")
    for text in ("张**", "三丰", "男", "1990-04-01", "上海", "level", "gold", ZHANG_MASKED):
        assert text in profile, text
    identities = section(r.text, "identities")
    for text in ("手机号", "企微外部联系人", "UnionID", "会员号", "邮箱", "wecom", "crm"):
        assert text in identities, text
    assert "wmZh…g001" in identities and "s***@example.com" in identities
    owners = section(r.text, "owners")
    assert "A.GUIDE" in owners and "a.guide" in owners and "服务中" in owners
    consents = section(r.text, "consents")
    assert "营销触达" in consents and "已同意" in consents and ZHANG_MASKED in consents
    assert "暂无行为记录" in section(r.text, "timeline")
    assert "暂无订单" in section(r.text, "orders")
    assert ZHANG_PHONE not in r.text and "张三丰" not in r.text
    # an admin may reveal, merge and split
    assert r.text.count('name="field" value=') == 3
    assert 'id="split"' in r.text and 'id="merge"' in r.text


def test_guide_360_has_no_reveal_or_operator_forms(client: Any, cast: Cast) -> None:
    login(client, "a.guide")
    page = client.get(f"/b/a-coffee/customers/{cast.zhang}").text
    assert ZHANG_MASKED in page
    assert 'name="field"' not in page
    assert 'id="split"' not in page and 'id="merge"' not in page


def test_360_in_english(client: Any, cast: Cast) -> None:
    login(client, "a.admin")
    client.cookies.set("siyu_lang", "en")
    page = client.get(f"/b/a-coffee/customers/{cast.zhang}").text
    assert '<html lang="en">' in page
    for text in (
        "WeCom external contact",
        "Member number",
        "Owner guides",
        "Consents",
        "Marketing",
        "Granted",
        "No events yet",
        "No orders yet",
        "Reveal",
        "Male",
    ):
        assert text in page, text
    listing = client.get("/b/a-coffee/customers").text
    assert "Recently seen customers" in listing and "Owner guide" in listing


def test_360_renders_timeline_and_orders_from_the_lake() -> None:
    # given a 360 whose lake parts are filled (what the lake integration hands over)
    view = Customer360.model_validate(
        {
            "id": "C1",
            "status": "active",
            "name": "张**",
            "nickname": None,
            "gender": None,
            "birthday": None,
            "city": None,
            "attributes": {},
            "owner_staff_id": None,
            "home_unit_id": None,
            "first_seen_at": None,
            "last_seen_at": None,
            "conflicted": False,
            "identities": [],
            "consents": [],
            "owners": [],
            "history": [],
            "timeline": [
                {
                    "at": "2026-05-01T02:00:00+00:00",
                    "event_type": "add_contact",
                    "channel": "wecom",
                    "source": "wecom",
                    "summary": "添加导购企微",
                }
            ],
            "orders": [
                {
                    "order_id": "T-9001",
                    "channel": "tmall",
                    "paid_at": "2026-05-02T04:30:00+00:00",
                    "amount_fen": 123450,
                    "status": "paid",
                }
            ],
        }
    )
    from siyu.web.customers import labeller

    # when the page template renders it
    body = env.get_template("customers_360.html").render(
        t=translator("zh-CN"),
        locale="zh-CN",
        here="/",
        request=None,
        user={"name": "X", "username": "x"},
        brands=[],
        brand={"slug": "a-coffee", "name": "A", "timezone": "Asia/Shanghai", "id": "b"},
        perms=frozenset(),
        nav=[],
        csrf="tok",
        c=view,
        pii={"name": "张**", "phone": "", "email": ""},
        revealed={},
        label=labeller("zh-CN"),
        split_form=None,
        merge_form=None,
        notice={},
    )
    # then times are in the brand's zone, money is yuan from integer fen, labels translated
    timeline = section(body, "timeline")
    assert "2026-05-01 10:00:00" in timeline and "企业微信" in timeline
    assert "添加导购企微" in timeline and "暂无行为记录" not in timeline
    orders = section(body, "orders")
    assert "T-9001" in orders and "¥1,234.50" in orders and "天猫" in orders
    assert "2026-05-02 12:30:00" in orders and "已支付" in orders


# ---------------------------------------------------------------- reveal


def test_reveal_in_place_is_audited(client: Any, db: Session, cast: Cast) -> None:
    headers = login(client, "a.admin")
    url = f"/b/a-coffee/customers/{cast.zhang}/reveal"
    # htmx: a fragment replacing the masked value
    r = client.post(url, data={"field": "phone"}, headers={**headers, "HX-Request": "true"})
    assert r.status_code == 200
    assert r.text.lstrip().startswith('<span class="pii" id="pii-phone"')
    assert ZHANG_PHONE in r.text and "<html" not in r.text
    # without JavaScript: the whole page, with the plain value in place
    r = client.post(url, data={"field": "name", "csrf_token": headers["X-CSRF-Token"]})
    assert r.status_code == 200 and "张三丰" in r.text and 'id="profile"' in r.text
    fresh(db)
    reveals = db.scalars(
        select(AuditEntry).where(AuditEntry.action == "customer.reveal").order_by(AuditEntry.id)
    ).all()
    assert [(e.entity_id, e.actor_label, (e.after or {})["field"]) for e in reveals] == [
        (cast.zhang, "A.ADMIN (a.admin)", "phone"),
        (cast.zhang, "A.ADMIN (a.admin)", "name"),
    ]
    assert all(ZHANG_PHONE not in json.dumps(e.after) for e in reveals)


def test_reveal_errors(client: Any, cast: Cast) -> None:
    headers = login(client, "a.admin")
    hx = {**headers, "HX-Request": "true"}
    r = client.post(
        f"/b/a-coffee/customers/{cast.wang}/reveal", data={"field": "email"}, headers=hx
    )
    assert r.status_code == 404 and "该客户没有 email" in r.text and "<html" not in r.text
    r = client.post(f"/b/a-coffee/customers/{cast.wang}/reveal", data={"field": "x"}, headers=hx)
    assert r.status_code == 422 and 'data-code="customers.bad_reveal_field"' in r.text
    r = client.post(f"/b/a-coffee/customers/{cast.zhang}/reveal", data={"field": "phone"})
    assert r.status_code == 403 and 'data-code="auth.csrf_failed"' in r.text


# ---------------------------------------------------------------- split and merge


def test_split_through_the_console(client: Any, db: Session, world: Any) -> None:
    from siyu.core.tenancy import SYSTEM
    from siyu.customers import actions
    from siyu.org import queries as org_queries

    brand = org_queries.access_brand(db, SYSTEM, "a-coffee")
    found = actions.observe_batch(
        db,
        SYSTEM,
        brand,
        [
            observation(0, "wecom", ids={"external_userid": "wmA", "unionid": "uA"}),
            observation(1, "pos", ids={"pos_card": "CARD-A", "phone": "13700000001"}),
            # a cashier typed the wrong card: it links two different people
            observation(2, "pos", ids={"unionid": "uA", "pos_card": "CARD-A"}),
        ],
    )
    cid = found[0].customer_id or ""
    moving = identity_ids(db, cid, "pos_card", "phone")
    headers = login(client, "a.admin")
    # given a bad choice (every identity), the form says so and keeps the choice
    everything = identity_ids(db, cid, "pos_card", "phone", "unionid", "external_userid")
    r = client.post(
        f"/b/a-coffee/customers/{cid}/split",
        headers=headers,
        data={"identity": everything, "note": "oops"},
    )
    assert r.status_code == 422
    split = section(r.text, "split")
    assert 'data-code="customers.bad_split"' in split and "has-error" in split
    assert split.count("checked") == 4 and 'value="oops"' in split
    # when the wrongly linked identities are moved out
    r = client.post(
        f"/b/a-coffee/customers/{cid}/split",
        headers=headers,
        data={"identity": moving, "note": "wrong card"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    stayed_url = r.headers["location"]
    moved_id = stayed_url.split("split=")[1]
    assert stayed_url.startswith(f"/b/a-coffee/customers/{cid}?")
    # then the page says so, and each customer holds its own identities
    page = client.get(stayed_url).text
    assert "已拆分" in page and "拆分" in section(page, "history")
    assert "137****0001" not in section(page, "identities")
    moved = client.get(f"/b/a-coffee/customers/{moved_id}").text
    assert "137****0001" in section(moved, "identities")


def test_merge_through_the_console(client: Any, db: Session, cast: Cast) -> None:
    headers = login(client, "a.admin")
    url = f"/b/a-coffee/customers/{cast.zhang}/merge"
    # errors stay on the form
    r = client.post(url, headers=headers, data={"other": ""})
    assert r.status_code == 422
    assert 'data-code="customers.merge_needs_two"' in section(r.text, "merge")
    r = client.post(url, headers=headers, data={"other": "01NOSUCHCUSTOMER0000000000"})
    assert r.status_code == 404
    merge = section(r.text, "merge")
    assert 'data-code="customers.not_found"' in merge and "has-error" in merge
    assert 'value="01NOSUCHCUSTOMER0000000000"' in merge
    # a merge with a customer the store manager cannot see is refused for them
    mgr = login(client, "a.sh01mgr")
    r = client.post(url, headers=mgr, data={"other": cast.li})
    assert r.status_code == 403
    # the admin merges
    headers = login(client, "a.admin")
    r = client.post(
        url, headers=headers, data={"other": cast.li, "note": "同一人"}, follow_redirects=False
    )
    assert r.status_code == 303
    survivor = r.headers["location"].split("/customers/")[1].split("?")[0]
    gone = cast.li if survivor == cast.zhang else cast.zhang
    page = client.get(r.headers["location"]).text
    assert "已合并客户" in page
    identities = section(page, "identities")
    assert ZHANG_MASKED in identities and "139****1111" in identities
    assert "合并" in section(page, "history")
    # the merged-away id leads to the survivor
    r = client.get(f"/b/a-coffee/customers/{gone}", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"/b/a-coffee/customers/{survivor}?merged_from={gone}"
    assert f"客户 {gone} 已合并到此客户" in client.get(r.headers["location"]).text
    fresh(db)
    assert "customer.merge" in set(db.scalars(select(AuditEntry.action)))


# ---------------------------------------------------------------- OneID reviews


def test_review_approve_and_reject_through_the_console(
    client: Any, db: Session, world: Any
) -> None:
    first = seed_review(db, "A", "13600000001")
    second = seed_review(db, "B", "13600000002")
    headers = login(client, "a.admin")
    page = client.get("/b/a-coffee/oneid/reviews").text
    item = page[page.index(f'data-review="{first.id}"') :]
    item = item[: item.index("</li>")]
    assert "唯一标识冲突" in item and "会员号" in item and "手机号" in item
    for cid in first.customer_ids:
        assert f'href="/b/a-coffee/customers/{cid}"' in item
    assert "136****0001" in item
    # approve the first
    r = client.post(
        f"/b/a-coffee/oneid/reviews/{first.id}/decide",
        headers=headers,
        data={"decision": "approve", "note": "补办会员卡"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get(r.headers["location"]).text
    assert f"已批准合并（审核 {first.id}）" in page
    assert f'data-review="{first.id}"' not in page and f'data-review="{second.id}"' in page
    # reject the second
    r = client.post(
        f"/b/a-coffee/oneid/reviews/{second.id}/decide",
        headers=headers,
        data={"decision": "reject"},
    )
    assert r.status_code == 200 and "已驳回" in r.text and "没有待审核的合并" in r.text
    fresh(db)
    decided = {r.id: (r.status, r.note, r.decided_by) for r in db.scalars(select(Review))}
    assert decided[first.id] == ("approved", "补办会员卡", "A.ADMIN (a.admin)")
    assert decided[second.id] == ("rejected", None, "A.ADMIN (a.admin)")
    # a decided review cannot be decided again; a bad decision is refused
    r = client.post(
        f"/b/a-coffee/oneid/reviews/{first.id}/decide", headers=headers, data={"decision": "reject"}
    )
    assert r.status_code == 409 and 'data-code="customers.review_closed"' in r.text
    r = client.post(
        f"/b/a-coffee/oneid/reviews/{first.id}/decide", headers=headers, data={"decision": "maybe"}
    )
    assert r.status_code == 422 and 'data-code="validation.failed"' in r.text


def test_reviews_in_english(client: Any, db: Session, world: Any) -> None:
    seed_review(db)
    login(client, "a.admin")
    client.cookies.set("siyu_lang", "en")
    page = client.get("/b/a-coffee/oneid/reviews").text
    for text in ("Merge reviews", "Unique identifier conflict", "Member number", "Approve merge"):
        assert text in page, text


def test_full_run_shows_its_statistics(client: Any, db: Session, cast: Cast) -> None:
    headers = login(client, "a.admin")
    r = client.post("/b/a-coffee/oneid/run", headers=headers)
    assert r.status_code == 200
    stats = section(r.text, "full-run")
    assert "全量计算完成" in stats
    assert re.search(r'data-stat="identities"><td>标识</td><td class="num">(\d+)</td>', stats)
    fresh(db)
    assert "oneid.full_run" in set(db.scalars(select(AuditEntry.action)))
    # it needs customers.merge
    mgr = login(client, "a.sh01mgr")
    assert client.post("/b/a-coffee/oneid/run", headers=mgr).status_code == 403


# ---------------------------------------------------------------- catalogue


def test_every_identifier_type_has_a_label_in_both_languages() -> None:
    for locale in ("zh-CN", "en"):
        catalogue = json.loads((LOCALES / f"{locale}.json").read_text(encoding="utf-8"))
        missing = [t for t in ID_TYPES if f"ui.id_type.{t}" not in catalogue]
        assert missing == [], (locale, missing)
    zh = json.loads((LOCALES / "zh-CN.json").read_text(encoding="utf-8"))
    assert zh["ui.id_type.external_userid"] == "企微外部联系人"
    assert zh["ui.id_type.mini_openid"] == "小程序 OpenID"
