"""Every write of the tags domain: groups and tags, brand settings of computed groups,
manual tags, computation runs, segments and their snapshots and exports. Each checks the
permission, runs in one transaction and is audited.

    tag = create_tag(db, actor, brand, TagIn(key="repeat_buyer", name="复购客户", group="rules",
                     rule="count(order_paid, last 90d) >= 2"))
    run = compute(db, actor, brand, RunIn(mode="auto"))
"""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from siyu.core.audit import record
from siyu.core.clock import utcnow
from siyu.core.db import atomic, bulk_insert, table_of
from siyu.core.errors import Conflict, Invalid, NotFound
from siyu.core.ids import new_id
from siyu.core.tenancy import Actor
from siyu.customers.queries import access_customer
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize
from siyu.tags import compute as tag_compute
from siyu.tags import library, rules
from siyu.tags.builtin import DEFAULT_SETTINGS
from siyu.tags.models import CustomerTag, Tag, TagChange, TagGroup, TagRun
from siyu.tags.schemas import ManualTagIn, RunIn, SettingsIn, TagGroupIn, TagIn, TagPatch

if TYPE_CHECKING:
    from siyu.org.models import Brand


def _authorize(actor: Actor, brand: Brand, permission: str = "tags.write") -> None:
    authorize(actor, permission, org_queries.brand_ref(brand))


def group_by_key(db: Session, brand: Brand, key: str) -> TagGroup:
    group = db.scalar(select(TagGroup).where(TagGroup.brand_id == brand.id, TagGroup.key == key))
    if group is None:
        raise NotFound("tags.group_not_found", group=key)
    return group


def tag_by_key(db: Session, brand: Brand, key: str) -> Tag:
    library.ensure(db, brand)
    tag = db.scalar(select(Tag).where(Tag.brand_id == brand.id, Tag.key == key))
    if tag is None:
        raise NotFound("tags.not_found", tag=key)
    return tag


def create_group(db: Session, actor: Actor, brand: Brand, body: TagGroupIn) -> TagGroup:
    _authorize(actor, brand)
    library.ensure(db, brand)
    with atomic(db):
        if db.scalar(
            select(TagGroup.id).where(TagGroup.brand_id == brand.id, TagGroup.key == body.key)
        ):
            raise Conflict("tags.group_exists", group=body.key)
        group = TagGroup(brand_id=brand.id, settings={}, builtin=False, **body.model_dump())
        db.add(group)
        db.flush()
        record(
            db,
            actor,
            "tag_group.create",
            "tag_group",
            group.id,
            brand=brand,
            after=body.model_dump(),
        )
    return group


def create_tag(db: Session, actor: Actor, brand: Brand, body: TagIn) -> Tag:
    _authorize(actor, brand)
    library.ensure(db, brand)
    group = group_by_key(db, brand, body.group)
    if group.kind != body.kind:
        raise Invalid("tags.wrong_group", group=body.group, kind=body.kind)
    text = None
    if body.kind == "rule":
        text = rules.normalise(db, brand, body.rule, body.rule_json)
    elif body.rule or body.rule_json:
        raise Invalid("tags.rule_not_allowed", kind=body.kind)
    with atomic(db):
        if db.scalar(select(Tag.id).where(Tag.brand_id == brand.id, Tag.key == body.key)):
            raise Conflict("tags.exists", tag=body.key)
        tag = Tag(
            brand_id=brand.id,
            group_id=group.id,
            key=body.key,
            name=body.name,
            kind=body.kind,
            description=body.description,
            rule=text,
            spec={},
            stale_after_hours=body.stale_after_hours,
            created_by=actor.label,
            updated_at=utcnow(),
        )
        db.add(tag)
        db.flush()
        record(
            db,
            actor,
            "tag.create",
            "tag",
            tag.id,
            brand=brand,
            after={"key": tag.key, "group": group.key, "rule": text},
        )
    return tag


def update_tag(db: Session, actor: Actor, brand: Brand, key: str, body: TagPatch) -> Tag:
    _authorize(actor, brand)
    tag = tag_by_key(db, brand, key)
    before = {"name": tag.name, "rule": tag.rule, "status": tag.status}
    changes = body.model_dump(exclude_unset=True)
    if ("rule" in changes or "rule_json" in changes) and tag.kind != "rule":
        raise Invalid("tags.rule_not_allowed", kind=tag.kind)
    with atomic(db):
        if "rule" in changes or "rule_json" in changes:
            text = rules.normalise(db, brand, body.rule, body.rule_json)
            if text != tag.rule:
                tag.rule = text
                tag.version += 1
        for name in ("name", "description", "status", "stale_after_hours"):
            if name in changes and changes[name] is not None:
                setattr(tag, name, changes[name])
        tag.updated_at = utcnow()
        record(
            db,
            actor,
            "tag.update",
            "tag",
            tag.id,
            brand=brand,
            before=before,
            after={"name": tag.name, "rule": tag.rule, "status": tag.status},
        )
    return tag


def delete_tag(db: Session, actor: Actor, brand: Brand, key: str) -> None:
    """Remove a tag that is not built in, with its members (history is kept)."""
    _authorize(actor, brand)
    tag = tag_by_key(db, brand, key)
    if tag.builtin:
        raise Invalid("tags.builtin", tag=key)
    with atomic(db):
        ct = table_of(CustomerTag)
        db.execute(delete(ct).where(ct.c.tag_id == tag.id))
        tag.status = "deleted"
        tag.key = f"{tag.key}~{new_id()[-8:].lower()}"[:64]
        record(db, actor, "tag.delete", "tag", tag.id, brand=brand, before={"key": key})


def update_settings(db: Session, actor: Actor, brand: Brand, body: SettingsIn) -> TagGroup:
    """Brand-set parameters of a computed group (RFM cut points, lifecycle days, value model
    horizon). Every tag of the group is recomputed for everybody on the next run."""
    _authorize(actor, brand)
    library.ensure(db, brand)
    group = group_by_key(db, brand, body.group)
    section = {"rfm_segment": "rfm", "lifecycle": "lifecycle", "value_model": "value"}[body.group]
    allowed = DEFAULT_SETTINGS[section]
    unknown = sorted(set(body.params) - set(allowed))
    if unknown:
        raise Invalid("tags.bad_settings", reason="unknown settings: " + ", ".join(unknown))
    params = _check_settings(
        section, {**allowed, **(group.settings or {}).get("params", {}), **body.params}
    )
    with atomic(db):
        before = dict(group.settings or {})
        group.settings = {**before, "params": params}
        groups = [group.id]
        if section == "rfm":  # the score groups follow the segment group's settings
            groups += [
                g.id
                for g in db.scalars(
                    select(TagGroup).where(
                        TagGroup.brand_id == brand.id,
                        TagGroup.key.in_(["rfm_r", "rfm_f", "rfm_m"]),
                    )
                )
            ]
        for tag in db.scalars(select(Tag).where(Tag.group_id.in_(groups))):
            tag.version += 1
        record(
            db,
            actor,
            "tag_settings.update",
            "tag_group",
            group.id,
            brand=brand,
            before=before.get("params"),
            after=params,
        )
    return group


def _check_settings(section: str, params: dict[str, Any]) -> dict[str, Any]:
    def number(name: str, low: float, high: float) -> None:
        value = params[name]
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not low <= value <= high
        ):
            raise Invalid("tags.bad_settings", reason=f"{name} must be a number in [{low}, {high}]")

    if section == "rfm":
        number("window_days", 7, 3660)
        number("high_from", 2, 5)
        for name in ("recency", "frequency", "monetary"):
            cuts = params[name]
            if cuts is None:
                continue
            ok = (
                isinstance(cuts, list)
                and len(cuts) == 4
                and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cuts)
                and all(b > a for a, b in pairwise(cuts))
            )
            if not ok:
                raise Invalid(
                    "tags.bad_settings", reason=f"{name}: four increasing whole numbers or null"
                )
    elif section == "lifecycle":
        for name in ("new_days", "active_days", "silent_days", "churn_days", "won_back_gap_days"):
            number(name, 1, 3660)
        if not params["active_days"] < params["silent_days"] < params["churn_days"]:
            raise Invalid(
                "tags.bad_settings", reason="active_days < silent_days < churn_days is required"
            )
    else:
        number("horizon_days", 1, 3660)
        number("discount_rate", 0, 1)
        number("penalizer", 0, 10)
        if params["unit"] not in ("days", "weeks"):
            raise Invalid("tags.bad_settings", reason="unit must be days or weeks")
    return params


def set_manual(
    db: Session, actor: Actor, brand: Brand, key: str, body: ManualTagIn
) -> dict[str, int]:
    """Set or remove a manual tag on customers the actor may see (guides: their own)."""
    authorize(actor, "customers.write", org_queries.brand_ref(brand))
    tag = tag_by_key(db, brand, key)
    if tag.kind != "manual" or tag.status != "active":
        raise Invalid("tags.not_manual", tag=key)
    now = utcnow()
    ct = table_of(CustomerTag)
    with atomic(db):
        ids = sorted(
            {access_customer(db, actor, brand, c, "customers.write").id for c in body.customer_ids}
        )
        held = set(
            db.scalars(
                select(ct.c.customer_id).where(ct.c.tag_id == tag.id, ct.c.customer_id.in_(ids))
            )
        )
        if body.present:
            changed = [c for c in ids if c not in held]
            bulk_insert(
                db,
                ct,
                [
                    {
                        "tag_id": tag.id,
                        "customer_id": c,
                        "brand_id": brand.id,
                        "value": None,
                        "score": None,
                        "since": now,
                        "source": "manual",
                        "set_by": actor.label,
                    }
                    for c in changed
                ],
            )
        else:
            changed = [c for c in ids if c in held]
            if changed:
                db.execute(
                    delete(ct).where(
                        ct.c.tag_id == tag.id, ct.c.customer_id == bindparam("p_customer")
                    ),
                    [{"p_customer": c} for c in changed],
                )
        bulk_insert(
            db,
            table_of(TagChange),
            [
                {
                    "id": new_id(),
                    "brand_id": brand.id,
                    "tag_id": tag.id,
                    "customer_id": c,
                    "change": "entered" if body.present else "exited",
                    "value": None,
                    "at": now,
                    "run_id": None,
                    "actor_label": actor.label,
                }
                for c in changed
            ],
        )
        tag.last_count = int(tag.last_count or 0) + (
            len(changed) if body.present else -len(changed)
        )
        record(
            db,
            actor,
            "tag.manual",
            "tag",
            tag.id,
            brand=brand,
            after={"present": body.present, "customers": changed},
        )
    return {"changed": len(changed), "unchanged": len(ids) - len(changed)}


def compute(db: Session, actor: Actor, brand: Brand, body: RunIn) -> TagRun:
    """Compute the brand's tags now (scheduled runs call this too, as the system)."""
    _authorize(actor, brand)
    run = tag_compute.run(db, actor, brand, mode=body.mode, as_of=body.as_of)
    with atomic(db):
        record(
            db,
            actor,
            "tags.compute",
            "tag_run",
            run.id,
            brand=brand,
            after={"mode": run.mode, "status": run.status, "changes": run.changes},
        )
    return run


def run_scheduled(db: Session, limit: int) -> int:
    """The worker's schedule: compute (``auto``) each brand whose last run started longer ago
    than ``SIYU_TAGS_INTERVAL_MINUTES``, up to ``limit`` brands; returns brands computed.
    A brand whose run is in progress (started within the interval) is left alone."""
    from datetime import timedelta

    from sqlalchemy import func

    from siyu.core.settings import get_settings
    from siyu.core.tenancy import SYSTEM
    from siyu.org.models import Brand

    due = utcnow() - timedelta(minutes=get_settings().tags_interval_minutes)
    last = (
        select(TagRun.brand_id, func.max(TagRun.started_at).label("at"))
        .group_by(TagRun.brand_id)
        .subquery()
    )
    brands = list(
        db.scalars(
            select(Brand)
            .outerjoin(last, last.c.brand_id == Brand.id)
            .where((last.c.at.is_(None)) | (last.c.at < due))
            .order_by(Brand.id)
            .limit(limit)
        )
    )
    for brand in brands:
        compute(db, SYSTEM, brand, RunIn(mode="auto"))
    return len(brands)
