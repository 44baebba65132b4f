"""Every KPI on a small hand-built dataset, with the expected values worked out by hand.

The story (brand a-coffee, Asia/Shanghai, period 2026-11-01 … 2026-11-30, as of
2026-12-20 00:00 UTC; windows: retention 30 days, silence 60 days, replies within 24 h).
Times are 10:00 local unless said. Stores: SH01 and SH02 (region A-EAST), GZ01 (A-SOUTH).

    A  SH01  member  upserted 10-01, added 10-05 via "poster" by aguide, joined a group 10-10;
             messages 11-03 10:00 and 10:10, reply 10:30 (20 and 30 min); paid 10000 on
             11-10 and 5000 on 11-20, refunded 2000 on 11-21; CSAT 5 on 11-11
    B  SH01          upserted and added 11-02 via "poster" by aguide; paid 20000 on 11-04;
             message 11-05 10:00, reply 12:00 (120 min); CSAT 3 on 11-06; deleted us 11-15
    C  SH02          paid 8000 on 11-01 (before being a friend); added 11-03 via "ad" by
             other1; referred by A 11-03; message 11-28 23:00 never answered
    D  GZ01  member  upserted 11-10, paid 3000 on 11-12, never a friend
    E  GZ01          upserted and added 08-01 via "ad"; group 08-05 … 09-01; one page view
             08-20; paid 9999 on 2025-06-01; silent since
    F  SH02  member  upserted and added 09-01 via "poster"; page view 11-05; staff deleted
             them 11-20
    G  SH01          upserted and added 11-25 via "ad" by aguide; group 11-26 … 11-28

Channel costs: poster 150 fen, ad 1800 fen per customer.

KOC (``test_koc_kpis_by_hand``): approved notes N-A (by A, submitted 11-05), N-OCT (by A,
10-15) and N-STAFF (by a staff member, 11-20); N-REJ (by F, 11-10) was rejected. The mall
reported clicks naming them: A on N-OCT 10-20 and on N-A 11-07, B on N-A 11-02 11:00, C on
N-REJ 11-12.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session

from siyu.core.tenancy import SYSTEM
from siyu.ingest import actions as ingest
from siyu.metrics import kpis as m
from siyu.metrics.channel_codes import ChannelCodeIn, set_channel_code
from siyu.org.auth import actor_for_staff
from siyu.org.queries import access_brand

START, END = date(2026, 11, 1), date(2026, 11, 30)
AS_OF = datetime(2026, 12, 20, 0, 0, tzinfo=UTC)
PHONE = {k: f"1390000000{i}" for i, k in enumerate("ABCDEFG", start=1)}
NOTES = {k: f"01KOCN0TE{i:017d}" for i, k in enumerate(("N-A", "N-OCT", "N-STAFF", "N-REJ"))}


def ev(eid: str, etype: str, when: str, who: str, **props: Any) -> dict[str, Any]:
    ids = [{"type": "phone", "value": PHONE[who]}]
    if "member_no" in props:
        ids.append({"type": "member_no", "value": props.pop("member_no")})
    return {
        "event_id": eid,
        "event_type": etype,
        "occurred_at": when if "T" in when else f"{when}T10:00:00+08:00",
        "source": "test",
        "identifiers": ids,
        "properties": props,
    }


def upsert(eid: str, when: str, who: str, unit: str, **kw: Any) -> dict[str, Any]:
    return ev(eid, "customer_upserted", when, who, unit_code=unit, **kw)


def added(eid: str, when: str, who: str, state: str, staff: str = "other1") -> dict[str, Any]:
    return ev(
        eid, "wecom_contact_added", when, who,
        staff_userid=staff, external_userid=f"wm{who}", state=state,
    )  # fmt: skip


def paid(eid: str, when: str, who: str, fen: int, channel: str = "pos") -> dict[str, Any]:
    return ev(eid, "order_paid", when, who, order_id=f"O-{eid}", channel=channel, paid_fen=fen)


def msg(eid: str, etype: str, when: str, who: str) -> dict[str, Any]:
    return ev(eid, etype, when, who, staff_userid="aguide", msg_type="text")


STORY = [
    upsert("a0", "2026-10-01", "A", "A-SH01", member_no="M-A"),
    added("a1", "2026-10-05", "A", "poster", "aguide"),
    ev("a2", "group_joined", "2026-10-10", "A", chat_id="wrSH01"),
    msg("a3", "message_received", "2026-11-03T10:00:00+08:00", "A"),
    msg("a4", "message_received", "2026-11-03T10:10:00+08:00", "A"),
    msg("a5", "message_sent", "2026-11-03T10:30:00+08:00", "A"),
    paid("a6", "2026-11-10", "A", 10000),
    paid("a7", "2026-11-20", "A", 5000, "tmall"),
    ev("a8", "order_refunded", "2026-11-21", "A", order_id="O-a7", channel="tmall",
       refund_fen=2000),
    ev("a9", "survey_answered", "2026-11-11", "A", survey_id="csat", csat=5),
    upsert("b0", "2026-11-02T09:00:00+08:00", "B", "A-SH01"),
    added("b1", "2026-11-02", "B", "poster", "aguide"),
    paid("b2", "2026-11-04", "B", 20000, "mini_mall"),
    msg("b3", "message_received", "2026-11-05T10:00:00+08:00", "B"),
    msg("b4", "message_sent", "2026-11-05T12:00:00+08:00", "B"),
    ev("b5", "survey_answered", "2026-11-06", "B", survey_id="csat", csat=3),
    ev("b6", "wecom_contact_deleted_by_customer", "2026-11-15", "B",
       staff_userid="aguide", external_userid="wmB"),
    upsert("c0", "2026-11-01T09:00:00+08:00", "C", "A-SH02"),
    paid("c1", "2026-11-01", "C", 8000),
    added("c2", "2026-11-03", "C", "ad"),
    ev("c3", "referral", "2026-11-03", "C", referrer=[{"type": "phone", "value": PHONE["A"]}],
       referee=[{"type": "phone", "value": PHONE["C"]}]),
    msg("c4", "message_received", "2026-11-28T23:00:00+08:00", "C"),
    upsert("d0", "2026-11-10T09:00:00+08:00", "D", "A-GZ01", member_no="M-D"),
    paid("d1", "2026-11-12", "D", 3000),
    upsert("e0", "2025-06-01T09:00:00+08:00", "E", "A-GZ01"),
    paid("e5", "2025-06-01", "E", 9999),
    added("e1", "2026-08-01", "E", "ad"),
    ev("e2", "group_joined", "2026-08-05", "E", chat_id="wrGZ01"),
    ev("e3", "group_left", "2026-09-01", "E", chat_id="wrGZ01"),
    ev("e4", "page_viewed", "2026-08-20", "E", path="/pages/index"),
    upsert("f0", "2026-09-01T09:00:00+08:00", "F", "A-SH02", member_no="M-F"),
    added("f1", "2026-09-01", "F", "poster"),
    ev("f2", "page_viewed", "2026-11-05", "F", path="/pages/index"),
    ev("f3", "wecom_contact_deleted_by_staff", "2026-11-20", "F",
       staff_userid="other1", external_userid="wmF"),
    upsert("g0", "2026-11-25T09:00:00+08:00", "G", "A-SH01"),
    added("g1", "2026-11-25", "G", "ad", "aguide"),
    ev("g2", "group_joined", "2026-11-26", "G", chat_id="wrSH01"),
    ev("g3", "group_left", "2026-11-28", "G", chat_id="wrSH01"),
    ev("k1", "content_clicked", "2026-10-20", "A", content_id=NOTES["N-OCT"]),
    ev("k2", "content_clicked", "2026-11-07", "A", content_id=NOTES["N-A"]),
    ev("k3", "content_clicked", "2026-11-02T11:00:00+08:00", "B", content_id=NOTES["N-A"]),
    ev("k4", "content_clicked", "2026-11-12", "C", content_id=NOTES["N-REJ"]),
]  # fmt: skip


@pytest.fixture
def story(db: Session, world: Any) -> Any:
    brand = access_brand(db, SYSTEM, "a-coffee")
    out = ingest.ingest_batch(db, SYSTEM, brand, STORY)
    assert out.rejected == 0, [r for r in out.results if r.status == "rejected"]
    for code, fen in (("poster", 150), ("ad", 1800)):
        set_channel_code(db, SYSTEM, brand, ChannelCodeIn(code=code, cost_per_customer_fen=fen))
    return brand


def staff(db: Session, username: str) -> Any:
    from sqlalchemy import select

    from siyu.org.models import Staff

    person = db.scalar(select(Staff).where(Staff.username == username))
    assert person is not None
    return actor_for_staff(db, person)


def table(db: Session, brand: Any, actor: Any = SYSTEM, **kw: Any) -> m.KpiTable:
    return m.compute_kpis(db, actor, brand, start=START, end=END, as_of=AS_OF, **kw)


def test_every_kpi_by_hand(db: Session, story: Any) -> None:
    t = table(db, story)
    v = t.row("all").values
    assert t.row("all").customers == 7
    # diversion: added in November: B (11-02), C (11-03), G (11-25)
    assert v["diverted_customers"].value == 3
    # first seen in November: B, C (order 11-01), D, G = 4; of them friends by 11-30: B, C, G
    assert (v["diversion_rate"].numerator, v["diversion_rate"].denominator) == (3, 4)
    assert v["diversion_rate"].value == pytest.approx(0.75)
    # cost: B poster 150 + C ad 1800 + G ad 1800 = 3750 over 3 customers = 1250 fen
    assert (v["cost_per_diverted"].numerator, v["cost_per_diverted"].value) == (3750, 1250)
    # retention (30 days): cohort = added in Nov and 30 days old by 12-20: B, C (G only 25
    # days); still a friend 30 days later: C (B deleted on 11-15) → 1 / 2
    assert (v["retention_rate"].numerator, v["retention_rate"].denominator) == (1, 2)
    assert v["retention_rate"].value == pytest.approx(0.5)
    # CSAT: (5 + 3) / 2 answers = 4.0
    assert (v["satisfaction"].numerator, v["satisfaction"].denominator) == (8, 2)
    assert v["satisfaction"].value == pytest.approx(4.0)
    # churn: friends on 11-01: A, E, F = 3; churned: E (silent since 08-20, > 60 days before
    # 12-01), F (deleted 11-20) = 2 → 2 / 3
    assert (v["churn_rate"].numerator, v["churn_rate"].denominator) == (2, 3)
    assert v["churn_rate"].value == pytest.approx(2 / 3, abs=1e-6)
    # interaction: friends at some time in Nov: A, B, C, E, F, G = 6; wrote to us: A, B, C = 3
    assert (v["interaction_rate"].numerator, v["interaction_rate"].denominator) == (3, 6)
    # GMV while a friend: A 10000 + 5000, B 20000 (C's 11-01 order was before the add, D is
    # not a friend) = 35000 fen
    assert v["gmv"].value == 35000
    # KOC: no notes in this story (``test_koc_kpis_by_hand`` adds them)
    assert v["koc_content_published"].value == 0 and v["koc_customers_brought"].value == 0
    # referred: C
    assert v["referred_customers"].value == 1
    # repurchase among private-domain buyers: A (2 orders), B (1) → 1 / 2
    assert (v["repurchase_rate"].numerator, v["repurchase_rate"].denominator) == (1, 2)
    # 365-day value: friends on 11-30: A, C, E, G = 4; net paid 2025-12-01 … 2026-11-30:
    # A 15000 - 2000 = 13000, C 8000, E 0 (9999 is older), G 0 → 21000 / 4 = 5250 fen
    assert (v["value_365"].numerator, v["value_365"].denominator) == (21000, 4)
    assert v["value_365"].value == 5250
    # active members: members A, D, F did something in Nov (message, order, page view) = 3
    assert v["active_members"].value == 3
    # group participation: of the 6 friends, in a group during Nov: A (since 10-10), G
    # (11-26 … 11-28); E left on 09-01 → 2 / 6
    assert (v["group_participation_rate"].numerator, v["group_participation_rate"].denominator) == (
        2,
        6,
    )
    # response: 4 messages received in Nov; answered within 24 h: 20, 30, 120 min (C's never)
    # → median 30
    r = v["guide_response_minutes"]
    assert (r.numerator, r.denominator) == (3, 4)
    assert r.value == pytest.approx(30.0)


def test_grouped_by_store_region_channel_guide(db: Session, story: Any) -> None:
    by_store = table(db, story, group_by="store", kpis=["diverted_customers", "gmv"])
    got = {r.group: (r.customers, r.values["diverted_customers"].value) for r in by_store.rows}
    # SH01: A, B, G (diverted B, G); SH02: C, F (C); GZ01: D, E (none)
    assert got == {"A-SH01": (3, 2), "A-SH02": (2, 1), "A-GZ01": (2, 0)}
    assert by_store.row("A-SH01").label == "静安店"
    assert by_store.row("A-SH01").values["gmv"].value == 35000
    by_region = table(db, story, group_by="region", kpis=["diverted_customers"])
    # A-EAST = SH01 + SH02 = 5 customers, 3 diverted; A-SOUTH = GZ01
    assert {r.group: r.values["diverted_customers"].value for r in by_region.rows} == {
        "A-EAST": 3,
        "A-SOUTH": 0,
    }
    by_code = table(db, story, group_by="channel_code", kpis=["cost_per_diverted"])
    # poster: B → 150 / 1; ad: C, G → 3600 / 2 = 1800; D has no code
    vals = {r.group: r.values["cost_per_diverted"].value for r in by_code.rows}
    assert vals == {"poster": 150, "ad": 1800, "(none)": None}
    by_guide = table(db, story, group_by="guide", kpis=["diverted_customers"])
    # owner = the staff who added them when known: aguide (a.guide) owns A, B, G
    rows = {r.label: r.customers for r in by_guide.rows}
    assert rows["A.GUIDE"] == 3 and rows["(none)"] == 4
    by_group = table(db, story, group_by="group", kpis=["group_participation_rate"])
    # wrSH01: A, G (both in a group during Nov, both friends) → 2 / 2
    assert by_group.row("wrSH01").values["group_participation_rate"].value == 1.0


def test_store_manager_sees_only_their_store(db: Session, story: Any) -> None:
    manager = staff(db, "a.sh01mgr")
    t = table(db, story, actor=manager, group_by="store")
    # only SH01's customers A, B, G exist for them
    assert [r.group for r in t.rows] == ["A-SH01"] and t.scoped
    total = table(db, story, actor=manager).row("all")
    assert total.customers == 3
    assert total.values["diverted_customers"].value == 2  # B, G
    assert total.values["gmv"].value == 35000  # A and B are both SH01
    page = m.customers_behind(
        db, manager, story, "diversion_rate", start=START, end=END, as_of=AS_OF, side="denominator"
    )
    # reached in Nov and in scope: B, G (C and D belong to other stores)
    assert page.total == 2 and len(page.customers) == 2
    assert all("*" in c.phone for c in page.customers)  # masked


def test_drill_down_lists_the_numerator(db: Session, story: Any) -> None:
    page = m.customers_behind(db, SYSTEM, story, "churn_rate", start=START, end=END, as_of=AS_OF)
    phones = sorted(c.phone for c in page.customers)
    # E and F churned
    assert page.total == 2
    assert phones == sorted(["139****0005", "139****0006"])
    den = m.customers_behind(
        db, SYSTEM, story, "churn_rate", start=START, end=END, as_of=AS_OF,
        side="denominator", page_size=2, page=2,
    )  # fmt: skip
    assert den.total == 3 and len(den.customers) == 1


def test_drill_downs_load_only_what_they_read(
    db: Session, story: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drill-down loads only the facts its KPI reads (``sql.loads_for``); every KPI, both
    sides and a grouping list the same customers as with every fact loaded."""
    from siyu.metrics import scope, sql
    from siyu.metrics.definitions import KPI_KEYS

    dims = scope.load(db, SYSTEM, story)
    costs = m.channel_costs(db, story.id)

    def behind(kpi: str, side: str, group_by: str | None, group: str) -> tuple[list[str], int]:
        return m.customer_ids_behind(
            dims, kpi, start=START, end=END, as_of=AS_OF, side=side, group_by=group_by,
            group=group, costs=costs, page_size=500,
        )  # fmt: skip

    cases = [
        (k, side, g, grp)
        for k in KPI_KEYS
        for side in ("numerator", "denominator")
        for g, grp in ((None, "all"), ("store", "A-SH01"))
    ]
    # the loads skipped are the ones the KPI does not read
    assert sql.LOADS.keys() - sql.loads_for("diverted_customers", None) == {"pfa", "oxa", "exw"}
    fast = {c: behind(*c) for c in cases}
    monkeypatch.setattr(sql, "loads_for", lambda kpi, group_by: frozenset(sql.LOADS))
    full = {c: behind(*c) for c in cases}
    assert fast == full
    assert sum(total for _, total in fast.values()) > 0
    # a narrow scope reads the windowed facts once (``sql.NARROW_LOADS``): the same table as
    # the brand-wide loads on the same customers
    from dataclasses import replace

    store = scope.restrict(dims, "store", "A-SH01")
    assert store.scoped
    for group_by in (None, "guide"):
        narrow = m.compute(store, start=START, end=END, as_of=AS_OF, group_by=group_by,
                           costs=costs)  # fmt: skip
        wide = m.compute(replace(store, scoped=False), start=START, end=END, as_of=AS_OF,
                         group_by=group_by, costs=costs)  # fmt: skip
        assert [(r.group, r.customers, r.values) for r in narrow.rows] == [
            (r.group, r.customers, r.values) for r in wide.rows
        ]
    assert any(r.values["interaction_rate"].denominator for r in narrow.rows)


def test_bad_requests(db: Session, story: Any) -> None:
    from siyu.metrics.errors import MetricsInvalid

    with pytest.raises(MetricsInvalid) as exc:
        m.compute_kpis(db, SYSTEM, story, start=END, end=START)
    assert exc.value.code == "metrics.bad_period"
    with pytest.raises(MetricsInvalid) as exc:
        table(db, story, group_by="city")
    assert exc.value.code == "metrics.bad_group_by"
    with pytest.raises(MetricsInvalid) as exc:
        table(db, story, kpis=["nps"])
    assert exc.value.code == "metrics.unknown_kpi"


def koc_notes(db: Session, brand: Any) -> None:
    from sqlalchemy import select

    from siyu.content.models import KocNote
    from siyu.org.models import Staff

    guide = db.scalar(select(Staff.id).where(Staff.username == "a.guide"))
    for key, who, status, day in (
        ("N-A", "A", "approved", "2026-11-05"),
        ("N-OCT", "A", "approved", "2026-10-15"),
        ("N-STAFF", None, "approved", "2026-11-20"),
        ("N-REJ", "F", "rejected", "2026-11-10"),
    ):
        db.add(
            KocNote(
                id=NOTES[key],
                brand_id=brand.id,
                customer_id=customer_id(db, brand, who) if who else None,
                staff_id=None if who else guide,
                platform="xiaohongshu",
                url=f"https://www.xiaohongshu.com/explore/{NOTES[key].lower()}",
                title=key,
                status=status,
                created_at=datetime.fromisoformat(f"{day}T02:00:00+00:00"),
            )
        )
    db.commit()


def test_koc_kpis_by_hand(db: Session, story: Any) -> None:
    koc_notes(db, story)
    v = table(db, story).row("all").values
    # published in Nov: N-A (A) and N-STAFF (staff) = 2; N-OCT is October's, N-REJ rejected
    assert v["koc_content_published"].value == 2
    # brought in Nov: B (first touch N-A on 11-02); A's first touch was N-OCT in October;
    # C's click names a rejected note
    assert v["koc_customers_brought"].value == 1
    by_store = {r.group: r.values for r in table(db, story, group_by="store").rows}
    # A and B are SH01's; the staff member's note belongs to no customer: group (none)
    assert by_store["A-SH01"]["koc_content_published"].value == 1
    assert by_store["A-SH01"]["koc_customers_brought"].value == 1
    assert by_store["(none)"]["koc_content_published"].value == 1
    assert all(r["koc_customers_brought"].value == 0 for g, r in by_store.items() if g != "A-SH01")
    # October: N-OCT published, A brought (10-20)
    oct_ = (
        m.compute_kpis(
            db, SYSTEM, story, start=date(2026, 10, 1), end=date(2026, 10, 31), as_of=AS_OF
        )
        .row("all")
        .values
    )
    assert oct_["koc_content_published"].value == 1 and oct_["koc_customers_brought"].value == 1
    # the customers behind: B
    page = m.customers_behind(
        db, SYSTEM, story, "koc_customers_brought", start=START, end=END, as_of=AS_OF
    )
    assert page.total == 1 and [c.id for c in page.customers] == [customer_id(db, story, "B")]
    # SH01's manager sees A's note and B; the staff member's note counts only brand-wide
    mgr = table(db, story, actor=staff(db, "a.sh01mgr")).row("all").values
    assert mgr["koc_content_published"].value == 1 and mgr["koc_customers_brought"].value == 1


def customer_id(db: Session, brand: Any, who: str) -> str:
    from sqlalchemy import select

    from siyu.customers import vault
    from siyu.customers.models import Identity

    h = vault.match_hash(brand.id, "phone", PHONE[who])
    cid = db.scalar(select(Identity.customer_id).where(Identity.value_hash == h))
    assert cid
    return cid


def test_cost_of_a_wecom_channel_code_without_a_metrics_cost(db: Session, story: Any) -> None:
    from sqlalchemy import delete

    from siyu.metrics.models import ChannelCode
    from siyu.wecom.models import WecomContact, WecomContactWay

    # the WeCom channel codes carry their total cost; the mirrored contacts say who came
    for state, cost, who in (("ad", 9000, "ECG"), ("xhs", 5000, "XY")):
        db.add(WecomContactWay(brand_id=story.id, state=state, name=f"码 {state}", cost_fen=cost))
        for w in who:
            db.add(
                WecomContact(
                    brand_id=story.id, external_userid=f"wm{w}", staff_userid="aguide", state=state
                )
            )
    db.commit()
    names: dict[str, str] = {}
    # the metrics' own cost wins (ad: 1800); a code only WeCom knows costs 5000 / 2 = 2500
    assert m.channel_costs(db, story.id, names) == {"poster": 150, "ad": 1800, "xhs": 2500}
    assert names["xhs"] == "码 xhs"
    # without a metrics cost for "ad": 9000 / 3 friends = 3000 each; November's diverted are
    # B (poster 150), C and G (ad 3000 each) → 6150 / 3 = 2050
    db.execute(delete(ChannelCode).where(ChannelCode.code == "ad"))
    db.commit()
    v = table(db, story).row("all").values
    assert (v["cost_per_diverted"].numerator, v["cost_per_diverted"].denominator) == (6150, 3)
    assert v["cost_per_diverted"].value == 2050
