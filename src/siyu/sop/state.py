"""What the engine reads besides its own tables, in bulk: lake events attributed to today's
customers, customer facts (owner guide, birthday, expected value), marketing consent, and the
customer state the planner needs (hard stops, replies).

Facts are read once per engine pass (``Facts``) and filtered in memory by time, so the
dry-run and the real run of the same days see exactly the same inputs.

Customer state, documented choices:

- ``opted_out``: the latest ``marketing`` consent of any of the customer's identities was a
  refusal (``granted = false``).
- ``deleted_guide``: the customer's latest ``wecom_contact_deleted_by_customer`` event is
  later than their latest ``wecom_contact_added``.
- ``complained``: a ``survey_answered`` event with ``csat`` ≤ 1 that occurred in the 30 days
  before the end of the planned day.
- ``last_reply_at``: the latest ``message_received`` (any reply resets back-off); the
  unanswered count is the marketing touches sent since then (counted by the engine from
  ``sop_touches``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

ADDED = "wecom_contact_added"
DELETED = "wecom_contact_deleted_by_customer"
REPLY = "message_received"
SURVEY = "survey_answered"
STATE_EVENTS = (ADDED, DELETED, REPLY, SURVEY)
COMPLAINT_DAYS = 30
COMPLAINT_CSAT = 1
VALUE_TAG = "value_365"


@dataclass(frozen=True)
class Event:
    customer_id: str
    occurred_at: datetime
    received_at: datetime
    properties: str | None


@dataclass
class Facts:
    """Lake events of some types, attributed to customers through today's identity map."""

    by_type: dict[str, list[Event]] = field(default_factory=dict)
    _per_customer: dict[tuple[str, str], list[Event]] = field(default_factory=dict)

    @classmethod
    def read(
        cls, db: Session, brand_id: str, types: set[str], customer_ids: list[str] | None = None
    ) -> Facts:
        import pyarrow.compute as pc

        from siyu.analytics import lake
        from siyu.customers.queries import identity_map

        out = cls()
        if not types:
            return out
        idmap = identity_map(db, brand_id, customer_ids)
        if customer_ids is not None and not idmap.num_rows:
            return out
        flt = (pc.field("brand_id") == brand_id) & pc.field("event_type").isin(sorted(types))
        if customer_ids is not None:
            flt = flt & pc.field("identity_key").isin(idmap.column("identity_key"))
        cols = ["identity_key", "event_type", "occurred_at", "received_at", "properties"]
        table = lake.dataset("events", brand_id).to_table(columns=cols, filter=flt)
        if not table.num_rows:
            return out
        joined = table.join(idmap, "identity_key", join_type="inner")
        rows = joined.select(["customer_id", *cols[1:]]).to_pylist()
        rows.sort(key=lambda r: (r["occurred_at"], r["customer_id"]))
        for r in rows:
            e = Event(r["customer_id"], r["occurred_at"], r["received_at"], r["properties"])
            out.by_type.setdefault(r["event_type"], []).append(e)
            out._per_customer.setdefault((r["event_type"], e.customer_id), []).append(e)
        return out

    def of(self, event_type: str) -> list[Event]:
        return self.by_type.get(event_type, [])

    def customer(self, event_type: str, customer_id: str) -> list[Event]:
        """A customer's events of a type, by occurrence."""
        return self._per_customer.get((event_type, customer_id), [])

    def received(self, event_type: str, after: datetime, until: datetime) -> dict[str, datetime]:
        """Customers with an event received in ``(after, until]``: the earliest such time."""
        out: dict[str, datetime] = {}
        for e in self.of(event_type):
            if after < e.received_at <= until and (
                e.customer_id not in out or e.received_at < out[e.customer_id]
            ):
                out[e.customer_id] = e.received_at
        return out

    def first_last(self, event_type: str, until: datetime) -> dict[str, tuple[datetime, datetime]]:
        """Per customer the first and last occurrence up to ``until``."""
        out: dict[str, tuple[datetime, datetime]] = {}
        for e in self.of(event_type):
            if e.occurred_at > until:
                continue
            first, last = out.get(e.customer_id, (e.occurred_at, e.occurred_at))
            out[e.customer_id] = (min(first, e.occurred_at), max(last, e.occurred_at))
        return out


@dataclass(frozen=True)
class Info:
    owner: str | None
    birthday: date | None
    value: float


def customer_info(db: Session, brand_id: str, ids: list[str]) -> dict[str, Info]:
    """Owner guide, birthday and expected value (the ``value_365`` score, fen) per customer."""
    from siyu.customers.models import Customer
    from siyu.tags.models import CustomerTag, Tag

    rows: dict[str, tuple[str | None, date | None]] = {}
    values: dict[str, float] = {}
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        for cid, owner, bday in db.execute(
            select(Customer.id, Customer.owner_staff_id, Customer.birthday).where(
                Customer.brand_id == brand_id, Customer.id.in_(part)
            )
        ):
            rows[cid] = (owner, bday)
        for cid, score in db.execute(
            select(CustomerTag.customer_id, CustomerTag.score)
            .join(Tag, Tag.id == CustomerTag.tag_id)
            .where(
                Tag.brand_id == brand_id, Tag.key == VALUE_TAG, CustomerTag.customer_id.in_(part)
            )
        ):
            values[cid] = float(score or 0.0)
    return {
        cid: Info(
            rows.get(cid, (None, None))[0], rows.get(cid, (None, None))[1], values.get(cid, 0.0)
        )
        for cid in ids
    }


def birthdays(db: Session, brand_id: str) -> dict[str, date]:
    from siyu.customers.models import Customer

    stmt = select(Customer.id, Customer.birthday).where(
        Customer.brand_id == brand_id, Customer.status == "active", Customer.birthday.is_not(None)
    )
    return {cid: b for cid, b in db.execute(stmt) if b is not None}


def opted_out(db: Session, brand_id: str, ids: list[str]) -> set[str]:
    """Customers whose latest marketing consent on any identity is a refusal."""
    from siyu.customers.models import Consent, Identity

    latest: dict[str, tuple[datetime, bool, str]] = {}
    for i in range(0, len(ids), 500):
        stmt = (
            select(Consent.identity_id, Consent.at, Consent.granted, Identity.customer_id)
            .join(Identity, Identity.id == Consent.identity_id)
            .where(
                Consent.brand_id == brand_id,
                Consent.purpose == "marketing",
                Identity.customer_id.in_(ids[i : i + 500]),
            )
        )
        for ident, at, granted, cid in db.execute(stmt):
            if cid is None:
                continue
            if ident not in latest or at >= latest[ident][0]:
                latest[ident] = (at, bool(granted), cid)
    return {cid for _, granted, cid in latest.values() if not granted}


@dataclass(frozen=True)
class StopState:
    deleted_guide: bool
    complained: bool
    last_reply_at: datetime | None


def stop_state(facts: Facts, customer_id: str, until: datetime) -> StopState:
    """Hard stops and the latest reply of one customer from the lake facts up to ``until``."""

    def latest(kind: str) -> datetime | None:
        times = [e.occurred_at for e in facts.customer(kind, customer_id) if e.occurred_at <= until]
        return max(times) if times else None

    added, deleted = latest(ADDED), latest(DELETED)
    since = until - timedelta(days=COMPLAINT_DAYS)
    complained = False
    for e in facts.customer(SURVEY, customer_id):
        if since <= e.occurred_at <= until and e.properties:
            try:
                csat = json.loads(e.properties).get("csat")
            except (ValueError, AttributeError):
                continue
            if isinstance(csat, int | float) and csat <= COMPLAINT_CSAT:
                complained = True
    return StopState(
        deleted is not None and (added is None or deleted > added),
        complained,
        latest(REPLY),
    )


def group_by(items: list[Any], key: Any) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return out
