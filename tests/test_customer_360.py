"""The Customer 360 over HTTP: facts ingested through the real intake appear on the
customer's timeline and orders, follow a merge, and stay with their side after a split."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.tenancy import SYSTEM
from siyu.customers import actions
from siyu.customers.models import Identity
from siyu.org import queries as org_queries
from tests.factories import api_key


def ev(i: str, event_type: str, ids: list[tuple[str, str]], **props: Any) -> dict[str, Any]:
    return {
        "event_id": f"t360-{i}",
        "event_type": event_type,
        "occurred_at": f"2026-05-0{len(i)}T10:00:00+08:00",
        "source": "test",
        "identifiers": [{"type": t, "value": v} for t, v in ids],
        "properties": props,
    }


def test_timeline_and_orders_follow_identities(client: Any, db: Session, world: object) -> None:
    key = api_key(db, "a-coffee", "events.write", "customers.read", "customers.merge")
    headers = {"Authorization": f"Bearer {key}"}
    paid = {
        "order_id": "T-1",
        "channel": "pos",
        "paid_fen": 3200,
        "items": [{"sku": "L", "qty": 1, "unit_price_fen": 3200, "amount_fen": 3200}],
    }
    events = [
        ev("a", "page_viewed", [("unionid", "u-360")], path="/pages/index/index"),
        ev("bb", "order_paid", [("phone", "13812345678"), ("pos_card", "P-360")], **paid),
    ]
    r = client.post(
        "/api/v1/brands/a-coffee/events:batch", json={"events": events}, headers=headers
    )
    assert [x["status"] for x in r.json()["results"]] == ["accepted", "accepted"]
    b = org_queries.access_brand(db, SYSTEM, "a-coffee")
    found = client.get(
        "/api/v1/brands/a-coffee/customers", params={"q": "13812345678"}, headers=headers
    ).json()
    assert len(found) == 1 and found[0]["phone"] == "138****5678"
    buyer = found[0]["id"]
    body = client.get(f"/api/v1/brands/a-coffee/customers/{buyer}", headers=headers).json()
    assert [o["order_id"] for o in body["orders"]] == ["T-1"]
    assert body["orders"][0]["amount_fen"] == 3200
    assert {t["event_type"] for t in body["timeline"]} == {"order_paid"}
    # the mini-program visitor is someone else until an operator merges them
    viewer = db.scalar(
        select(Identity.customer_id).where(Identity.id_type == "unionid", Identity.value == "u-360")
    )
    assert viewer and viewer != buyer
    merged = client.post(
        "/api/v1/brands/a-coffee/customers:merge",
        headers=headers,
        json={"customer_ids": [buyer, viewer]},
    ).json()
    assert {t["event_type"] for t in merged["timeline"]} == {"order_paid", "page_viewed"}
    # a split gives each side its own facts back (end this session's read snapshot first)
    db.rollback()
    union_id = db.scalar(select(Identity.id).where(Identity.value == "u-360"))
    assert union_id
    stayed, moved = actions.split_customer(db, SYSTEM, b, merged["id"], [union_id])
    for cid, kinds in ((stayed.id, {"order_paid"}), (moved.id, {"page_viewed"})):
        got = client.get(f"/api/v1/brands/a-coffee/customers/{cid}", headers=headers).json()
        assert {t["event_type"] for t in got["timeline"]} == kinds
