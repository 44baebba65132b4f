"""The guide workbench's reads and writes of guide tasks: one task, mark it done (with its
checklist) or skipped (with a reason), and the store manager's list of overdue tasks.

Who may act on a task: the guide it belongs to, or a manager whose data scope (unit subtree,
brand or agency) holds that guide. Anyone else gets ``NotFound`` ``sop.task_not_found``, as if
the task did not exist. Writes need ``customers.write``, run in one transaction and are
audited; closing a task twice the same way is a no-op, the other way a ``Conflict``.

    task = complete_task(db, actor, brand, task_id, checklist_done=[0, 2])
    task = skip_task(db, actor, brand, task_id, "客户不方便接听")
    late = overdue_tasks(db, actor, brand)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.audit import record
from siyu.core.clock import utcnow
from siyu.core.db import atomic
from siyu.core.errors import Conflict, Invalid, NotFound
from siyu.core.tenancy import Actor
from siyu.org import queries as org_queries
from siyu.org.models import Membership, OrgUnit, Staff
from siyu.org.permissions import authorize, unit_filter
from siyu.sop import queries
from siyu.sop.models import GuideTask, Sop
from siyu.sop.schemas import GuideTaskOut

if TYPE_CHECKING:
    from siyu.org.models import Brand

READ = "customers.read"
WRITE = "customers.write"
MAX_REASON = 200


def task_out(task: GuideTask, sop_key: str | None = None) -> GuideTaskOut:
    return queries.task_out(task, sop_key)


def _task_for(db: Session, actor: Actor, brand: Brand, task_id: str, permission: str) -> GuideTask:
    """The task if the actor may act on it: their own, or one of a guide in their scope."""
    authorize(actor, permission, org_queries.brand_ref(brand))
    task = db.scalar(
        select(GuideTask).where(GuideTask.brand_id == brand.id, GuideTask.id == task_id)
    )
    if task is None:
        raise NotFound("sop.task_not_found", task=task_id)
    if actor.staff_id is not None and task.staff_id == actor.staff_id:
        return task
    flt = unit_filter(actor, org_queries.brand_ref(brand))
    if flt.all:
        return task
    if flt.path_prefix is not None:  # a manager of a unit subtree: the guide must be in it
        try:
            org_queries.staff_row(db, actor, brand, task.staff_id)
        except NotFound:
            pass
        else:
            return task
    raise NotFound("sop.task_not_found", task=task_id)


def get_task(db: Session, actor: Actor, brand: Brand, task_id: str) -> GuideTaskOut:
    """One task (for the workbench's customer card and after a change)."""
    task = _task_for(db, actor, brand, task_id, READ)
    key = db.scalar(select(Sop.key).where(Sop.id == task.sop_id)) if task.sop_id else None
    return task_out(task, key)


def _snapshot(task: GuideTask) -> dict[str, Any]:
    return {
        "status": task.status,
        "checklist": list(task.checklist or []),
        "skip_reason": task.skip_reason,
        "done_at": task.done_at.isoformat() if task.done_at else None,
    }


def complete_task(
    db: Session, actor: Actor, brand: Brand, task_id: str, checklist_done: Iterable[int] = ()
) -> GuideTaskOut:
    """Mark a task done, ticking the checklist items at the given positions. Completing a
    done task again changes nothing; a skipped one is a ``Conflict`` ``sop.task_closed``."""
    task = _task_for(db, actor, brand, task_id, WRITE)
    if task.status == "done":
        return get_task(db, actor, brand, task_id)
    if task.status != "open":
        raise Conflict("sop.task_closed", task=task_id, status=task.status)
    ticked = set(checklist_done)
    items = list(task.checklist or [])
    if any(i < 0 or i >= len(items) for i in ticked):
        raise Invalid("sop.bad_checklist", task=task_id, size=len(items))
    with atomic(db):
        before = _snapshot(task)
        task.checklist = [
            {**item, "done": bool(item.get("done")) or i in ticked} for i, item in enumerate(items)
        ]
        task.status = "done"
        task.done_at = utcnow()
        record(
            db,
            actor,
            "guide_task.done",
            "guide_task",
            task.id,
            brand=brand,
            before=before,
            after=_snapshot(task),
        )
    return get_task(db, actor, brand, task_id)


def skip_task(db: Session, actor: Actor, brand: Brand, task_id: str, reason: str) -> GuideTaskOut:
    """Skip a task, saying why (1–200 characters). Skipping a skipped task again changes
    nothing; a done one is a ``Conflict`` ``sop.task_closed``."""
    task = _task_for(db, actor, brand, task_id, WRITE)
    text = " ".join(reason.split())
    if not text:
        raise Invalid("sop.skip_reason_required", task=task_id)
    if len(text) > MAX_REASON:
        raise Invalid("sop.skip_reason_too_long", task=task_id, limit=MAX_REASON)
    if task.status == "skipped":
        return get_task(db, actor, brand, task_id)
    if task.status != "open":
        raise Conflict("sop.task_closed", task=task_id, status=task.status)
    with atomic(db):
        before = _snapshot(task)
        task.status = "skipped"
        task.skip_reason = text
        record(
            db,
            actor,
            "guide_task.skip",
            "guide_task",
            task.id,
            brand=brand,
            before=before,
            after=_snapshot(task),
        )
    return get_task(db, actor, brand, task_id)


@dataclass
class OverdueTask:
    """An open task past its due time, with the guide it waits on."""

    task: GuideTaskOut
    staff_name: str
    staff_username: str
    unit: str | None


def overdue_tasks(db: Session, actor: Actor, brand: Brand, limit: int = 200) -> list[OverdueTask]:
    """Open tasks past due for the guides in the actor's data scope (a store manager: the
    guides of their store; brand scope: everyone; a guide: their own), longest overdue
    first."""
    ref = org_queries.brand_ref(brand)
    authorize(actor, READ, ref)
    now = utcnow()
    stmt = (
        select(GuideTask, Sop.key)
        .outerjoin(Sop, Sop.id == GuideTask.sop_id)
        .where(
            GuideTask.brand_id == brand.id,
            GuideTask.status == "open",
            GuideTask.due_at < now,
        )
    )
    flt = unit_filter(actor, ref)
    if not flt.all:
        if flt.path_prefix is not None:
            subtree = org_queries.subtree_unit_ids(brand.id, flt.path_prefix)
            stmt = stmt.where(GuideTask.staff_id.in_(org_queries.staff_in_units(brand.id, subtree)))
        else:
            stmt = stmt.where(GuideTask.staff_id == (actor.staff_id or ""))
    rows = list(db.execute(stmt.order_by(GuideTask.due_at, GuideTask.id).limit(limit)))
    staff_ids = sorted({t.staff_id for t, _ in rows})
    who: dict[str, tuple[str, str, str | None]] = {}
    if staff_ids:
        found = db.execute(
            select(Staff.id, Staff.name, Staff.username, OrgUnit.name)
            .outerjoin(
                Membership, (Membership.staff_id == Staff.id) & (Membership.brand_id == brand.id)
            )
            .outerjoin(OrgUnit, OrgUnit.id == Membership.unit_id)
            .where(Staff.id.in_(staff_ids))
        )
        for sid, name, username, unit_name in found:
            if sid not in who or (unit_name and not who[sid][2]):
                who[sid] = (name, username, unit_name)
    out = []
    for t, key in rows:
        staff_name, staff_username, unit = who.get(t.staff_id, ("", "", None))
        out.append(OverdueTask(task_out(t, key), staff_name, staff_username, unit))
    return out
