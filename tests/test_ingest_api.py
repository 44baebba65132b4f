"""HTTP intake: batches answered per item, idempotency by event id, size limits, malformed
bodies; single events through the inbox and ``siyu worker``; brand event types."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from siyu import jobs
from siyu.api import ingest as api_ingest
from siyu.core.db import session_factory
from siyu.core.tenancy import SYSTEM
from siyu.ingest import queries
from siyu.ingest.models import InboxEvent
from tests.factories import api_key, login


def event(i: int | str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": f"e-{i}",
        "event_type": "page_viewed",
        "occurred_at": "2026-03-01T10:00:00+08:00",
        "identifiers": [{"type": "phone", "value": f"1390000{sum(map(ord, str(i))) % 10000:04d}"}],
        "properties": {"path": f"/pages/{i}"},
    }
    body.update(over)
    return body


def stored(db: Session, table: str = "events") -> list[dict[str, Any]]:
    with queries.open_facts(db, SYSTEM, "a-coffee") as facts:
        rows: list[dict[str, Any]] = facts.execute(facts.table(table)).to_pylist()
        return rows


def auth(db: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key(db, 'a-coffee', 'events.write', 'org.read')}"}


def test_batch_answers_per_item_and_stores_each_event_once(
    client: Any, db: Session, world: object
) -> None:
    headers = auth(db)
    url = "/api/v1/brands/a-coffee/events:batch"
    first = client.post(url, json={"events": [event(1), event(2)]}, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 2
    # given a batch with good, malformed and duplicate events
    batch = [
        event(3),  # 0 good
        event(1),  # 1 duplicate of an earlier batch
        event(4, occurred_at="2026-03-01T10:00:00"),  # 2 naive time
        event(3),  # 3 duplicate inside this batch
        "nonsense",  # 4 not an object
        event(5, properties={}),  # 5 missing the page path
        event(6, identifiers=[{"type": "phone", "value": "12"}]),  # 6 bad phone
        event(7, event_type="no_such_thing"),  # 7 unknown type
        event(8, identifiers=[]),  # 8 names nobody
        event(9),  # 9 good
    ]
    r = client.post(url, json={"events": batch}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    status = [x["status"] for x in body["results"]]
    assert status == [
        "accepted",
        "duplicate",
        "rejected",
        "duplicate",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "accepted",
    ]
    errors = {x["index"]: x["errors"][0] for x in body["results"] if x["errors"]}
    assert errors[2]["field"] == "occurred_at" and errors[2]["code"] == "invalid.timezone_aware"
    assert errors[4]["code"] == "ingest.not_an_object"
    assert errors[5]["field"] == "properties.path"
    assert errors[6] == {
        "field": "identifiers.0.value",
        "code": "customers.bad_phone",
        "reason": errors[6]["reason"],
    }
    assert errors[7]["code"] == "ingest.unknown_event_type"
    assert errors[8]["code"] == "ingest.identity_required"
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 2, 6)
    # then nothing good is lost and nothing is stored twice
    ids = sorted(row["event_id"] for row in stored(db))
    assert ids == ["e-1", "e-2", "e-3", "e-9"]


def test_batch_limits_and_malformed_bodies(
    client: Any, db: Session, world: object, monkeypatch: Any
) -> None:
    headers = auth(db)
    url = "/api/v1/brands/a-coffee/events:batch"
    too_many = client.post(url, json={"events": [{}] * 10_001}, headers=headers)
    assert too_many.status_code == 413
    assert too_many.json()["code"] == "http.too_large"
    assert too_many.headers["content-type"].startswith("application/problem+json")
    monkeypatch.setattr(api_ingest, "MAX_BODY", 2000)
    big = client.post(url, json={"events": [event(i) for i in range(20)]}, headers=headers)
    assert big.status_code == 413 and big.json()["code"] == "http.too_large"
    monkeypatch.undo()
    shape = client.post(url, json={"items": []}, headers=headers)
    assert shape.status_code == 422 and shape.json()["code"] == "validation.failed"
    assert client.post(url, json=[event(1)], headers=headers).status_code == 422
    broken = client.post(
        url, content=b'{"events": [', headers={**headers, "Content-Type": "application/json"}
    )
    assert broken.status_code == 400 and broken.json()["code"] == "http.malformed_body"
    assert stored(db) == []


def test_batch_needs_the_events_write_scope(client: Any, db: Session, world: object) -> None:
    read_only = {"Authorization": f"Bearer {api_key(db, 'a-coffee', 'org.read')}"}
    r = client.post(
        "/api/v1/brands/a-coffee/events:batch", json={"events": [event(1)]}, headers=read_only
    )
    assert r.status_code == 403 and r.json()["code"] == "auth.missing_scope"


def test_signed_in_admin_posts_a_batch_with_csrf(client: Any, db: Session, world: object) -> None:
    headers = login(client, "a.admin")
    r = client.post(
        "/api/v1/brands/a-coffee/events:batch", json={"events": [event(1)]}, headers=headers
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1
    r = client.post("/api/v1/brands/a-coffee/events:batch", json={"events": [event(2)]})
    assert r.status_code == 403 and r.json()["code"] == "auth.csrf_failed"


def test_orders_over_http_dedupe_by_order(client: Any, db: Session, world: object) -> None:
    headers = auth(db)
    paid = {
        "order_id": "O-1",
        "channel": "mini_mall",
        "paid_fen": 3990,
        "items": [{"sku": "S1", "qty": 1, "unit_price_fen": 3990, "amount_fen": 3990}],
    }
    e1 = event("o1", event_type="order_paid", properties=paid)
    e2 = event("o2", event_type="order_paid", properties=paid)  # same order, other event id
    r = client.post(
        "/api/v1/brands/a-coffee/events:batch", json={"events": [e1, e2]}, headers=headers
    )
    assert [x["status"] for x in r.json()["results"]] == ["accepted", "duplicate"]
    r = client.post("/api/v1/brands/a-coffee/events:batch", json={"events": [e2]}, headers=headers)
    assert r.json()["results"][0]["status"] == "duplicate"
    assert len(stored(db, "orders")) == 1
    assert len(stored(db, "order_items")) == 1
    assert [r["event_id"] for r in stored(db)] == ["e-o1"]


def test_single_event_goes_through_the_inbox_and_worker(
    client: Any, db: Session, engine: Engine, world: object
) -> None:
    headers = auth(db)
    url = "/api/v1/brands/a-coffee/events"
    r = client.post(url, json=event(1), headers=headers)
    assert r.status_code == 202 and r.json() == {"event_id": "e-1", "status": "queued"}
    assert client.post(url, json=event(1), headers=headers).json()["status"] == "duplicate"
    assert client.post(url, json=event(2), headers=headers).status_code == 202
    bad = client.post(url, json=event(3, properties={}), headers=headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "properties.path"
    assert stored(db) == []  # not in the lake until the worker runs
    # when the worker drains the queue
    factory = session_factory(engine)
    assert jobs.run_once(factory)["ingest.inbox"] == 2
    # then the events are facts and the inbox is empty
    assert sorted(r["event_id"] for r in stored(db)) == ["e-1", "e-2"]
    db.rollback()  # end the test session's read snapshot
    assert db.scalars(select(InboxEvent)).all() == []
    # a crash after the lake append but before the delete: the rows come back; nothing doubles
    payload = json.loads(json.dumps(event(1)))
    brand_id = stored(db)[0]["brand_id"]
    db.rollback()
    with db.begin():
        db.add(
            InboxEvent(
                brand_id=brand_id,
                event_id="e-1",
                payload=payload,
                actor_kind="system",
                actor_id="t",
            )
        )
    assert jobs.run_once(factory)["ingest.inbox"] == 1
    assert sorted(r["event_id"] for r in stored(db)) == ["e-1", "e-2"]
    assert jobs.run_once(factory)["ingest.inbox"] == 0


def test_brand_declares_its_own_event_type(client: Any, db: Session, world: object) -> None:
    headers = auth(db)
    spec = {
        "event_type": "tasting_booked",
        "fields": [
            {"name": "store", "type": "string", "required": True, "max_length": 20},
            {"name": "seats", "type": "integer", "min": 1, "max": 8},
            {"name": "deposit_fen", "type": "fen"},
        ],
    }
    r = client.post("/api/v1/brands/a-coffee/event-types", json=spec, headers=headers)
    assert r.status_code == 201, r.text
    assert (
        client.post("/api/v1/brands/a-coffee/event-types", json=spec, headers=headers).status_code
        == 409
    )
    std = {**spec, "event_type": "page_viewed"}
    r = client.post("/api/v1/brands/a-coffee/event-types", json=std, headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "ingest.standard_event_type"
    good = event(1, event_type="tasting_booked", properties={"store": "SH01", "seats": 2})
    bad = event(2, event_type="tasting_booked", properties={"store": "SH01", "seats": 20})
    r = client.post(
        "/api/v1/brands/a-coffee/events:batch", json={"events": [good, bad]}, headers=headers
    )
    assert [x["status"] for x in r.json()["results"]] == ["accepted", "rejected"]
    assert r.json()["results"][1]["errors"][0]["field"] == "properties.seats"
    types = client.get("/api/v1/brands/a-coffee/event-types", headers=headers).json()
    assert any(t["event_type"] == "tasting_booked" and t.get("custom") for t in types)
    # another brand does not have it
    other = {"Authorization": f"Bearer {api_key(db, 'a-tea', 'events.write')}"}
    r = client.post("/api/v1/brands/a-tea/events:batch", json={"events": [good]}, headers=other)
    assert r.json()["results"][0]["errors"][0]["code"] == "ingest.unknown_event_type"
