"""What content brought: sends, deliveries, replies, clicks, orders and GMV per material and
per A/B/n variant, within an attribution window.

The store says what was sent (SOP touches with status ``sent`` naming a ``content_id``), what
was delivered (their outbox rows with status ``sent``) and who clicked (counted tracking-link
clicks). The lake (DuckDB over Delta) says who replied (``message_received``) and who paid
(net paid orders), attributed to customers through today's OneID map.

Attribution: a reply or a click counts for a send when it happens within ``window_days``
after it; an order counts for the customer's *latest* send before it within the window (last
touch), so no order is counted twice.

    rows = outcomes(db, brand, since, until, window_days=7)
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.content.models import LinkClick
from siyu.core.clock import as_utc
from siyu.sop.models import Outbox, Touch

if TYPE_CHECKING:
    from siyu.org.models import Brand

CHUNK = 500


@dataclass
class Send:
    """One sent touch and what followed it."""

    touch_id: str
    customer_id: str
    sop_id: str
    step: int
    at: datetime
    content_id: str | None
    version: int | None
    variant: str | None
    delivered: bool = False
    replied: bool = False
    clicked: bool = False
    orders: int = 0
    gmv_fen: int = 0


def _content_of(content: dict[str, Any]) -> dict[str, Any]:
    # a guide-confirmed touch carries the message under "confirm"
    inner = content.get("confirm")
    if isinstance(inner, dict) and isinstance(inner.get("content"), dict):
        return dict(inner["content"])
    return content


def sends(
    db: Session,
    brand_id: str,
    since: datetime,
    until: datetime,
    *,
    sop_id: str | None = None,
    step: int | None = None,
    customer_ids: set[str] | None = None,
) -> list[Send]:
    """Sent touches in [since, until) (optionally of one SOP step, or some customers)."""
    stmt = select(
        Touch.id, Touch.customer_id, Touch.sop_id, Touch.step, Touch.send_at, Touch.content
    ).where(
        Touch.brand_id == brand_id,
        Touch.status == "sent",
        Touch.send_at >= since,
        Touch.send_at < until,
    )
    if sop_id is not None:
        stmt = stmt.where(Touch.sop_id == sop_id)
    if step is not None:
        stmt = stmt.where(Touch.step == step)
    out = []
    for tid, cid, sid, st, at, content in db.execute(stmt):
        if customer_ids is not None and cid not in customer_ids:
            continue
        c = _content_of(dict(content or {}))
        version = c.get("version")
        out.append(
            Send(
                tid,
                cid,
                sid,
                st,
                as_utc(at),
                c.get("content_id"),
                int(version) if isinstance(version, int) else None,
                c.get("variant"),
            )
        )
    return out


def _lake_facts(
    brand_id: str, customer_ids: list[str], since: datetime, until: datetime, idmap: Any
) -> tuple[list[tuple[str, datetime, int]], list[tuple[str, datetime]]]:
    """Net paid orders ``(customer, at, fen)`` and replies ``(customer, at)`` in the window."""
    from siyu.analytics.engine import connect
    from siyu.tags import facts

    if not customer_ids or idmap.num_rows == 0:
        return [], []
    orders: list[tuple[str, datetime, int]] = []
    replies: list[tuple[str, datetime]] = []
    wanted = set(customer_ids)
    with connect() as engine:
        mapped = facts.register_map(engine, idmap)
        try:
            bought = facts.purchases(engine, brand_id, mapped).table
        except Exception:  # no orders table yet for this brand
            bought = None
        if bought is not None:
            for cid, ts, fen in zip(
                bought.column("customer_id").to_pylist(),
                bought.column("ts").to_pylist(),
                bought.column("amount_fen").to_pylist(),
                strict=True,
            ):
                at = as_utc(ts)
                if cid in wanted and since <= at < until:
                    orders.append((cid, at, int(fen)))
        try:
            events = engine.table("events", brand_id)
            got = events.filter(
                (events.event_type == "message_received")
                & (events.occurred_at >= since)
                & (events.occurred_at < until)
            )
            joined = got.join(mapped, got.identity_key == mapped.identity_key)
            table = engine.execute(joined.select("customer_id", "occurred_at"))
        except Exception:  # no events table yet
            table = None
        if table is not None:
            for cid, ts in zip(
                table.column("customer_id").to_pylist(),
                table.column("occurred_at").to_pylist(),
                strict=True,
            ):
                if cid in wanted:
                    replies.append((cid, as_utc(ts)))
    return orders, replies


def attribute(
    db: Session, brand: Brand, rows: list[Send], window_days: int, *, lake: bool = True
) -> list[Send]:
    """Fill in delivered, replied, clicked, orders and GMV of each send."""
    from siyu.customers import queries as customer_queries

    if not rows:
        return rows
    window = timedelta(days=window_days)
    by_touch = {s.touch_id: s for s in rows}
    ids = list(by_touch)
    for start in range(0, len(ids), CHUNK):
        part = ids[start : start + CHUNK]
        for (tid,) in db.execute(
            select(Outbox.touch_id).where(
                Outbox.brand_id == brand.id, Outbox.touch_id.in_(part), Outbox.status == "sent"
            )
        ):
            if tid is not None:
                by_touch[tid].delivered = True
    per_customer: dict[str, list[Send]] = defaultdict(list)
    for s in rows:
        per_customer[s.customer_id].append(s)
    for lst in per_customer.values():
        lst.sort(key=lambda s: s.at)
    first = min(s.at for s in rows)
    last = max(s.at for s in rows) + window
    customers = sorted(per_customer)
    for start in range(0, len(customers), CHUNK):
        part = customers[start : start + CHUNK]
        stmt = select(
            LinkClick.customer_id, LinkClick.touch_id, LinkClick.material_id, LinkClick.at
        ).where(
            LinkClick.brand_id == brand.id,
            LinkClick.bot.is_(False),
            LinkClick.customer_id.in_(part),
            LinkClick.at >= first,
            LinkClick.at < last,
        )
        for cid, tid, mid, at in db.execute(stmt):
            at = as_utc(at)
            if tid and tid in by_touch:
                by_touch[tid].clicked = True
                continue
            for s in per_customer.get(cid or "", []):
                if s.content_id == mid and s.at <= at < s.at + window:
                    s.clicked = True
    if not lake:
        return rows
    idmap = customer_queries.identity_map(db, brand.id, customers)
    orders, replies = _lake_facts(brand.id, customers, first, last, idmap)
    for cid, at in replies:
        for s in per_customer.get(cid, []):
            if s.at <= at < s.at + window:
                s.replied = True
    for cid, at, fen in orders:
        lst = per_customer.get(cid, [])
        i = bisect.bisect_right([s.at for s in lst], at) - 1
        if i >= 0 and at - lst[i].at < window:
            lst[i].orders += 1
            lst[i].gmv_fen += fen
    return rows
