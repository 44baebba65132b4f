"""UGC / KOC notes: link checks and duplicates, the review workflow (reasons, audit, roles),
the reward paid exactly once, and attribution of customers, orders and GMV to a note
(acceptance 4) — on SQLite and PostgreSQL, with real lake facts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.content import ugc
from siyu.content.models import KocNote, RewardLedger, TrackingLink
from siyu.core.audit import AuditEntry
from siyu.core.errors import Conflict, Forbidden, Invalid, NotFound
from siyu.core.tenancy import SYSTEM, Actor
from siyu.ingest import actions as ingest
from siyu.org import auth
from siyu.org.models import Brand, Staff
from siyu.org.queries import access_brand

XHS = "https://www.xiaohongshu.com/explore/6650a1b2c3d4e5f6a7b8c9d0"
XHS_SAME = "http://xiaohongshu.com/discovery/item/6650a1b2c3d4e5f6a7b8c9d0?xsec_token=AB1&xsec_source=pc_share#c"


def actor_of(db: Session, username: str) -> Actor:
    staff = db.scalar(select(Staff).where(Staff.username == username))
    assert staff is not None
    return auth.actor_for_staff(db, staff)


def coffee(db: Session) -> Brand:
    return access_brand(db, SYSTEM, "a-coffee")


def note_in(url: str = XHS, **kw: Any) -> ugc.KocNoteIn:
    return ugc.KocNoteIn(url=url, title=kw.pop("title", "拿铁测评"), **kw)


def ev(eid: str, etype: str, when: str, phone: str, **props: Any) -> dict[str, Any]:
    return {
        "event_id": eid,
        "event_type": etype,
        "occurred_at": when,
        "source": "test",
        "identifiers": [{"type": "phone", "value": phone}],
        "properties": props,
    }


def order(eid: str, when: str, phone: str, fen: int) -> dict[str, Any]:
    return ev(eid, "order_paid", when, phone, order_id=eid, channel="mini_mall", paid_fen=fen)


# ---------------------------------------------------------------- links (no store)


@pytest.mark.parametrize(
    ("url", "platform", "canonical"),
    [
        (XHS, None, "https://xiaohongshu.com/explore/6650a1b2c3d4e5f6a7b8c9d0"),
        (XHS_SAME, "xiaohongshu", "https://xiaohongshu.com/explore/6650a1b2c3d4e5f6a7b8c9d0"),
        ("https://xhslink.com/a/Bc1dE2", None, "https://xhslink.com/a/Bc1dE2"),
        (
            "https://www.douyin.com/video/7300000000000000001?previous_page=app_code_link",
            None,
            "https://douyin.com/video/7300000000000000001",
        ),
        ("https://Blog.Example.cn/p/1/?b=2&a=1&utm_source=x", "other", None),
    ],
)
def test_canonical_links(url: str, platform: str | None, canonical: str | None) -> None:
    found, link = ugc.canonical_url(url, platform)
    if canonical is not None:
        assert link == canonical
    else:
        assert link == "https://blog.example.cn/p/1?a=1&b=2"
        assert found == "other"


@pytest.mark.parametrize(
    ("url", "platform", "code"),
    [
        ("https://www.douyin.com/video/1", "xiaohongshu", "content.koc_bad_url"),
        ("javascript:alert(1)", None, "content.koc_bad_url"),
        ("https://user:pw@xiaohongshu.com/explore/1", None, "content.koc_bad_url"),
        ("https://xiaohongshu.com:8443/explore/1", None, "content.koc_bad_url"),
        ("https://127.0.0.1/note", "other", "content.koc_bad_url"),
        ("https://localhost/note", "other", "content.koc_bad_url"),
        ("https://xiaohongshu.com/" + "a" * 1000, None, "content.koc_bad_url"),
        ("https://xiaohongshu.com.evil.cn/explore/1", "xiaohongshu", "content.koc_bad_url"),
        (XHS, "myspace", "content.koc_bad_platform"),
    ],
)
def test_bad_links_are_refused(url: str, platform: str | None, code: str) -> None:
    with pytest.raises(Invalid) as err:
        ugc.canonical_url(url, platform)
    assert err.value.code == code
    assert err.value.errors and err.value.errors[0].field in ("url", "platform")


# ---------------------------------------------------------------- submit and review


def test_submit_dedupes_the_same_post(db: Session, world: Any) -> None:
    brand = coffee(db)
    admin = actor_of(db, "a.admin")
    # given a note a staff member submitted
    note = ugc.submit_note(db, admin, brand, note_in(author="latte_lover"))
    assert note.status == "submitted" and note.platform == "xiaohongshu"
    assert note.staff_id == admin.staff_id and note.meta["author"] == "latte_lover"
    # when the same post comes again through another link shape, it is refused
    with pytest.raises(Conflict) as err:
        ugc.submit_note(db, SYSTEM, brand, note_in(XHS_SAME, title="again"))
    assert err.value.code == "content.koc_duplicate" and err.value.params["note"] == note.id
    # another brand may have the same post
    other = ugc.submit_note(db, SYSTEM, access_brand(db, SYSTEM, "a-tea"), note_in())
    assert other.id != note.id
    n = db.scalar(select(func.count()).select_from(KocNote).where(KocNote.brand_id == brand.id))
    assert n == 1


def test_guide_and_analyst_cannot_submit_or_review(db: Session, world: Any) -> None:
    brand = coffee(db)
    guide = actor_of(db, "a.guide")
    for who in (guide, actor_of(db, "a.analyst")):
        with pytest.raises(Forbidden):
            ugc.submit_note(db, who, brand, note_in())
    note = ugc.submit_note(db, actor_of(db, "a.admin"), brand, note_in())
    with pytest.raises(Forbidden) as err:
        ugc.approve_note(db, guide, brand, note.id, ugc.KocApproval(reward_fen=500))
    assert err.value.code == "auth.permission_denied"
    with pytest.raises(Forbidden):
        ugc.reject_note(db, guide, brand, note.id, "不相关")
    db.rollback()
    assert db.scalar(select(func.count()).select_from(RewardLedger)) == 0


@pytest.mark.parametrize(
    ("role", "scope", "submits", "reviews"),
    [
        ("content_operator", "brand", True, True),
        ("community_operator", "brand", True, False),
        ("hq_operator", "brand", True, True),
        ("store_manager", "unit", False, False),
    ],
)
def test_roles(
    db: Session, world: Any, role: str, scope: str, submits: bool, reviews: bool
) -> None:
    from siyu.org import actions as org_actions
    from siyu.org.schemas import StaffIn

    brand = coffee(db)
    unit = "A-SH01" if scope == "unit" else None
    org_actions.create_staff(
        db,
        SYSTEM,
        brand,
        StaffIn(name="R", username=f"r.{role}", password="password123", role=role, scope=scope,
                unit=unit),  # type: ignore[arg-type]
    )  # fmt: skip
    who = actor_of(db, f"r.{role}")
    if submits:
        note = ugc.submit_note(db, who, brand, note_in())
    else:
        with pytest.raises(Forbidden):
            ugc.submit_note(db, who, brand, note_in())
        note = ugc.submit_note(db, SYSTEM, brand, note_in())
    if reviews:
        assert ugc.approve_note(db, who, brand, note.id).status == "approved"
    else:
        with pytest.raises((Forbidden, NotFound)):
            ugc.approve_note(db, who, brand, note.id)


def test_reject_needs_a_reason_and_is_audited(db: Session, world: Any) -> None:
    brand = coffee(db)
    admin = actor_of(db, "a.admin")
    note = ugc.submit_note(db, admin, brand, note_in())
    with pytest.raises(Invalid) as err:
        ugc.reject_note(db, admin, brand, note.id, "   ")
    assert err.value.code == "content.koc_reason_required"
    rejected = ugc.reject_note(db, admin, brand, note.id, "图片与门店无关")
    assert rejected.status == "rejected" and rejected.reject_reason == "图片与门店无关"
    entry = db.scalar(
        select(AuditEntry).where(
            AuditEntry.action == "content.koc_reject", AuditEntry.entity_id == note.id
        )
    )
    assert entry is not None and entry.actor_id == admin.id
    assert entry.after is not None and entry.after["reject_reason"] == "图片与门店无关"
    assert entry.before is not None and entry.before["status"] == "submitted"
    # a second look may still approve it; an approved note cannot then be rejected
    ugc.approve_note(db, admin, brand, note.id)
    with pytest.raises(Conflict) as again:
        ugc.reject_note(db, admin, brand, note.id, "改主意")
    assert again.value.code == "content.koc_already_approved"


def test_reward_is_paid_exactly_once(db: Session, world: Any) -> None:
    brand = coffee(db)
    admin = actor_of(db, "a.admin")
    note = ugc.submit_note(db, admin, brand, note_in())
    decision = ugc.KocApproval(reward_fen=1500, reward_points=200, state="xhs_latte_01")
    # when it is approved twice (the second time with other amounts)
    first = ugc.approve_note(db, admin, brand, note.id, decision)
    second = ugc.approve_note(db, admin, brand, note.id, ugc.KocApproval(reward_fen=9999))
    # then the ledger holds one row per unit, with the first decision's amounts
    rows = list(
        db.scalars(
            select(RewardLedger)
            .where(RewardLedger.koc_note_id == note.id)
            .order_by(RewardLedger.unit)
        )
    )
    assert [(r.unit, r.amount) for r in rows] == [("fen", 1500), ("points", 200)]
    assert all(r.staff_id == note.staff_id and r.customer_id is None for r in rows)
    assert first.status == second.status == "approved"
    assert second.reward_fen == 1500 and second.channel_state == "xhs_latte_01"
    approvals = db.scalar(
        select(func.count())
        .select_from(AuditEntry)
        .where(AuditEntry.action == "content.koc_approve", AuditEntry.entity_id == note.id)
    )
    assert approvals == 1
    # a note nobody can be rewarded for (no customer, no staff author) takes no reward
    orphan = ugc.submit_note(db, SYSTEM, brand, note_in("https://weibo.com/9/x"))
    with pytest.raises(Invalid) as nobody:
        ugc.approve_note(db, admin, brand, orphan.id, ugc.KocApproval(reward_points=5))
    assert nobody.value.code == "content.koc_no_recipient"
    # the same state on another note is refused
    other = ugc.submit_note(db, admin, brand, note_in("https://www.douyin.com/video/42"))
    with pytest.raises(Conflict) as err:
        ugc.approve_note(db, admin, brand, other.id, ugc.KocApproval(state="xhs_latte_01"))
    assert err.value.code == "content.koc_state_taken"
    with pytest.raises(Invalid):
        ugc.approve_note(db, admin, brand, other.id, ugc.KocApproval(state="含中文"))


def test_guide_sees_notes_of_their_customers_only(db: Session, world: Any) -> None:
    from tests.customer_factories import seed_customers

    cast = seed_customers(db)  # zhang is a.guide's customer, li is not
    brand = coffee(db)
    mine = ugc.submit_note(db, SYSTEM, brand, note_in(customer_id=cast.zhang))
    theirs = ugc.submit_note(
        db, SYSTEM, brand, note_in("https://www.douyin.com/video/7", customer_id=cast.li)
    )
    anonymous = ugc.submit_note(db, SYSTEM, brand, note_in("https://weibo.com/7/x"))
    guide = actor_of(db, "a.guide")
    assert [n.id for n in ugc.list_notes(db, guide, brand)] == [mine.id]
    for hidden in (theirs, anonymous):
        with pytest.raises(NotFound):
            ugc.get_note(db, guide, brand, hidden.id)
    admin = actor_of(db, "a.admin")
    assert {n.id for n in ugc.list_notes(db, admin, brand)} == {mine.id, theirs.id, anonymous.id}
    assert ugc.status_counts(db, admin, brand)["submitted"] == 3
    assert ugc.status_counts(db, guide, brand)["submitted"] == 1
    # another tenant's admin does not see the brand at all
    with pytest.raises(NotFound):
        ugc.list_notes(db, actor_of(db, "b.admin"), brand)


def test_import_reports_rows(db: Session, world: Any) -> None:
    brand = coffee(db)
    rows = [
        {"url": XHS, "title": "好喝"},
        {"url": XHS_SAME, "title": "同一篇"},
        {"url": "ftp://example.cn/x", "title": "坏链接"},
        {"url": "https://weibo.com/123/abc", "title": ""},
        {"url": "https://weibo.com/123/abc", "title": "微博", "platform": "weibo"},
    ]
    report = ugc.import_notes(db, SYSTEM, brand, rows)
    assert (report.created, report.duplicates, report.rejected) == (2, 1, 2)
    assert [(e["row"], e["field"]) for e in report.errors] == [(4, "url"), (5, "title")]


# ---------------------------------------------------------------- attribution (acceptance 4)

A, B, C, D = "13900005001", "13900005002", "13900005003", "13900005004"
E, F = "13900005005", "13900005006"
PHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47"
)


def customer_of(db: Session, brand: Brand, phone: str) -> str:
    from siyu.customers import vault
    from siyu.customers.models import Identity

    h = vault.match_hash(brand.id, "phone", vault.normalise("phone", phone))
    cid = db.scalar(
        select(Identity.customer_id).where(Identity.brand_id == brand.id, Identity.value_hash == h)
    )
    assert cid
    return cid


def test_note_attribution_counts_customers_orders_and_gmv(db: Session, world: Any) -> None:
    """A note's channel code and its tracking link bring customers; their orders inside the
    window (30 days from their first touch) appear on the note with the right GMV in fen."""
    from urllib.parse import parse_qsl, urlsplit

    from siyu.content import actions as content_actions
    from siyu.content.schemas import SettingsIn

    brand = coffee(db)
    admin = actor_of(db, "a.admin")
    content_actions.set_settings(db, admin, brand, SettingsIn(allowed_domains=["mall.a-coffee.cn"]))
    note = ugc.submit_note(db, admin, brand, note_in())
    decision = ugc.KocApproval(
        state="koc_latte", reward_points=100, target_url="https://mall.a-coffee.cn/latte"
    )
    ugc.approve_note(db, admin, brand, note.id, decision)
    link = db.get(TrackingLink, note.link_id)
    assert link is not None and link.koc_note_id == note.id
    other = ugc.submit_note(db, admin, brand, note_in("https://www.douyin.com/video/8"))
    ugc.approve_note(db, admin, brand, other.id, ugc.KocApproval(state="koc_other"))
    items = [
        # A adds a guide through the note's channel code, then buys twice inside the window
        # and once after it (day 40)
        ev("a-add", "wecom_contact_added", "2026-06-01T10:00:00+08:00", A,
           staff_userid="aguide", external_userid="wmA", state="koc_latte"),
        order("a-o1", "2026-06-02T12:00:00+08:00", A, 3800),
        order("a-o2", "2026-06-20T12:00:00+08:00", A, 2000),
        order("a-o3", "2026-07-11T12:00:00+08:00", A, 9900),
        # B bought before (not new), then the mall reports B arriving through the note
        order("b-o0", "2026-05-01T12:00:00+08:00", B, 1000),
        ev("b-click", "content_clicked", "2026-06-03T09:00:00+08:00", B, content_id=note.id),
        order("b-o1", "2026-06-05T12:00:00+08:00", B, 12800),
        # C came through another note; D never touched a note
        ev("c-add", "wecom_contact_added", "2026-06-01T10:00:00+08:00", C,
           staff_userid="aguide", external_userid="wmC", state="koc_other"),
        order("c-o1", "2026-06-02T12:00:00+08:00", C, 5000),
        order("d-o1", "2026-06-02T12:00:00+08:00", D, 7000),
        # E lands on the mall from the note's short link (the mall names the link's code)
        ev("e-land", "content_clicked", "2026-06-10T10:05:00+08:00", E, content_id=link.code),
        order("e-o1", "2026-06-10T10:30:00+08:00", E, 6600),
        # F, a known customer, opens the link signed for them, and buys two days later
        order("f-o0", "2026-06-01T12:00:00+08:00", F, 900),
        order("f-o1", "2026-06-12T12:00:00+08:00", F, 4400),
    ]  # fmt: skip
    out = ingest.ingest_batch(db, SYSTEM, brand, items)
    assert out.accepted == len(items), out
    clicked_at = datetime(2026, 6, 10, 2, 0, tzinfo=UTC)
    anonymous = content_actions.record_click(db, link.code, user_agent=PHONE_UA, now=clicked_at)
    assert anonymous.target is not None and anonymous.target.startswith("https://mall.a-coffee.cn/")
    f_id = customer_of(db, brand, F)
    signed = dict(parse_qsl(urlsplit(content_actions.signed_url(link, f_id)).query))
    content_actions.record_click(db, link.code, user_agent=PHONE_UA, params=signed, now=clicked_at)
    content_actions.record_click(db, link.code, user_agent="curl/8.0", now=clicked_at)  # a bot

    stats = ugc.attribution(db, admin, brand, [note, other])
    mine = stats[note.id]
    assert mine.clicks == 2  # the bot is not counted
    assert (mine.customers, mine.new_customers) == (4, 2)
    assert (mine.orders, mine.gmv_fen) == (5, 3800 + 2000 + 12800 + 6600 + 4400)
    by_customer = {r.customer_id: r for r in mine.rows}
    a, b = by_customer[customer_of(db, brand, A)], by_customer[customer_of(db, brand, B)]
    e, f = by_customer[customer_of(db, brand, E)], by_customer[f_id]
    assert (a.via, a.orders, a.gmv_fen, a.new) == ("state", 2, 5800, True)
    assert (b.via, b.orders, b.gmv_fen, b.new) == ("click", 1, 12800, False)
    assert (e.via, e.orders, e.gmv_fen, e.new) == ("click", 1, 6600, True)
    assert (f.via, f.orders, f.gmv_fen, f.new) == ("link", 1, 4400, False)
    assert a.phone == "139****5001"  # masked
    assert mine.rows[0].customer_id == b.customer_id  # by GMV
    theirs = stats[other.id]
    assert (theirs.customers, theirs.orders, theirs.gmv_fen) == (1, 1, 5000)

    # a longer window takes A's late order too
    note.meta = {**note.meta, "attribution_days": 60}
    db.commit()
    wider = ugc.attribution(db, admin, brand, [note])[note.id]
    assert (wider.orders, wider.gmv_fen) == (6, 29600 + 9900)

    # the guide A added (an "own" data scope) sees A and no one else
    guide_view = ugc.attribution(db, actor_of(db, "a.guide"), brand, [note])[note.id]
    assert (guide_view.customers, guide_view.orders, guide_view.gmv_fen) == (1, 3, 15700)
    assert [r.via for r in guide_view.rows] == ["state"]


# ---------------------------------------------------------------- the API (the H5 form's token)


def test_api_brand_token_submits_and_nothing_more(client: Any, db: Session, world: Any) -> None:
    from tests.factories import api_key

    token = {"Authorization": f"Bearer {api_key(db, 'a-coffee', 'content.submit')}"}
    base = "/api/v1/brands/a-coffee/content/koc-notes"
    # the H5 form submits with the brand token
    r = client.post(base, json={"url": XHS, "title": "好喝", "author": "h5_user"}, headers=token)
    assert r.status_code == 201, r.text
    note = r.json()
    assert note["source"] == "h5" and note["status"] == "submitted"
    again = client.post(base, json={"url": XHS_SAME, "title": "again"}, headers=token)
    assert again.status_code == 409 and again.json()["code"] == "content.koc_duplicate"
    bad = client.post(
        base,
        json={"url": "https://evil.example/x", "title": "x", "platform": "douyin"},
        headers=token,
    )
    assert bad.status_code == 422 and bad.json()["code"] == "content.koc_bad_url"
    # it cannot approve, nor read the queue
    r = client.post(f"{base}/{note['id']}:approve", json={"reward_points": 5}, headers=token)
    assert r.status_code == 403
    assert client.get(base, headers=token).status_code == 403
    # a reviewer's key: no reward without someone to receive it; approving twice is one approval
    review = {
        "Authorization": f"Bearer {api_key(db, 'a-coffee', 'content.write', 'customers.read')}"
    }
    r = client.post(f"{base}/{note['id']}:approve", json={"reward_points": 5}, headers=review)
    assert r.status_code == 422 and r.json()["code"] == "content.koc_no_recipient"
    for _ in range(2):
        r = client.post(f"{base}/{note['id']}:approve", json={"state": "koc_h5"}, headers=review)
        assert r.status_code == 200 and r.json()["channel_state"] == "koc_h5"
    db.rollback()
    assert db.scalar(select(func.count()).select_from(RewardLedger)) == 0
    r = client.get(f"{base}/{note['id']}/attribution", headers=review)
    assert r.status_code == 200 and r.json()["customers"] == 0
