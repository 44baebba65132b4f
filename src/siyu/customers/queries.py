"""Reads of customer data, always through the tenant funnel and the caller's data scope.

:func:`scope_filter` is the one place that turns a data scope into SQL; :func:`access_customer`
is the funnel for a single customer. A customer outside the caller's scope is ``NotFound``,
exactly like one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, true
from sqlalchemy.orm import Session

from siyu.core.errors import NotFound
from siyu.core.tenancy import Actor
from siyu.customers import vault
from siyu.customers.identifiers import type_config
from siyu.customers.models import (
    Consent,
    Customer,
    CustomerOwner,
    Identity,
    Observation,
    ObservationMember,
    OneIdLog,
    Review,
)
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize, unit_filter

if TYPE_CHECKING:
    from siyu.org.models import Brand


def scope_filter(db: Session, actor: Actor, brand: Brand) -> ColumnElement[bool]:
    """SQL condition on ``Customer`` for what the actor may see in this brand."""
    flt = unit_filter(actor, org_queries.brand_ref(brand))
    if flt.all:
        return true()
    owned_by_me = (
        exists().where(
            CustomerOwner.customer_id == Customer.id,
            CustomerOwner.staff_id == actor.staff_id,
            CustomerOwner.until.is_(None),
        )
        if actor.staff_id
        else false()
    )
    if flt.path_prefix is None:
        # scope "own": the customers this person serves
        return or_(Customer.owner_staff_id == actor.staff_id, owned_by_me)
    in_subtree = org_queries.subtree_unit_ids(brand.id, flt.path_prefix)
    staff_in_subtree = org_queries.staff_in_units(brand.id, in_subtree)
    return or_(
        Customer.home_unit_id.in_(in_subtree),
        Customer.owner_staff_id.in_(staff_in_subtree),
        owned_by_me,
    )


def access_customer(
    db: Session, actor: Actor, brand: Brand, customer_id: str, permission: str = "customers.read"
) -> Customer:
    """The customer if visible to the actor; a merged id leads to its survivor."""
    authorize(actor, permission, org_queries.brand_ref(brand))
    seen: set[str] = set()
    cid = customer_id
    while True:
        customer = db.scalar(
            select(Customer).where(
                Customer.brand_id == brand.id,
                Customer.id == cid,
                scope_filter(db, actor, brand),
            )
        )
        if customer is None:
            raise NotFound("customers.not_found", customer=customer_id)
        if customer.status != "merged" or not customer.merged_into or cid in seen:
            return customer
        seen.add(cid)
        cid = customer.merged_into


@dataclass
class CustomerRow:
    id: str
    name: str
    phone: str
    member_no: str
    owner: str | None
    last_seen_at: datetime | None


def search(
    db: Session, actor: Actor, brand: Brand, query: str = "", limit: int = 50
) -> list[CustomerRow]:
    """Find customers by phone (full number, matched by keyed hash), member number,
    external_userid or any other identifier value, or list the most recent ones."""
    authorize(actor, "customers.read", org_queries.brand_ref(brand))
    stmt = select(Customer).where(
        Customer.brand_id == brand.id,
        Customer.status == "active",
        scope_filter(db, actor, brand),
    )
    text = query.strip()
    if text:
        conds = [Identity.value == text]
        for id_type in ("phone", "email"):
            try:
                norm = vault.normalise(id_type, text)
            except Exception:  # noqa: S112 - not a phone/email: try the next form
                continue
            conds.append(
                and_(
                    Identity.id_type == id_type,
                    Identity.value_hash == vault.match_hash(brand.id, id_type, norm),
                )
            )
        ids = select(Identity.customer_id).where(Identity.brand_id == brand.id, or_(*conds))
        stmt = stmt.where(or_(Customer.id == text, Customer.id.in_(ids)))
    customers = list(db.scalars(stmt.order_by(Customer.last_seen_at.desc()).limit(limit)))
    return rows_for(db, customers)


def rows_by_id(db: Session, actor: Actor, brand: Brand, ids: list[str]) -> dict[str, CustomerRow]:
    """Rows of the named customers the actor may see (merged ones included, so the ids of
    an older OneID review still name someone), in one query rather than one per id."""
    authorize(actor, "customers.read", org_queries.brand_ref(brand))
    if not ids:
        return {}
    customers = list(
        db.scalars(
            select(Customer).where(
                Customer.brand_id == brand.id,
                Customer.id.in_(sorted(set(ids))),
                scope_filter(db, actor, brand),
            )
        )
    )
    return {row.id: row for row in rows_for(db, customers)}


def rows_for(db: Session, customers: list[Customer]) -> list[CustomerRow]:
    ids = [c.id for c in customers]
    masked: dict[tuple[str, str], str] = {}
    if ids:
        for cid, id_type, shown in db.execute(
            select(Identity.customer_id, Identity.id_type, Identity.masked).where(
                Identity.customer_id.in_(ids), Identity.id_type.in_(["phone", "member_no"])
            )
        ):
            if cid is not None:
                masked.setdefault((cid, id_type), shown)
    owners = org_queries.staff_names(db, {c.owner_staff_id for c in customers if c.owner_staff_id})
    return [
        CustomerRow(
            id=c.id,
            name=c.name_masked or c.nickname or "",
            phone=masked.get((c.id, "phone"), ""),
            member_no=masked.get((c.id, "member_no"), ""),
            owner=owners.get(c.owner_staff_id or ""),
            last_seen_at=c.last_seen_at,
        )
        for c in customers
    ]


def identities(db: Session, customer: Customer) -> list[Identity]:
    """Strong identities of the customer, then weak ones seen with it."""
    strong = list(
        db.scalars(
            select(Identity)
            .where(Identity.brand_id == customer.brand_id, Identity.customer_id == customer.id)
            .order_by(Identity.id_type, Identity.first_seen_at)
        )
    )
    weak_ids = (
        select(ObservationMember.identity_id)
        .join(Observation, Observation.id == ObservationMember.observation_id)
        .where(
            ObservationMember.weak.is_(True),
            Observation.id.in_(
                select(ObservationMember.observation_id).where(
                    ObservationMember.identity_id.in_([i.id for i in strong] or [""])
                )
            ),
        )
    )
    weak = list(db.scalars(select(Identity).where(Identity.id.in_(weak_ids))))
    return strong + weak


def identity_keys(db: Session, customer: Customer) -> list[str]:
    """``type:hash`` keys under which the lake holds this customer's facts."""
    return [f"{i.id_type}:{i.value_hash}" for i in identities(db, customer) if not i.weak]


def consents(db: Session, customer: Customer) -> list[tuple[Consent, Identity]]:
    rows = db.execute(
        select(Consent, Identity)
        .join(Identity, Identity.id == Consent.identity_id)
        .where(Identity.customer_id == customer.id, Identity.brand_id == customer.brand_id)
        .order_by(Consent.at.desc())
    )
    return [(c, i) for c, i in rows.all()]


def owners(db: Session, customer: Customer) -> list[dict[str, Any]]:
    rows = list(
        db.scalars(
            select(CustomerOwner)
            .where(CustomerOwner.customer_id == customer.id)
            .order_by(CustomerOwner.since)
        )
    )
    staff = org_queries.staff_brief(db, {o.staff_id for o in rows})
    return [
        {
            "staff_id": o.staff_id,
            "name": staff.get(o.staff_id, ("", ""))[0],
            "username": staff.get(o.staff_id, ("", ""))[1],
            "since": o.since,
            "until": o.until,
            "source": o.source,
        }
        for o in rows
    ]


def oneid_history(db: Session, customer: Customer) -> list[OneIdLog]:
    rows = db.scalars(
        select(OneIdLog)
        .where(OneIdLog.brand_id == customer.brand_id)
        .order_by(OneIdLog.at.desc())
        .limit(500)
    )
    return [r for r in rows if customer.id in r.customer_ids or customer.id in r.result_ids]


def reviews(db: Session, actor: Actor, brand: Brand, status: str = "open") -> list[Review]:
    authorize(actor, "customers.merge", org_queries.brand_ref(brand))
    return list(
        db.scalars(
            select(Review)
            .where(Review.brand_id == brand.id, Review.status == status)
            .order_by(Review.created_at)
        )
    )


def id_types(db: Session, brand: Brand) -> dict[str, dict[str, Any]]:
    cfg = type_config(db, brand.id)
    return {
        n: {"strong": t.strong, "unique": t.unique, "priority": t.priority}
        for n, t in sorted(cfg.types.items(), key=lambda kv: kv[1].priority)
    }


def identity_map(db: Session, brand_id: str, customer_ids: list[str] | None = None) -> Any:
    """Today's OneID as an Arrow table ``(identity_key, customer_id)``: every strong identity
    that belongs to a customer. Facts in the lake carry identity keys; joining them with this
    map attributes them to customers as they are now (after merges and splits).

    Internal to analytics callers (tags, segments, KPIs) that have passed the funnel.
    ``customer_ids`` restricts the map (incremental computations)."""
    import pyarrow as pa

    def fetch(ids: list[str] | None) -> list[Any]:
        stmt = select(Identity.id_type, Identity.value_hash, Identity.customer_id).where(
            Identity.brand_id == brand_id, Identity.customer_id.is_not(None)
        )
        if ids is not None:
            stmt = stmt.where(Identity.customer_id.in_(ids))
        return list(db.execute(stmt))

    if customer_ids is None:
        rows = fetch(None)
    else:
        rows = []
        for start in range(0, len(customer_ids), 500):
            rows.extend(fetch(customer_ids[start : start + 500]))
    keys = [f"{t}:{h}" for t, h, _ in rows]
    return pa.table(
        {
            "identity_key": pa.array(keys, pa.string()),
            "customer_id": pa.array([c for _, _, c in rows], pa.string()),
        }
    )


def active_customer_ids(db: Session, brand_id: str) -> list[str]:
    """Every active (not merged-away) customer of the brand, sorted."""
    stmt = (
        select(Customer.id)
        .where(Customer.brand_id == brand_id, Customer.status == "active")
        .order_by(Customer.id)
    )
    return list(db.scalars(stmt))


def customers_changed_since(db: Session, brand_id: str, since: datetime | None) -> list[str]:
    """Customers OneID created, merged or split since ``since`` (all when None)."""
    if since is None:
        return active_customer_ids(db, brand_id)
    out: set[str] = set(
        db.scalars(
            select(Customer.id).where(Customer.brand_id == brand_id, Customer.created_at >= since)
        )
    )
    for before, after in db.execute(
        select(OneIdLog.customer_ids, OneIdLog.result_ids).where(
            OneIdLog.brand_id == brand_id, OneIdLog.at >= since
        )
    ):
        out.update(before or [])
        out.update(after or [])
    return sorted(out)


def customers_of_keys(db: Session, brand_id: str, identity_keys: list[str]) -> list[str]:
    """Customers holding any of these identity keys (``type:hash``) today."""
    from siyu.customers.oneid import identities_by_key

    pairs = {(t, h) for t, _, h in (k.partition(":") for k in identity_keys)}
    rows = identities_by_key(db, brand_id, pairs, (Identity.customer_id,))
    return sorted({cid for (cid,) in rows if cid})


def _active_in(brand_id: str, ids: list[str] | None) -> list[Any]:
    """Conditions for active customers of a brand, optionally among ``ids`` (chunked)."""
    base = [Customer.brand_id == brand_id, Customer.status == "active"]
    if ids is None:
        return [base]
    return [[*base, Customer.id.in_(ids[i : i + 500])] for i in range(0, len(ids), 500)]


def first_seen_days(
    db: Session, brand_id: str, ids: list[str] | None, tz: str
) -> dict[str, int | None]:
    """Active customers → brand-local day number (days since 1970-01-01) first seen."""
    from datetime import date
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    epoch = date(1970, 1, 1)
    out: dict[str, int | None] = {}
    for cond in _active_in(brand_id, ids):
        for cid, seen in db.execute(select(Customer.id, Customer.first_seen_at).where(*cond)):
            out[cid] = None if seen is None else (seen.astimezone(zone).date() - epoch).days
    return out


def owners_and_home_units(
    db: Session, brand_id: str, ids: list[str] | None
) -> tuple[dict[str, str], dict[str, str]]:
    """Active customers → owner staff id, and → home unit code (where set)."""
    from siyu.org.models import OrgUnit

    owners: dict[str, str] = {}
    homes: dict[str, str] = {}
    for cond in _active_in(brand_id, ids):
        stmt = (
            select(Customer.id, Customer.owner_staff_id, OrgUnit.code)
            .outerjoin(OrgUnit, OrgUnit.id == Customer.home_unit_id)
            .where(*cond)
        )
        for cid, owner, code in db.execute(stmt):
            if owner:
                owners[cid] = owner
            if code:
                homes[cid] = code
    return owners, homes
