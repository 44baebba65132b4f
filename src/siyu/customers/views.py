"""The Customer 360 as one structure, shared by the API, the console and the CLI.

Everything here is masked; revealing a value is a separate, audited action.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from siyu.core.tenancy import Actor
from siyu.customers import queries
from siyu.customers.models import Customer

if TYPE_CHECKING:
    from siyu.org.models import Brand


class IdentityOut(BaseModel):
    id: str
    type: str
    value: str  # masked for PII types
    weak: bool
    source: str
    first_seen_at: datetime
    last_seen_at: datetime
    key: str


class ConsentOut(BaseModel):
    purpose: str
    granted: bool
    at: datetime
    source: str | None
    identity_type: str
    identity: str


class OwnerOut(BaseModel):
    staff_id: str
    name: str
    username: str
    since: datetime
    until: datetime | None
    source: str


class HistoryOut(BaseModel):
    at: datetime
    kind: str
    customer_ids: list[str]
    result_ids: list[str]
    actor: str


class Customer360(BaseModel):
    id: str
    status: str
    name: str
    nickname: str | None
    gender: str | None
    birthday: str | None
    city: str | None
    attributes: dict[str, Any]
    owner_staff_id: str | None
    home_unit_id: str | None
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    conflicted: bool
    identities: list[IdentityOut]
    consents: list[ConsentOut]
    owners: list[OwnerOut]
    history: list[HistoryOut]
    timeline: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []


class CustomerRowOut(BaseModel):
    id: str
    name: str
    phone: str
    member_no: str
    owner: str | None
    last_seen_at: datetime | None


def customer_360(
    db: Session, actor: Actor, brand: Brand, customer: Customer, facts: bool = True
) -> Customer360:
    """The whole picture; ``facts=False`` skips the lake (timeline and orders)."""
    idents = queries.identities(db, customer)
    timeline: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    if facts:
        from siyu.customers.timeline import customer_facts

        keys = [f"{i.id_type}:{i.value_hash}" for i in idents if not i.weak]
        timeline, orders = customer_facts(brand.id, keys)
    return Customer360(
        timeline=timeline,
        orders=orders,
        id=customer.id,
        status=customer.status,
        name=customer.name_masked or "",
        nickname=customer.nickname,
        gender=customer.gender,
        birthday=customer.birthday.isoformat() if customer.birthday else None,
        city=customer.city,
        attributes=customer.attributes or {},
        owner_staff_id=customer.owner_staff_id,
        home_unit_id=customer.home_unit_id,
        first_seen_at=customer.first_seen_at,
        last_seen_at=customer.last_seen_at,
        conflicted=customer.conflicted,
        identities=[
            IdentityOut(
                id=i.id,
                type=i.id_type,
                value=i.masked,
                weak=i.weak,
                source=i.source,
                first_seen_at=i.first_seen_at,
                last_seen_at=i.last_seen_at,
                key=f"{i.id_type}:{i.value_hash}",
            )
            for i in idents
        ],
        consents=[
            ConsentOut(
                purpose=c.purpose,
                granted=c.granted,
                at=c.at,
                source=c.source,
                identity_type=i.id_type,
                identity=i.masked,
            )
            for c, i in queries.consents(db, customer)
        ],
        owners=[OwnerOut(**o) for o in queries.owners(db, customer)],
        history=[
            HistoryOut(
                at=h.at,
                kind=h.kind,
                customer_ids=h.customer_ids,
                result_ids=h.result_ids,
                actor=h.actor_label,
            )
            for h in queries.oneid_history(db, customer)
        ],
    )


def search_rows(
    db: Session, actor: Actor, brand: Brand, q: str = "", limit: int = 50
) -> list[CustomerRowOut]:
    return [CustomerRowOut(**r.__dict__) for r in queries.search(db, actor, brand, q, limit=limit)]
