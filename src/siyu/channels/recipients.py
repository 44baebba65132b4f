"""Recipients at send time, from the PII vault: an outbox row names the customer, never the
address. The dispatcher asks here for the customer's e-mail (``email`` channel) or mobile
(``sms``), decrypted in memory for the one send and never written back.

The address is the customer's most recently seen identity of that type (a merged customer is
followed to the survivor). Marketing messages (``payload.kind == "marketing"``) to a customer
whose latest marketing consent is a refusal are not sent (``opted_out``); transactional ones
are.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.customers import vault
from siyu.customers.models import Customer, Identity

# channel -> identifier type it sends to
ADDRESS_TYPES = {"email": "email", "sms": "phone"}
_CN_MOBILE = re.compile(r"^1[3-9]\d{9}$")


def current_customer(db: Session, brand_id: str, customer_id: str) -> str | None:
    """The customer id after following merges (None when the customer does not exist)."""
    seen: set[str] = set()
    current: str | None = customer_id
    while current is not None and current not in seen:
        seen.add(current)
        row = db.execute(
            select(Customer.status, Customer.merged_into).where(
                Customer.brand_id == brand_id, Customer.id == current
            )
        ).first()
        if row is None:
            return None
        status, merged_into = row
        if status != "merged" or not merged_into:
            return current
        current = merged_into
    return None


def address(db: Session, brand_id: str, customer_id: str, id_type: str) -> str | None:
    """The customer's latest address of ``id_type`` from the vault, or None.

    Raises ``Invalid`` (``customers.bad_ciphertext``) when the stored value cannot be
    decrypted (a wrong ``pii.key``)."""
    row = db.execute(
        select(Identity.value_enc, Identity.value)
        .where(
            Identity.brand_id == brand_id,
            Identity.customer_id == customer_id,
            Identity.id_type == id_type,
        )
        .order_by(Identity.last_seen_at.desc(), Identity.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    enc, plain = row
    value = vault.decrypt(enc) if enc else plain
    if not value:
        return None
    if id_type == "phone" and _CN_MOBILE.match(value):
        return "+86" + value
    return str(value)


def opted_out(db: Session, brand_id: str, customer_id: str) -> bool:
    from siyu.sop.state import opted_out as refused

    return customer_id in refused(db, brand_id, [customer_id])
