"""The dispatcher renders a row's templates for its customer before sending (SOP steps and
materials carry ``{{ nickname }}`` …); a template that cannot render is a final
``content_unusable`` failure, and the other rows go on."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.channels.console import ConsoleChannel
from siyu.channels.dispatcher import dispatch
from siyu.core.clock import utcnow
from siyu.core.tenancy import SYSTEM
from siyu.customers import vault
from siyu.customers.models import Identity
from siyu.ingest import actions as ingest
from siyu.org.queries import access_brand
from siyu.sop.models import Outbox


def test_templates_rendered_per_customer_before_sending(db: Session, world: Any) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    out = ingest.ingest_batch(
        db,
        SYSTEM,
        brand,
        [
            {
                "event_id": "c1",
                "event_type": "customer_upserted",
                "occurred_at": "2026-06-01T10:00:00+08:00",
                "identifiers": [{"type": "phone", "value": "13900007777"}],
                "properties": {"nickname": "小林"},
            }
        ],
    )
    assert out.accepted == 1
    h = vault.match_hash(brand.id, "phone", "13900007777")
    cid = db.scalar(select(Identity.customer_id).where(Identity.value_hash == h))
    assert cid
    rows = {
        "ok": {"text": "{{ nickname }}，会员日快乐", "fallbacks": {"nickname": "朋友"}},
        "plain": {"text": "没有变量"},
        "broken": {"text": "{{ ''.__class__ }}"},
    }
    for key, content in rows.items():
        db.add(
            Outbox(
                brand_id=brand.id,
                idem_key=key,
                channel="console",
                customer_id=cid,
                payload={"content": content, "kind": "marketing"},
                status="pending",
                attempts=0,
                available_at=utcnow(),
            )
        )
    db.commit()
    console = ConsoleChannel()
    assert dispatch(db, 10, adapters={"console": console}) == 3
    sent = {m.idem_key: m.content["text"] for m in console.sent}
    assert sent == {"ok": "小林，会员日快乐", "plain": "没有变量"}
    db.rollback()
    broken = db.scalar(select(Outbox).where(Outbox.idem_key == "broken"))
    assert broken is not None and broken.status == "failed"
    assert broken.reason == "content_unusable"
    # the stored row keeps the template, not the customer's rendered text
    ok = db.scalar(select(Outbox).where(Outbox.idem_key == "ok"))
    assert ok is not None and ok.payload["content"]["text"].startswith("{{ nickname }}")
