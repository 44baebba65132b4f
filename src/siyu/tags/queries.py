"""Reads of the tags domain, through the tenant funnel: the library with each tag's health,
a customer's tags, runs.

Health is never silently old: a tag is ``failing`` when its last run failed after its last
success, ``stale`` when its last success is older than its ``stale_after_hours`` or its
definition changed since, ``never`` when it was never computed, ``paused`` when paused.
Manual and WeCom tags are set, not computed, and are always ``ok``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.clock import as_utc, utcnow
from siyu.core.errors import Invalid
from siyu.core.tenancy import Actor
from siyu.customers.queries import access_customer
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize
from siyu.tags import library
from siyu.tags.models import CustomerTag, Tag, TagGroup, TagRun
from siyu.tags.schemas import CustomerTagOut, Health, TagGroupOut, TagOut

if TYPE_CHECKING:
    from siyu.org.models import Brand


def health(tag: Tag, now: datetime | None = None) -> Health:
    now = now or utcnow()
    if tag.status == "paused":
        return "paused"
    if tag.kind in ("manual", "wecom"):
        return "ok"
    ok = as_utc(tag.last_ok_at) if tag.last_ok_at else None
    failed = as_utc(tag.last_error_at) if tag.last_error_at else None
    if failed is not None and (ok is None or failed >= ok):
        return "failing"
    if ok is None:
        return "never"
    if now - ok > timedelta(hours=tag.stale_after_hours) or tag.computed_version != tag.version:
        return "stale"
    return "ok"


def tag_out(tag: Tag, group: TagGroup, now: datetime | None = None) -> TagOut:
    return TagOut(
        id=tag.id,
        key=tag.key,
        name=tag.name,
        group=group.key,
        kind=tag.kind,
        rule=tag.rule,
        description=tag.description,
        status=tag.status,
        builtin=tag.builtin,
        health=health(tag, now),
        members=tag.last_count,
        last_run_at=tag.last_run_at,
        last_ok_at=tag.last_ok_at,
        last_duration_ms=tag.last_duration_ms,
        last_error=tag.last_error,
        stale_after_hours=tag.stale_after_hours,
    )


def tag_library(db: Session, actor: Actor, brand: Brand) -> list[TagGroupOut]:
    """Every group with its tags (deleted ones left out), in library order."""
    authorize(actor, "customers.read", org_queries.brand_ref(brand))
    library.ensure(db, brand)
    groups = list(
        db.scalars(
            select(TagGroup)
            .where(TagGroup.brand_id == brand.id)
            .order_by(TagGroup.position, TagGroup.key)
        )
    )
    tags = list(
        db.scalars(
            select(Tag).where(Tag.brand_id == brand.id, Tag.status != "deleted").order_by(Tag.key)
        )
    )
    now = utcnow()
    out = []
    for g in groups:
        own = [t for t in tags if t.group_id == g.id]
        if g.builtin:  # built-ins keep their designed order (5 → 1, lifecycle stages …)
            order = {t.key: i for i, t in enumerate(_builtin_order(g.key))}
            own.sort(key=lambda t: order.get(t.key, len(order)))
        elif g.kind == "wecom":  # WeCom's own order, as the admin console shows it
            own.sort(key=lambda t: (int((t.spec or {}).get("order", 0)), t.name))
        out.append(
            TagGroupOut(
                id=g.id,
                key=g.key,
                name=g.name,
                kind=g.kind,
                exclusive=g.exclusive,
                builtin=g.builtin,
                description=g.description,
                tags=[tag_out(t, g, now) for t in own],
            )
        )
    return out


def _builtin_order(group_key: str) -> list[Tag]:
    from siyu.tags.builtin import GROUPS

    for g in GROUPS:
        if g.key == group_key:
            return [Tag(key=t.key) for t in g.tags]
    return []


def problems(db: Session, actor: Actor, brand: Brand) -> list[TagOut]:
    """Tags that are failing, stale or never computed (the health page's top list)."""
    flagged: list[TagOut] = []
    for group in tag_library(db, actor, brand):
        flagged.extend(t for t in group.tags if t.health in ("failing", "stale", "never"))
    return flagged


def customer_tags(
    db: Session, actor: Actor, brand: Brand, customer_id: str
) -> list[CustomerTagOut]:
    customer = access_customer(db, actor, brand, customer_id)
    rows = db.execute(
        select(CustomerTag, Tag, TagGroup)
        .join(Tag, Tag.id == CustomerTag.tag_id)
        .join(TagGroup, TagGroup.id == Tag.group_id)
        .where(CustomerTag.brand_id == brand.id, CustomerTag.customer_id == customer.id)
        .order_by(TagGroup.position, Tag.key)
    )
    return [
        CustomerTagOut(
            tag=t.key,
            name=t.name,
            group=g.key,
            group_name=g.name,
            kind=t.kind,
            value=ct.value,
            score=ct.score,
            since=ct.since,
            set_by=ct.set_by,
        )
        for ct, t, g in rows
    ]


def runs(db: Session, actor: Actor, brand: Brand, limit: int = 20) -> list[TagRun]:
    authorize(actor, "customers.read", org_queries.brand_ref(brand))
    return list(
        db.scalars(
            select(TagRun)
            .where(TagRun.brand_id == brand.id)
            .order_by(TagRun.started_at.desc())
            .limit(limit)
        )
    )


def fit_value_model(
    db: Session, actor: Actor, brand: Brand, until: date | None = None
) -> dict[str, Any]:
    """BG/NBD + Gamma-Gamma fitted on the brand's net purchases up to ``until`` (the
    calibration end, a brand-local day; default today), as ``value.fit`` returns it."""
    from siyu.analytics.engine import connect
    from siyu.customers.queries import identity_map
    from siyu.tags import facts as tag_facts
    from siyu.tags import value
    from siyu.tags.builtin import DEFAULT_SETTINGS
    from siyu.tags.compute import local_day

    authorize(actor, "customers.read", org_queries.brand_ref(brand))
    params = dict(DEFAULT_SETTINGS["value"])
    group = db.scalar(
        select(TagGroup).where(TagGroup.brand_id == brand.id, TagGroup.key == "value_model")
    )
    if group is not None:
        params.update((group.settings or {}).get("params", {}))
    end = until or local_day(utcnow(), brand.timezone)
    with connect() as engine:
        idmap = tag_facts.register_map(engine, identity_map(db, brand.id))
        p = tag_facts.purchases(engine, brand.id, idmap).table
    data = value.transactions(
        p.column("customer_id"), p.column("ts"), p.column("amount_fen"), brand.timezone
    )
    summary = value.summarise_days(data, end, unit=str(params["unit"]))
    if len(summary) == 0:
        raise Invalid("value.not_enough_data", reason="no purchases before the calibration end")
    try:
        return value.fit(summary, float(params["penalizer"]))
    except value.NotEnoughData as exc:
        raise Invalid("value.not_enough_data", reason=str(exc)) from exc
