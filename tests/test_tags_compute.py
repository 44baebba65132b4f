"""Tag computation on the store and the lake: built-in value and org tags, rule tags, the
diff and history, health of failing and stale tags, and incremental runs that always end
where a full run as of the same moment ends."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from siyu.core.tenancy import SYSTEM
from siyu.customers.models import Identity
from siyu.ingest import actions as ingest
from siyu.org.queries import access_brand
from siyu.tags import actions, queries
from siyu.tags.models import CustomerTag, Tag, TagChange
from siyu.tags.schemas import RunIn, SettingsIn, TagIn, TagPatch

AS_OF = datetime(2026, 6, 30, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


def ev(eid: str, etype: str, when: str, ids: list[tuple[str, str]], **props: Any) -> dict[str, Any]:
    return {
        "event_id": eid,
        "event_type": etype,
        "occurred_at": when if "T" in when else f"{when}T10:00:00+08:00",
        "source": "test",
        "identifiers": [{"type": t, "value": v} for t, v in ids],
        "properties": props,
    }


def paid(eid: str, when: str, phone: str, fen: int, store: str | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"order_id": f"O-{eid}", "channel": "pos", "paid_fen": fen}
    if store:
        props["store_code"] = store
    return ev(eid, "order_paid", when, [("phone", phone)], **props)


PHONE = {k: f"1380000000{i}" for i, k in enumerate("ABCDEFG", start=1)}

STORY = [
    paid("a1", "2026-03-01", PHONE["A"], 2000, "SH01"),
    paid("a2", "2026-06-10", PHONE["A"], 3000, "SH01"),
    paid("a3", "2026-06-20", PHONE["A"], 5000, "SH02"),
    paid("b1", "2025-08-01", PHONE["B"], 1500),
    paid("c1", "2025-01-05", PHONE["C"], 1000),
    paid("c2", "2026-06-25", PHONE["C"], 8000),
    ev("d1", "page_viewed", "2026-06-28", [("phone", PHONE["D"])], path="/pages/item"),
    paid("e1", "2026-06-15", PHONE["E"], 2500),
    ev("f1", "page_viewed", "2026-01-01", [("phone", PHONE["F"])], path="/pages/index"),
    paid("g1", "2025-01-01", PHONE["G"], 900),
    ev("g2", "checked_in", "2025-02-01", [("phone", PHONE["G"])], place="store", store_code="BJ9"),
]


def customer_of(db: Session, phone: str) -> str:
    from siyu.customers import vault

    b = access_brand(db, SYSTEM, "a-coffee")
    h = vault.match_hash(b.id, "phone", phone)
    cid = db.scalar(select(Identity.customer_id).where(Identity.value_hash == h))
    assert cid
    return cid


def holders(db: Session, key: str) -> dict[str, str | None]:
    rows = db.execute(
        select(CustomerTag.customer_id, CustomerTag.value)
        .join(Tag, Tag.id == CustomerTag.tag_id)
        .where(Tag.key == key)
    ).all()
    return {r[0]: r[1] for r in rows}


def snapshot(db: Session) -> set[tuple[str, str, str | None]]:
    rows = db.execute(
        select(Tag.key, CustomerTag.customer_id, CustomerTag.value).join(
            Tag, Tag.id == CustomerTag.tag_id
        )
    ).all()
    return {tuple(r) for r in rows}


def pause_models(db: Session, brand: Any) -> None:
    for key in ("p_alive", "expected_purchases", "expected_spend", "value_365"):
        actions.update_tag(db, SYSTEM, brand, key, TagPatch(status="paused"))


def test_builtin_and_rule_tags_with_history(db: Session, world: object) -> None:
    # given a brand's customers with orders, views and check-ins
    brand = access_brand(db, SYSTEM, "a-coffee")
    out = ingest.ingest_batch(db, SYSTEM, brand, STORY)
    assert out.accepted == len(STORY)
    pause_models(db, brand)
    actions.create_tag(
        db,
        SYSTEM,
        brand,
        TagIn(
            key="repeat_buyer", name="复购", group="rules", rule="count(order_paid, last 90d) >= 2"
        ),
    )
    actions.create_tag(
        db,
        SYSTEM,
        brand,
        TagIn(key="viewer", name="近7天浏览", group="rules", rule="exists(page_viewed, last 7d)"),
    )
    # when the tags are computed as of 2026-06-30
    run = actions.compute(db, SYSTEM, brand, RunIn(mode="auto", as_of=AS_OF))
    failed = {k: v for k, v in run.tags.items() if v["error"]}
    assert (run.mode, run.status, failed) == ("full", "ok", {})
    c = {k: customer_of(db, p) for k, p in PHONE.items()}
    # then the lifecycle follows the purchase history
    stages = {cid: key for key in _keys("lifecycle_") for cid in holders(db, key)}
    assert stages == {
        c["A"]: "lifecycle_active",
        c["B"]: "lifecycle_dormant",
        c["C"]: "lifecycle_won_back",
        c["D"]: "lifecycle_new",
        c["E"]: "lifecycle_new",
        c["F"]: "lifecycle_prospect",
        c["G"]: "lifecycle_churned",
    }
    # RFM over the last 365 days, with the default cuts (recency 30/60/90/180 days)
    assert holders(db, "rfm_r_5") == {c["A"]: "5", c["C"]: "5", c["E"]: "5"}
    assert holders(db, "rfm_r_1") == {c["B"]: "1"}
    assert holders(db, "rfm_f_3") == {c["A"]: "3"}  # three purchase days: cut 3 → score 3
    assert c["G"] not in {cid for k in _keys("rfm_") for cid in holders(db, k)}  # outside
    # org tags: home store = most bought-at store, then most visited
    assert holders(db, "home_store") == {c["A"]: "SH01", c["G"]: "BJ9"}
    # rule tags
    assert set(holders(db, "repeat_buyer")) == {c["A"]}
    assert set(holders(db, "viewer")) == {c["D"]}
    # and every entry is in the history
    entered = db.scalar(
        select(TagChange.id)
        .join(Tag, Tag.id == TagChange.tag_id)
        .where(Tag.key == "repeat_buyer", TagChange.customer_id == c["A"])
    )
    assert entered is not None
    # when a later purchase makes E a repeat buyer and the day has not changed
    more = [paid("e2", "2026-06-29", PHONE["E"], 1200)]
    ingest.ingest_batch(db, SYSTEM, brand, more)
    again = actions.compute(db, SYSTEM, brand, RunIn(mode="auto", as_of=AS_OF))
    # then only the customer with new facts is looked at, and E enters the tag
    assert (again.mode, again.customers) == ("incremental", 1)
    assert set(holders(db, "repeat_buyer")) == {c["A"], c["E"]}
    changes = db.execute(
        select(TagChange.change)
        .join(Tag)
        .where(Tag.key == "repeat_buyer", TagChange.customer_id == c["E"])
    ).scalars()
    assert list(changes) == ["entered"]


def _keys(prefix: str) -> list[str]:
    from siyu.tags.builtin import GROUPS

    return [t.key for g in GROUPS for t in g.tags if t.key.startswith(prefix)]


def test_failing_rule_is_flagged_and_the_others_still_compute(db: Session, world: object) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    ingest.ingest_batch(db, SYSTEM, brand, STORY)
    pause_models(db, brand)
    actions.create_tag(
        db,
        SYSTEM,
        brand,
        TagIn(
            key="vip", name="VIP", group="rules", rule="sum(order_paid.paid_fen, last 365d) >= 8000"
        ),
    )
    actions.create_tag(
        db,
        SYSTEM,
        brand,
        TagIn(key="broken", name="坏规则", group="rules", rule="count(page_viewed) >= 1"),
    )
    # a stored rule that no longer checks (e.g. its custom event type was withdrawn)
    db.execute(update(Tag).where(Tag.key == "broken").values(rule="count(teleported) >= 1"))
    db.commit()
    run = actions.compute(db, SYSTEM, brand, RunIn(mode="full", as_of=AS_OF))
    assert run.status == "partial"
    assert "tags.unknown_event" in (run.tags["broken"]["error"] or "")
    lib = {t.key: t for g in queries.tag_library(db, SYSTEM, brand) for t in g.tags}
    assert lib["broken"].health == "failing"
    assert lib["broken"].last_error and "teleported" in lib["broken"].last_error
    assert lib["vip"].health == "ok" and lib["vip"].members == 2  # A (10000) and C (8000)
    assert {t.key for t in queries.problems(db, SYSTEM, brand)} >= {"broken"}
    # a tag whose last success is older than its limit is stale, never silently old
    db.execute(
        update(Tag)
        .where(Tag.key == "vip")
        .values(last_ok_at=datetime.now(UTC) - timedelta(hours=30), stale_after_hours=26)
    )
    db.commit()
    lib = {t.key: t for g in queries.tag_library(db, SYSTEM, brand) for t in g.tags}
    assert lib["vip"].health == "stale"
    # and a changed rule is stale until recomputed
    actions.update_tag(
        db, SYSTEM, brand, "vip", TagPatch(rule="sum(order_paid.paid_fen, last 365d) >= 9000")
    )
    lib = {t.key: t for g in queries.tag_library(db, SYSTEM, brand) for t in g.tags}
    assert lib["vip"].health == "stale"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_runs_end_where_a_full_run_ends(db: Session, world: object, seed: int) -> None:
    # given a random sequence of ingests, some of which merge customers
    rng = random.Random(seed)
    brand = access_brand(db, SYSTEM, "a-coffee")
    pause_models(db, brand)
    actions.update_settings(
        db, SYSTEM, brand, SettingsIn(group="rfm_segment", params={"monetary": None})
    )
    actions.create_tag(
        db,
        SYSTEM,
        brand,
        TagIn(
            key="big",
            name="大单",
            group="rules",
            rule="max(order_paid.paid_fen, last 180d) >= 5000",
        ),
    )
    actions.create_tag(
        db,
        SYSTEM,
        brand,
        TagIn(
            key="fan",
            name="常来",
            group="rules",
            rule="count(checked_in, last 60d) >= 2 or count(page_viewed, last 30d) >= 3",
        ),
    )
    phones = [f"1391111{i:04d}" for i in range(25)]
    batches: list[list[dict[str, Any]]] = []
    n = 0
    for _ in range(4):
        batch = []
        for _ in range(rng.randint(5, 25)):
            n += 1
            phone = rng.choice(phones)
            day = datetime(2026, 6, 30) - timedelta(days=rng.randint(0, 400))
            when = day.strftime("%Y-%m-%d")
            kind = rng.random()
            if kind < 0.4:
                batch.append(
                    paid(
                        f"s{seed}-{n}",
                        when,
                        phone,
                        rng.randint(100, 9000),
                        "SH0" + str(rng.randint(1, 3)),
                    )
                )
            elif kind < 0.7:
                batch.append(ev(f"s{seed}-{n}", "page_viewed", when, [("phone", phone)], path="/p"))
            elif kind < 0.9:
                batch.append(
                    ev(
                        f"s{seed}-{n}",
                        "checked_in",
                        when,
                        [("phone", phone)],
                        place="store",
                        store_code="SH02",
                    )
                )
            else:  # a member card that links two phones: OneID merges their customers
                other = rng.choice(phones)
                card = [("phone", phone), ("pos_card", f"CARD-{other}")]
                batch.append(ev(f"s{seed}-{n}", "checked_in", when, card, place="store"))
                batch.append(
                    ev(
                        f"s{seed}-{n}b",
                        "checked_in",
                        when,
                        [("phone", other), ("pos_card", f"CARD-{other}")],
                        place="store",
                    )
                )
        batches.append(batch)
    runs = []
    for batch in batches:
        ingest.ingest_batch(db, SYSTEM, brand, batch)
        runs.append(actions.compute(db, SYSTEM, brand, RunIn(mode="incremental", as_of=AS_OF)))
    assert runs[0].mode == "full" and all(r.mode == "incremental" for r in runs[1:])
    assert all(r.status == "ok" for r in runs)
    incremental = snapshot(db)
    # when a full run is made as of the same moment
    full = actions.compute(db, SYSTEM, brand, RunIn(mode="full", as_of=AS_OF))
    # then it finds nothing to change
    assert full.changes == 0
    assert snapshot(db) == incremental
    assert incremental  # the tags are not trivially empty
