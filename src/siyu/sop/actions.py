"""Every write of SOP definitions and the breathing policy: create (from a definition or a
template), update, enable, disable, delete drafts, set the brand's policy. Each checks
``sop.write``, runs in one transaction and is audited.

    sop = create_sop(db, actor, brand, SopIn.model_validate({...}))
    sop = create_from_template(db, actor, brand, "dormant_winback")
    enable_sop(db, actor, brand, "dormant_winback")

A definition is checked against the brand before it is stored: conditions (audience and
branch steps) in the tag language (``Invalid`` with line and column, plus ``where``), tags
named by the audience or by tag steps in the brand's library (tag steps: manual tags), the
audience segment among the brand's segments, event types in the brand's catalogue, and the
policy overrides against the brand's breathing policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.audit import record
from siyu.core.clock import utcnow
from siyu.core.db import atomic
from siyu.core.errors import Conflict, Invalid, NotFound
from siyu.core.tenancy import Actor
from siyu.ingest import queries as ingest_queries
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize
from siyu.sop.models import Sop, SopPolicy
from siyu.sop.policy import BreathingPolicy
from siyu.sop.schemas import Audience, Branch, Schedule, SopIn, SopPatch, TagStep, dump_steps
from siyu.sop.templates import from_template
from siyu.tags import actions as tag_actions
from siyu.tags import rules, segments

if TYPE_CHECKING:
    from siyu.org.models import Brand

PERMISSION = "sop.write"


def _authorize(actor: Actor, brand: Brand) -> None:
    authorize(actor, PERMISSION, org_queries.brand_ref(brand))


def sop_by_key(db: Session, brand: Brand, key: str) -> Sop:
    """The brand's SOP by key (or id); ``NotFound`` ``sop.not_found``."""
    sop = db.scalar(select(Sop).where(Sop.brand_id == brand.id, Sop.key == key))
    if sop is None:
        sop = db.scalar(select(Sop).where(Sop.brand_id == brand.id, Sop.id == key))
    if sop is None:
        raise NotFound("sop.not_found", sop=key)
    return sop


def brand_policy(db: Session, brand: Brand) -> BreathingPolicy:
    """The brand's breathing policy (defaults until one is set); no permission check, for
    the engine and for reads that have been through the funnel."""
    row = db.get(SopPolicy, brand.id)
    return BreathingPolicy.from_dict(row.settings if row and row.settings else {})


# ---------------------------------------------------------------- checks against the brand


def _condition(db: Session, brand: Brand, text: str, where: str) -> str:
    try:
        return rules.normalise(db, brand, text, None)
    except Invalid as exc:
        exc.params.setdefault("where", where)
        raise


def _event(db: Session, brand: Brand, event: str | None, where: str, known: set[str]) -> None:
    if event is not None and event not in known:
        raise Invalid("sop.unknown_event", event=event, where=where)


def _checked(
    db: Session,
    brand: Brand,
    audience: Audience,
    schedule: Schedule,
    goal_event: str | None,
    steps: list[Any],
    policy: dict[str, Any],
) -> dict[str, Any]:
    """The stored form of a definition's parts, each checked against the brand."""
    known = {e["event_type"] for e in ingest_queries.catalogue(db, brand)}
    aud = audience.model_dump(mode="json", exclude_none=True)
    if audience.kind == "segment":
        segments.segment_by_key(db, brand, audience.segment or "")
    elif audience.kind in ("tag_entered", "tag_exited"):
        tag_actions.tag_by_key(db, brand, audience.tag or "")
    else:
        _event(db, brand, audience.event, "audience.event", known)
    if audience.condition:
        aud["condition"] = _condition(db, brand, audience.condition, "audience.condition")
    _event(db, brand, goal_event, "goal_event", known)
    if schedule.relative is not None:
        _event(db, brand, schedule.relative.event, "schedule.relative.event", known)
    stored = dump_steps(steps)
    for i, step in enumerate(steps):
        if isinstance(step, Branch):
            stored[i]["condition"] = _condition(db, brand, step.condition, f"steps[{i}].condition")
        elif isinstance(step, TagStep):
            key = step.add or step.remove or ""
            tag = tag_actions.tag_by_key(db, brand, key)
            if tag.kind != "manual" or tag.status != "active":
                raise Invalid("sop.tag_not_manual", tag=key, where=f"steps[{i}]")
    brand_policy(db, brand).for_sop(policy)  # raises sop.policy_invalid
    return {
        "audience": aud,
        "schedule": schedule.model_dump(mode="json", exclude_none=True),
        "steps": stored,
        "policy": dict(policy),
    }


def _snapshot(sop: Sop) -> dict[str, Any]:
    return {
        "key": sop.key,
        "name": sop.name,
        "description": sop.description,
        "status": sop.status,
        "priority": sop.priority,
        "audience": sop.audience,
        "schedule": sop.schedule,
        "goal_event": sop.goal_event,
        "holdout_pct": sop.holdout_pct,
        "steps": sop.steps,
        "policy": sop.policy,
        "version": sop.version,
    }


# ---------------------------------------------------------------- definitions


def create_sop(
    db: Session, actor: Actor, brand: Brand, body: SopIn, template: str | None = None
) -> Sop:
    """A new SOP, as a draft (nothing happens until it is enabled)."""
    _authorize(actor, brand)
    parts = _checked(
        db, brand, body.audience, body.schedule, body.goal_event, body.steps, body.policy
    )
    with atomic(db):
        if db.scalar(select(Sop.id).where(Sop.brand_id == brand.id, Sop.key == body.key)):
            raise Conflict("sop.exists", sop=body.key)
        sop = Sop(
            brand_id=brand.id,
            key=body.key,
            name=body.name,
            description=body.description,
            status="draft",
            priority=body.priority,
            goal_event=body.goal_event,
            holdout_pct=body.holdout_pct,
            template=template,
            version=1,
            created_by=actor.label,
            updated_at=utcnow(),
            **parts,
        )
        db.add(sop)
        db.flush()
        record(db, actor, "sop.create", "sop", sop.id, brand=brand, after=_snapshot(sop))
    return sop


def create_from_template(
    db: Session, actor: Actor, brand: Brand, template: str, /, **overrides: Any
) -> Sop:
    """A draft SOP from a ready-made template (``siyu.sop.templates``), with overrides of
    its top-level fields (``key``, ``name``, ``audience``, ``priority`` …)."""
    _authorize(actor, brand)
    body = from_template(template, **{k: v for k, v in overrides.items() if v is not None})
    return create_sop(db, actor, brand, body, template=template)


def update_sop(db: Session, actor: Actor, brand: Brand, key: str, body: SopPatch) -> Sop:
    """Change a definition; any change bumps its version. Enrolments in progress follow the
    new steps from their current position on."""
    _authorize(actor, brand)
    sop = sop_by_key(db, brand, key)
    changes = body.model_dump(exclude_unset=True)
    merged = SopIn.model_validate(
        {
            "key": sop.key,
            "name": sop.name,
            "description": sop.description,
            "priority": sop.priority,
            "audience": sop.audience,
            "schedule": sop.schedule,
            "goal_event": sop.goal_event,
            "holdout_pct": sop.holdout_pct,
            "steps": sop.steps,
            "policy": sop.policy,
            **{
                k: v for k, v in body.model_dump(mode="json", by_alias=True).items() if k in changes
            },
        }
    )
    parts = _checked(
        db,
        brand,
        merged.audience,
        merged.schedule,
        merged.goal_event,
        merged.steps,
        merged.policy,
    )
    with atomic(db):
        before = _snapshot(sop)
        sop.name = merged.name
        sop.description = merged.description
        sop.priority = merged.priority
        sop.goal_event = merged.goal_event
        sop.holdout_pct = merged.holdout_pct
        for name, value in parts.items():
            setattr(sop, name, value)
        after = _snapshot(sop)
        if after != before:
            sop.version += 1
            after["version"] = sop.version
        sop.updated_at = utcnow()
        record(db, actor, "sop.update", "sop", sop.id, brand=brand, before=before, after=after)
    return sop


def enable_sop(db: Session, actor: Actor, brand: Brand, key: str) -> Sop:
    """Switch an SOP on: from now on the planner enrols its audience and plans its steps."""
    _authorize(actor, brand)
    sop = sop_by_key(db, brand, key)
    if sop.status == "enabled":
        return sop
    with atomic(db):
        before = sop.status
        sop.status = "enabled"
        sop.enabled_at = utcnow()
        sop.updated_at = sop.enabled_at
        record(
            db,
            actor,
            "sop.enable",
            "sop",
            sop.id,
            brand=brand,
            before={"status": before},
            after={"status": sop.status, "version": sop.version},
        )
    return sop


def disable_sop(db: Session, actor: Actor, brand: Brand, key: str) -> Sop:
    """Switch an SOP off: enrolments are kept (enabling again resumes them) but nothing is
    planned for it while it is off."""
    _authorize(actor, brand)
    sop = sop_by_key(db, brand, key)
    if sop.status == "disabled":
        return sop
    with atomic(db):
        before = sop.status
        sop.status = "disabled"
        sop.updated_at = utcnow()
        record(
            db,
            actor,
            "sop.disable",
            "sop",
            sop.id,
            brand=brand,
            before={"status": before},
            after={"status": sop.status},
        )
    return sop


def delete_sop(db: Session, actor: Actor, brand: Brand, key: str) -> None:
    """Remove a draft (an SOP that was never enabled, so has no enrolments or touches)."""
    _authorize(actor, brand)
    sop = sop_by_key(db, brand, key)
    if sop.status != "draft":
        raise Conflict("sop.not_draft", sop=sop.key, status=sop.status)
    with atomic(db):
        record(db, actor, "sop.delete", "sop", sop.id, brand=brand, before=_snapshot(sop))
        db.delete(sop)


# ---------------------------------------------------------------- breathing policy


def get_policy(db: Session, actor: Actor, brand: Brand) -> BreathingPolicy:
    """The brand's breathing policy (readable by whoever may read customers)."""
    authorize(actor, "customers.read", org_queries.brand_ref(brand))
    return brand_policy(db, brand)


def set_policy(
    db: Session, actor: Actor, brand: Brand, settings: dict[str, Any]
) -> BreathingPolicy:
    """Replace the brand's breathing policy: ``settings`` over the defaults (unknown or bad
    settings: ``Invalid`` ``sop.policy_invalid`` naming the setting). Every SOP's overrides
    must still apply over the new policy."""
    _authorize(actor, brand)
    policy = BreathingPolicy.from_dict(settings)
    for sop in db.scalars(select(Sop).where(Sop.brand_id == brand.id)):
        policy.for_sop(sop.policy)
    with atomic(db):
        row = db.get(SopPolicy, brand.id)
        before = dict(row.settings) if row else None
        if row is None:
            row = SopPolicy(brand_id=brand.id)
            db.add(row)
        row.settings = policy.as_dict()
        row.updated_at = utcnow()
        row.updated_by = actor.label
        record(
            db,
            actor,
            "sop_policy.update",
            "sop_policy",
            brand.id,
            brand=brand,
            before=before,
            after=row.settings,
        )
    return policy
