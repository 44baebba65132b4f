"""The guide workbench, mobile first: ``/b/{brand}/workbench`` lists the guide's tasks for
today (plus open ones still overdue) ranked by expected value, each with its due time and an
overdue badge, the script to copy, the checklist and the "done" / "skip (reason)" buttons.
Opening a task's customer card asks htmx for ``…/workbench/tasks/{task}/card``: masked name
and phone, tags, the last three orders and the 365-day value.

``/b/{brand}/workbench/overdue`` is the store manager's list of open tasks past due for the
guides in their data scope (a guide sees their own).

Reads go through ``sop.queries.guide_tasks`` and ``sop.tasks``; the writes are
``sop.tasks.complete_task`` / ``skip_task`` (``customers.write``, audited). With htmx a
write answers with the task's fragment, swapped in place; without JavaScript it redirects back
to the workbench.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from siyu.core.clock import as_utc, local_today, utcnow
from siyu.core.errors import Invalid, NotFound, SiyuError
from siyu.customers import queries as customer_queries
from siyu.customers.views import customer_360
from siyu.org import queries as org_queries
from siyu.org.models import Brand
from siyu.sop import queries as sop_queries
from siyu.sop import tasks
from siyu.sop.schemas import GuideTaskOut
from siyu.tags import queries as tag_queries
from siyu.web.deps import Con, Console, Form, text_field
from siyu.web.render import html, page

router = APIRouter(include_in_schema=False)

PERMISSION = "customers.write"
VALUE_TAG = "value_365"
SKIP_REASONS = ("unreachable", "declined", "not_relevant", "contacted_elsewhere")
LAST_ORDERS = 3


def _due_label(brand: Brand) -> Any:
    """Due times for a phone screen: ``14:30`` today, ``05-12 14:30`` another day."""
    tz = ZoneInfo(brand.timezone)
    today = local_today(brand.timezone)

    def due(at: datetime) -> str:
        local = as_utc(at).astimezone(tz)
        return local.strftime("%H:%M" if local.date() == today else "%m-%d %H:%M")

    return due


def _task_context(con: Console, b: Brand) -> dict[str, Any]:
    return {"brand": b, "csrf": con.session.csrf_token, "due": _due_label(b)}


def _task_fragment(
    con: Console, b: Brand, task: GuideTaskOut, status: int = 200, error: str = "", code: str = ""
) -> Response:
    context = {**_task_context(con, b), "task": task, "error": error, "error_code": code}
    return html(con.request, "_workbench_task.html", context, status)


@router.get("/b/{brand}/workbench")
def workbench(brand: str, con: Con, staff: str = "") -> Response:
    b = con.brand(brand, PERMISSION)
    ref = staff.strip()[:100] or None
    viewing = None
    rows: list[GuideTaskOut] = []
    no_staff = False
    if ref is None and con.actor.staff_id is None:
        no_staff = True
    else:
        try:
            rows = sop_queries.guide_tasks(con.db, con.actor, b, staff_id=ref)
        except NotFound:
            if ref is not None:
                raise
            no_staff = True  # signed in without serving this brand (a superadmin, say)
        if ref is not None:
            viewing = org_queries.staff_row(con.db, con.actor, b, ref).staff
    open_tasks = [r for r in rows if r.status == "open"]
    closed = [r for r in rows if r.status != "open"]
    return page(
        con,
        "workbench.html",
        b,
        "workbench",
        open_tasks=open_tasks,
        closed=closed,
        overdue=sum(1 for r in open_tasks if r.overdue),
        done=sum(1 for r in closed if r.status == "done"),
        day=local_today(b.timezone),
        viewing=viewing,
        no_staff=no_staff,
        reasons=SKIP_REASONS,
        due=_due_label(b),
    )


def _when(value: Any) -> datetime | None:
    """An order time from the lake (a datetime, naive meaning UTC, or an ISO string)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def customer_card(con: Console, b: Brand, task: GuideTaskOut) -> dict[str, Any]:
    """What the guide needs to know about the task's customer, all masked; ``visible`` is
    false when the customer is outside the viewer's data scope."""
    try:
        customer = customer_queries.access_customer(con.db, con.actor, b, task.customer_id)
    except NotFound:
        return {"visible": False, "id": task.customer_id}
    row = customer_queries.rows_for(con.db, [customer])[0]
    view = customer_360(con.db, con.actor, b, customer)
    held = tag_queries.customer_tags(con.db, con.actor, b, customer.id)
    value = next((t.score for t in held if t.tag == VALUE_TAG and t.score is not None), None)
    since = utcnow() - timedelta(days=365)
    spend = sum(
        int(o.get("amount_fen") or 0)
        for o in view.orders
        if (at := _when(o.get("paid_at"))) is not None and at >= since
    )
    return {
        "visible": True,
        "id": customer.id,
        "name": row.name,
        "phone": row.phone,
        "member_no": row.member_no,
        "tags": [t for t in held if t.tag != VALUE_TAG and t.score is None],
        "orders": view.orders[:LAST_ORDERS],
        "order_count": len(view.orders),
        "value_365": int(value) if value is not None else None,
        "spend_365": spend,
    }


@router.get("/b/{brand}/workbench/tasks/{task}/card")
def card(brand: str, task: str, con: Con) -> Response:
    b = con.brand(brand, PERMISSION)
    found = tasks.get_task(con.db, con.actor, b, task)
    info = customer_card(con, b, found)
    if con.request.headers.get("hx-request"):
        return html(con.request, "_workbench_card.html", {"brand": b, "task": found, "card": info})
    return page(con, "workbench_card.html", b, "workbench", task=found, card=info)


def _answer(con: Console, b: Brand, task_id: str, done: Any) -> Response:
    """Run a write; htmx gets the task's fragment (with the error, if any), a plain form
    post goes back to the workbench."""
    hx = bool(con.request.headers.get("hx-request"))
    try:
        result = done()
    except NotFound:
        raise
    except SiyuError as exc:
        if not hx:
            raise
        current = tasks.get_task(con.db, con.actor, b, task_id)
        return _task_fragment(con, b, current, exc.status, exc.message(con.locale), exc.code)
    if hx:
        return _task_fragment(con, b, result)
    return RedirectResponse(f"/b/{b.slug}/workbench#task-{task_id}", status_code=303)


@router.post("/b/{brand}/workbench/tasks/{task}/done")
def mark_done(brand: str, task: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, PERMISSION)

    def run() -> GuideTaskOut:
        ticked: list[int] = []
        for value in form.getlist("check"):
            if not isinstance(value, str) or not value.isdigit():
                raise Invalid("sop.bad_checklist", task=task, size=0)
            ticked.append(int(value))
        return tasks.complete_task(con.db, con.actor, b, task, ticked)

    return _answer(con, b, task, run)


@router.post("/b/{brand}/workbench/tasks/{task}/skip")
def mark_skipped(brand: str, task: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, PERMISSION)
    reason = text_field(form, "reason")
    return _answer(con, b, task, lambda: tasks.skip_task(con.db, con.actor, b, task, reason))


@router.get("/b/{brand}/workbench/overdue")
def overdue(brand: str, con: Con) -> Response:
    b = con.brand(brand, PERMISSION)
    rows = tasks.overdue_tasks(con.db, con.actor, b)
    names = customer_queries.rows_by_id(con.db, con.actor, b, [r.task.customer_id for r in rows])
    now = utcnow()
    late = {r.task.id: int((now - as_utc(r.task.due_at)).total_seconds() // 3600) for r in rows}
    return page(
        con,
        "workbench_overdue.html",
        b,
        "workbench",
        rows=rows,
        names=names,
        late=late,
        due=_due_label(b),
        canonical=f"/b/{b.slug}/workbench/overdue",
    )
