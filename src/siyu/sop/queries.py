"""Reads of the SOP engine, through the tenant funnel and the caller's data scope: SOPs with
live counts, the templates, the decision explorer ("why didn't this customer get X?") and a
guide's task list for the workbench.

Counts on the SOP list are brand-wide aggregates (no customer is named). The decisions and
the guide tasks name customers, so they only show customers the actor may see
(``customers.queries.scope_filter``; a named customer goes through ``access_customer``).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.core.clock import as_utc, local_midnight_utc, local_today, utcnow
from siyu.core.errors import Invalid
from siyu.core.tenancy import Actor
from siyu.customers import queries as customer_queries
from siyu.customers.models import Customer
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize, unit_filter
from siyu.sop.actions import sop_by_key
from siyu.sop.models import TOUCH_STATUSES, Enrolment, GuideTask, Sop, Touch
from siyu.sop.planner import REASONS
from siyu.sop.schemas import (
    DecisionOut,
    GuideTaskOut,
    SopCounts,
    SopOut,
    TemplateOut,
)
from siyu.sop.templates import TEMPLATE_INFO, TEMPLATES

if TYPE_CHECKING:
    from siyu.org.models import Brand

READ = "customers.read"
_TASK_STATUSES = ("open", "done", "skipped")


def _authorize(actor: Actor, brand: Brand) -> None:
    authorize(actor, READ, org_queries.brand_ref(brand))


def sop_out(sop: Sop, counts: SopCounts | None = None) -> SopOut:
    return SopOut(
        id=sop.id,
        key=sop.key,
        name=sop.name,
        description=sop.description,
        status=sop.status,
        priority=sop.priority,
        audience=sop.audience or {},
        schedule=sop.schedule or {},
        goal_event=sop.goal_event,
        holdout_pct=sop.holdout_pct,
        steps=sop.steps or [],
        policy=sop.policy or {},
        template=sop.template,
        version=sop.version,
        created_by=sop.created_by,
        created_at=sop.created_at,
        updated_at=sop.updated_at,
        enabled_at=sop.enabled_at,
        counts=counts or SopCounts(),
    )


def _counts(db: Session, brand: Brand, sop_ids: list[str]) -> dict[str, SopCounts]:
    """Enrolments by state (holdout apart) and the last 7 days' decisions, per SOP: two
    grouped queries whatever the number of SOPs."""
    out = {i: SopCounts() for i in sop_ids}
    if not sop_ids:
        return out
    enrolled = db.execute(
        select(Enrolment.sop_id, Enrolment.state, Enrolment.holdout, func.count())
        .where(Enrolment.brand_id == brand.id, Enrolment.sop_id.in_(sop_ids))
        .group_by(Enrolment.sop_id, Enrolment.state, Enrolment.holdout)
    )
    for sop_id, state, holdout, n in enrolled:
        c = out[sop_id]
        if holdout or state == "holdout":
            c.holdout += n
        elif state in ("active", "waiting"):
            c.active += n
        elif state in ("done", "exited"):
            c.done += n
    since = utcnow() - timedelta(days=7)
    decided = db.execute(
        select(Touch.sop_id, Touch.status, func.count())
        .where(
            Touch.brand_id == brand.id,
            Touch.sop_id.in_(sop_ids),
            Touch.decided_at >= since,
        )
        .group_by(Touch.sop_id, Touch.status)
    )
    for sop_id, status, n in decided:
        if status in ("sent", "deferred", "suppressed"):
            setattr(out[sop_id], f"{status}_7d", getattr(out[sop_id], f"{status}_7d") + n)
    return out


def list_sops(db: Session, actor: Actor, brand: Brand, status: str | None = None) -> list[SopOut]:
    """The brand's SOPs, highest priority first, with live counts."""
    _authorize(actor, brand)
    stmt = select(Sop).where(Sop.brand_id == brand.id)
    if status is not None:
        stmt = stmt.where(Sop.status == status)
    sops = list(db.scalars(stmt.order_by(Sop.priority.desc(), Sop.key)))
    counts = _counts(db, brand, [s.id for s in sops])
    return [sop_out(s, counts[s.id]) for s in sops]


def show_sop(db: Session, actor: Actor, brand: Brand, key: str) -> SopOut:
    """One SOP (by key or id) with its definition and live counts."""
    _authorize(actor, brand)
    sop = sop_by_key(db, brand, key)
    return sop_out(sop, _counts(db, brand, [sop.id])[sop.id])


def templates(db: Session, actor: Actor, brand: Brand) -> list[TemplateOut]:
    """The ready-made templates with what each needs from the brand (segments)."""
    _authorize(actor, brand)
    return [
        TemplateOut(
            key=key,
            name=str(t["name"]),
            description=t.get("description"),
            needs=TEMPLATE_INFO.get(key, {}).get("needs", {}),
            definition=t,
        )
        for key, t in TEMPLATES.items()
    ]


def _scoped(db: Session, actor: Actor, brand: Brand, stmt: Any, column: Any) -> Any:
    """``stmt`` limited to customers in the actor's data scope (no join for brand scope)."""
    if unit_filter(actor, org_queries.brand_ref(brand)).all:
        return stmt
    visible = select(Customer.id).where(
        Customer.brand_id == brand.id, customer_queries.scope_filter(db, actor, brand)
    )
    return stmt.where(column.in_(visible))


def decisions(
    db: Session,
    actor: Actor,
    brand: Brand,
    customer_id: str | None = None,
    sop_key: str | None = None,
    status: str | None = None,
    reason: str | None = None,
    limit: int = 100,
) -> list[DecisionOut]:
    """The decision explorer: planned touches with their status, reason, cause, send time
    and deferral, newest due first. Answers "why didn't this customer get X?"."""
    _authorize(actor, brand)
    if status is not None and status not in TOUCH_STATUSES:
        raise Invalid(
            "sop.bad_filter", name="status", value=status, known=", ".join(TOUCH_STATUSES)
        )
    if reason is not None and reason not in REASONS[1:]:
        raise Invalid("sop.bad_filter", name="reason", value=reason, known=", ".join(REASONS[1:]))
    stmt = (
        select(Touch, Sop.key, Sop.name)
        .join(Sop, Sop.id == Touch.sop_id)
        .where(Touch.brand_id == brand.id)
    )
    if customer_id is not None:
        customer = customer_queries.access_customer(db, actor, brand, customer_id)
        stmt = stmt.where(Touch.customer_id == customer.id)
    else:
        stmt = _scoped(db, actor, brand, stmt, Touch.customer_id)
    if sop_key is not None:
        stmt = stmt.where(Touch.sop_id == sop_by_key(db, brand, sop_key).id)
    if status is not None:
        stmt = stmt.where(Touch.status == status)
    if reason is not None:
        stmt = stmt.where(Touch.reason == reason)
    rows = db.execute(stmt.order_by(Touch.due_at.desc(), Touch.id.desc()).limit(limit))
    return [
        DecisionOut(
            id=t.id,
            sop=key,
            sop_name=name,
            customer_id=t.customer_id,
            step=t.step,
            channel=t.channel,
            kind=t.kind,
            sender=t.sender,
            guide_staff_id=t.guide_staff_id,
            expected_value=t.expected_value,
            status=t.status,
            reason=t.reason,
            cause=t.cause,
            due_at=t.due_at,
            expires_at=t.expires_at,
            send_at=t.send_at,
            deferred_until=t.deferred_until,
            decided_at=t.decided_at,
            content=t.content or {},
        )
        for t, key, name in rows
    ]


def guide_tasks(
    db: Session,
    actor: Actor,
    brand: Brand,
    staff_id: str | None = None,
    day: date | None = None,
    status: str | None = None,
) -> list[GuideTaskOut]:
    """A guide's tasks for the workbench: those due on the brand-local ``day`` (default
    today) plus open ones still overdue from earlier days, ranked by expected value (then
    due time); ``overdue`` marks open tasks past their due time. A guide sees their own;
    managers see the guides in their data scope (default: the actor)."""
    _authorize(actor, brand)
    if status is not None and status not in _TASK_STATUSES:
        raise Invalid(
            "sop.bad_filter", name="status", value=status, known=", ".join(_TASK_STATUSES)
        )
    ref = staff_id or actor.staff_id
    if not ref:
        raise Invalid("sop.staff_required")
    staff = org_queries.staff_row(db, actor, brand, ref).staff
    day = day or local_today(brand.timezone)
    start = local_midnight_utc(day, brand.timezone)
    end = local_midnight_utc(day + timedelta(days=1), brand.timezone)
    stmt = (
        select(GuideTask, Sop.key)
        .outerjoin(Sop, Sop.id == GuideTask.sop_id)
        .where(
            GuideTask.brand_id == brand.id,
            GuideTask.staff_id == staff.id,
            ((GuideTask.due_at >= start) & (GuideTask.due_at < end))
            | ((GuideTask.status == "open") & (GuideTask.due_at < start)),
        )
    )
    if status is not None:
        stmt = stmt.where(GuideTask.status == status)
    stmt = _scoped(db, actor, brand, stmt, GuideTask.customer_id)
    now = utcnow()
    rows = list(db.execute(stmt))
    rows.sort(key=lambda r: (-r[0].expected_value, as_utc(r[0].due_at), r[0].id))
    return [task_out(t, key, now) for t, key in rows]


def task_out(task: GuideTask, sop_key: str | None = None, now: Any = None) -> GuideTaskOut:
    """A guide task as the API, CLI and workbench show it (``overdue`` as of ``now``)."""
    now = now or utcnow()
    return GuideTaskOut(
        id=task.id,
        staff_id=task.staff_id,
        customer_id=task.customer_id,
        sop=sop_key,
        kind=task.kind,
        title=task.title,
        script=task.script,
        checklist=list(task.checklist or []),
        expected_value=task.expected_value,
        due_at=task.due_at,
        status=task.status,
        skip_reason=task.skip_reason,
        done_at=task.done_at,
        overdue=task.status == "open" and as_utc(task.due_at) < now,
    )
