"""Reads of the channels domain, scoped to the brand and the actor's data scope
(``channels.manage``): the brand's channel settings (secrets never returned), outbox rows
with filters (the dead-letter view is ``status=failed``), and state counts per channel.

Rows of customers outside an actor's data scope are invisible to them; rows without a
customer (webhooks into the brand's systems) only to actors who see the whole brand.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.channels import errors
from siyu.channels.base import REASONS
from siyu.channels.models import CONFIGURABLE, ChannelSetting
from siyu.channels.schemas import (
    OUTBOX_STATUSES,
    ChannelSettingsOut,
    OutboxCount,
    OutboxRowOut,
    OutboxSummaryOut,
)
from siyu.core.errors import Invalid, NotFound
from siyu.core.tenancy import Actor
from siyu.customers import queries as customer_queries
from siyu.customers.models import Customer
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize, unit_filter
from siyu.sop.models import Outbox, Sop, Touch

if TYPE_CHECKING:
    from siyu.org.models import Brand

PERMISSION = "channels.manage"


def _authorize(actor: Actor, brand: Brand) -> None:
    authorize(actor, PERMISSION, org_queries.brand_ref(brand))


def scoped(db: Session, actor: Actor, brand: Brand, stmt: Any) -> Any:
    """``stmt`` (over ``Outbox``) limited to the brand and the actor's data scope."""
    stmt = stmt.where(Outbox.brand_id == brand.id)
    if unit_filter(actor, org_queries.brand_ref(brand)).all:
        return stmt
    visible = select(Customer.id).where(
        Customer.brand_id == brand.id, customer_queries.scope_filter(db, actor, brand)
    )
    return stmt.where(Outbox.customer_id.in_(visible))


def settings(db: Session, actor: Actor, brand: Brand) -> list[ChannelSettingsOut]:
    """Every configurable channel with the brand's settings (or none yet); secrets show only
    whether one is set and its masked tail."""
    _authorize(actor, brand)
    rows = {
        r.channel: r
        for r in db.scalars(select(ChannelSetting).where(ChannelSetting.brand_id == brand.id))
    }
    out = []
    for channel in CONFIGURABLE:
        row = rows.get(channel)
        out.append(
            ChannelSettingsOut(
                channel=channel,
                configured=row is not None,
                enabled=bool(row.enabled) if row else False,
                config=dict(row.config or {}) if row else {},
                secret_set=bool(row and row.secret_enc),
                secret_hint=(row.secret_hint or "") if row else "",
                updated_at=row.updated_at if row else None,
                updated_by=row.updated_by if row else None,
            )
        )
    return out


def _check(name: str, value: str | None, known: tuple[str, ...]) -> None:
    if value is not None and value not in known:
        raise Invalid(errors.BAD_FILTER, name=name, value=value[:40], known=", ".join(known))


def outbox(
    db: Session,
    actor: Actor,
    brand: Brand,
    *,
    status: str | None = None,
    channel: str | None = None,
    sop: str | None = None,
    reason: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[OutboxRowOut]:
    """Outbox rows, latest outcome first. ``since``/``until`` bound ``available_at`` (for
    failed rows: when they failed). ``sop`` is an SOP key or id."""
    _authorize(actor, brand)
    _check("status", status, OUTBOX_STATUSES)
    _check("reason", reason, REASONS)
    stmt = scoped(
        db,
        actor,
        brand,
        select(Outbox, Touch.sop_id, Sop.key)
        .outerjoin(Touch, Touch.id == Outbox.touch_id)
        .outerjoin(Sop, Sop.id == Touch.sop_id),
    )
    if status is not None:
        stmt = stmt.where(Outbox.status == status)
    if channel is not None:
        stmt = stmt.where(Outbox.channel == channel)
    if sop is not None:
        stmt = stmt.where((Sop.key == sop) | (Sop.id == sop))
    if reason is not None:
        stmt = stmt.where(Outbox.reason == reason)
    if since is not None:
        stmt = stmt.where(Outbox.available_at >= since)
    if until is not None:
        stmt = stmt.where(Outbox.available_at < until)
    stmt = stmt.order_by(Outbox.available_at.desc(), Outbox.id.desc()).limit(limit)
    return [row_out(row, sop_id, key) for row, sop_id, key in db.execute(stmt)]


def row_out(row: Outbox, sop_id: str | None = None, sop_key: str | None = None) -> OutboxRowOut:
    payload = row.payload if isinstance(row.payload, dict) else {}
    return OutboxRowOut(
        id=row.id,
        idem_key=row.idem_key,
        channel=row.channel,
        customer_id=row.customer_id,
        sop_id=sop_id or (str(payload["sop_id"]) if payload.get("sop_id") else None),
        sop=sop_key,
        status=row.status,
        attempts=row.attempts,
        reason=row.reason,
        error=row.error,
        available_at=row.available_at,
        sent_at=row.sent_at,
        created_at=row.created_at,
        claimed_by=row.claimed_by,
    )


def show(db: Session, actor: Actor, brand: Brand, row_id: str) -> OutboxRowOut:
    _authorize(actor, brand)
    found = db.execute(
        scoped(
            db,
            actor,
            brand,
            select(Outbox, Touch.sop_id, Sop.key)
            .outerjoin(Touch, Touch.id == Outbox.touch_id)
            .outerjoin(Sop, Sop.id == Touch.sop_id)
            .where(Outbox.id == row_id),
        )
    ).first()
    if found is None:
        raise NotFound(errors.OUTBOX_NOT_FOUND, id=row_id[:40])
    return row_out(*found)


def summary(db: Session, actor: Actor, brand: Brand) -> OutboxSummaryOut:
    """Rows per channel and state, and failed rows per reason code."""
    _authorize(actor, brand)
    stmt = scoped(
        db,
        actor,
        brand,
        select(Outbox.channel, Outbox.status, func.count()).group_by(Outbox.channel, Outbox.status),
    )
    per: dict[str, OutboxCount] = {}
    total = OutboxCount(channel="*")
    for channel, status, n in db.execute(stmt):
        count = per.setdefault(channel, OutboxCount(channel=channel))
        if status in OUTBOX_STATUSES:
            setattr(count, status, getattr(count, status) + int(n))
            setattr(total, status, getattr(total, status) + int(n))
    reasons: Counter[str] = Counter()
    failed = scoped(
        db,
        actor,
        brand,
        select(Outbox.reason, func.count())
        .where(Outbox.status == "failed")
        .group_by(Outbox.reason),
    )
    for reason, n in db.execute(failed):
        reasons[reason or "unknown"] += int(n)
    return OutboxSummaryOut(
        channels=[per[c] for c in sorted(per)], total=total, reasons=dict(sorted(reasons.items()))
    )
