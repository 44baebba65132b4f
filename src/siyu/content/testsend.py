"""Test sends of a material: the console's "send test" button.

A test renders the material's current version as a touch would carry it (text, link title
and description templates, for a chosen customer in the actor's data scope, PII masked) and
puts one row in the outbox — the same table real touches go through — for the ``console``
channel (recorded by its adapter) or the ``email`` channel addressed to the staff member who
asked (delivered once SMTP is configured). ``siyu worker`` delivers it like any other row;
the row's idempotency key is ``content-test:{material}:{id}``, so each click is one message.
Checks ``content.write`` and is audited.

    row = send_test(db, actor, brand, material_id, channel="console", customer_id=cid)
    rows = recent_tests(db, actor, brand, material_id)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.content import queries
from siyu.content.actions import material_for, step_content
from siyu.core.audit import record
from siyu.core.clock import utcnow
from siyu.core.db import atomic
from siyu.core.errors import FieldError, Invalid
from siyu.core.ids import new_id
from siyu.core.tenancy import Actor
from siyu.customers import queries as customer_queries
from siyu.org import queries as org_queries
from siyu.org.models import Staff
from siyu.org.permissions import authorize
from siyu.sop.models import Outbox

if TYPE_CHECKING:
    from siyu.org.models import Brand

TEST_CHANNELS = ("console", "email")
PREFIX = "content-test:"


def _key(material_id: str) -> str:
    return f"{PREFIX}{material_id}:"


def send_test(
    db: Session,
    actor: Actor,
    brand: Brand,
    material_id: str,
    *,
    channel: str = "console",
    customer_id: str | None = None,
) -> Outbox:
    """One outbox row carrying the rendered material (``content.write``)."""
    authorize(actor, "content.write", org_queries.brand_ref(brand))
    if channel not in TEST_CHANNELS:
        raise Invalid(
            "content.test_bad_channel",
            channel=channel,
            known=", ".join(TEST_CHANNELS),
            errors=[FieldError("content.test_bad_channel", field="channel", reason=channel)],
        )
    to = None
    if channel == "email":
        staff = db.get(Staff, actor.staff_id) if actor.staff_id else None
        to = staff.email if staff is not None else None
        if not to:
            raise Invalid(
                "content.test_no_email",
                errors=[FieldError("content.test_no_email", field="channel", reason="email")],
            )
    material = material_for(db, brand, material_id)
    customer = (
        customer_queries.access_customer(db, actor, brand, customer_id).id if customer_id else None
    )
    # the message as a touch would carry it (an archived or expired material is refused),
    # its templates rendered for the customer with masked PII: a test goes to staff
    content = queries.render_content(
        db,
        brand,
        step_content(db, brand, material.id),
        customer,
        link="/t/test",
        masked=True,
    )
    payload: dict[str, Any] = {
        "content": content,
        "test": True,
        "requested_by": actor.label,
        "customer_id": customer,
    }
    if to:
        payload["to"] = to
        payload["subject"] = f"[测试 / test] {material.name}"
    now = utcnow()
    with atomic(db):
        row = Outbox(
            id=new_id(),
            brand_id=brand.id,
            idem_key=f"{_key(material.id)}{new_id()}",
            channel=channel,
            customer_id=None,  # a test goes to staff, never to the customer
            payload=payload,
            status="pending",
            attempts=0,
            available_at=now,
        )
        db.add(row)
        db.flush()
        record(
            db,
            actor,
            "content.test_send",
            "outbox",
            row.id,
            brand=brand,
            after={"material": material.id, "version": material.version, "channel": channel},
        )
    return row


def recent_tests(
    db: Session, actor: Actor, brand: Brand, material_id: str, limit: int = 20
) -> list[Outbox]:
    """The latest test sends of a material, newest first (``org.read``)."""
    authorize(actor, "org.read", org_queries.brand_ref(brand))
    material = material_for(db, brand, material_id)
    return list(
        db.scalars(
            select(Outbox)
            .where(Outbox.brand_id == brand.id, Outbox.idem_key.startswith(_key(material.id)))
            .order_by(Outbox.id.desc())
            .limit(limit)
        )
    )
