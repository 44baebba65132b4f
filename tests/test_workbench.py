"""The guide workbench over real HTTP, on SQLite and PostgreSQL: a guide's tasks for today
ranked by expected value with the overdue ones flagged, the customer card (masked), marking
a task done (checklist ticked) or skipped with a reason — audited and idempotent — and the
store manager's overdue list. Other guides' tasks and other tenants are 404.

The cast is ``world`` (tests/factories.py) plus the customers of tests/customer_factories.py
(``zhang`` is served by ``a.guide`` in store A-SH01, ``wang`` sits in A-SH02 where the guide
``shared`` works); the tasks are inserted as the SOP engine would write them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.audit import AuditEntry
from siyu.core.clock import local_midnight_utc, local_today
from siyu.core.errors import NotFound
from siyu.core.ids import new_id
from siyu.core.tenancy import SYSTEM
from siyu.org import auth
from siyu.org.models import Staff
from siyu.org.queries import access_brand
from siyu.sop import tasks
from siyu.sop.models import GuideTask
from tests.customer_factories import ZHANG_MASKED, ZHANG_PHONE, seed_customers
from tests.factories import login

HX = {"HX-Request": "true"}
BASE = "/b/a-coffee/workbench"


@dataclass
class Tasks:
    high: str  # a.guide, zhang, today, highest expected value
    low: str  # a.guide, zhang, today, lower value
    late: str  # a.guide, zhang, due yesterday and still open: overdue
    other: str  # shared (store A-SH02), wang, due yesterday: overdue


def staff_id(db: Session, username: str) -> str:
    sid = db.scalar(select(Staff.id).where(Staff.username == username))
    assert sid is not None
    return sid


def seed_tasks(db: Session) -> Tasks:
    """Customers plus four guide tasks, as the SOP engine writes them."""
    cast = seed_customers(db)
    brand = access_brand(db, SYSTEM, "a-coffee")
    today = local_midnight_utc(local_today(brand.timezone), brand.timezone)
    end_of_today = today + timedelta(hours=23, minutes=59)
    guide, shared = staff_id(db, "a.guide"), staff_id(db, "shared")

    def task(staff: str, customer: str, title: str, value: float, due: Any, **extra: Any) -> str:
        row = GuideTask(
            id=new_id(),
            brand_id=brand.id,
            staff_id=staff,
            customer_id=customer,
            kind=extra.pop("kind", "call"),
            title=title,
            script=extra.pop("script", None),
            checklist=[{"item": x, "done": False} for x in extra.pop("checklist", [])],
            expected_value=value,
            due_at=due,
            status="open",
        )
        db.add(row)
        return row.id

    ids = Tasks(
        high=task(
            guide,
            cast.zhang,
            "生日回访",
            20000,
            end_of_today,
            script="张先生您好，祝您生日快乐！门店为您准备了一杯生日咖啡。",
            checklist=["问候", "送券"],
        ),
        low=task(guide, cast.zhang, "到店邀约", 5000, end_of_today, kind="visit"),
        late=task(guide, cast.zhang, "沉睡唤醒", 100, today - timedelta(hours=20), kind="chat"),
        other=task(shared, cast.wang, "徐汇回访", 9000, today - timedelta(hours=10)),
    )
    db.commit()
    return ids


@pytest.fixture
def seeded(db: Session, world: Any) -> Tasks:
    return seed_tasks(db)


def sign_in(client: Any, username: str) -> None:
    """Sign in and send the CSRF token with every later request (as htmx does)."""
    client.headers.update(login(client, username))


def order_of(body: str) -> list[str]:
    return re.findall(r'<article class="wb-task[^"]*" id="task-[^"]+" data-task="([^"]+)"', body)


def actor_for(db: Session, username: str) -> Any:
    staff = db.scalar(select(Staff).where(Staff.username == username))
    assert staff is not None
    return auth.actor_for_staff(db, staff)


def test_guide_sees_own_tasks_ranked_with_overdue_flag(client: Any, seeded: Tasks) -> None:
    sign_in(client, "a.guide")
    r = client.get(BASE)
    assert r.status_code == 200, r.text
    assert 'name="viewport"' in r.text
    assert order_of(r.text) == [seeded.high, seeded.low, seeded.late]
    assert seeded.other not in r.text
    late = r.text.split(f'data-task="{seeded.late}"')[1].split("</article>")[0]
    assert "data-overdue" in late
    high = r.text.split(f'data-task="{seeded.high}"')[1].split("</article>")[0]
    assert 'data-copy="#script-' in high and "生日咖啡" in high
    assert 'name="check" value="1"' in high
    assert 'data-stat="overdue">1<' in r.text
    assert 'href="/b/a-coffee/workbench"' in r.text  # the NAV entry


def test_customer_card_is_masked(client: Any, seeded: Tasks) -> None:
    sign_in(client, "a.guide")
    r = client.get(f"{BASE}/tasks/{seeded.high}/card", headers=HX)
    assert r.status_code == 200, r.text
    assert ZHANG_MASKED in r.text and ZHANG_PHONE not in r.text
    assert "<html" not in r.text  # a fragment for htmx
    page = client.get(f"{BASE}/tasks/{seeded.high}/card")
    assert page.status_code == 200 and "<html" in page.text and ZHANG_MASKED in page.text


def test_done_ticks_the_checklist_and_is_audited_and_idempotent(
    client: Any, db: Session, seeded: Tasks
) -> None:
    sign_in(client, "a.guide")
    url = f"{BASE}/tasks/{seeded.high}/done"
    r = client.post(url, data={"check": ["1"]}, headers=HX)
    assert r.status_code == 200, r.text
    assert 'data-status="done"' in r.text
    assert 'data-check="1" data-done="true"' in r.text
    assert 'data-check="0" data-done="false"' in r.text
    db.expire_all()
    row = db.get(GuideTask, seeded.high)
    assert row is not None and row.status == "done" and row.done_at is not None
    assert [c["done"] for c in row.checklist] == [False, True]
    entries = list(db.scalars(select(AuditEntry).where(AuditEntry.entity_id == seeded.high)))
    assert [e.action for e in entries] == ["guide_task.done"]
    assert entries[0].before and entries[0].before["status"] == "open"
    assert entries[0].after and entries[0].after["status"] == "done"
    assert entries[0].actor_label  # who did it

    again = client.post(url, data={"check": ["0"]}, headers=HX)
    assert again.status_code == 200 and 'data-status="done"' in again.text
    db.expire_all()
    assert len(list(db.scalars(select(AuditEntry).where(AuditEntry.entity_id == seeded.high)))) == 1

    skip = client.post(f"{BASE}/tasks/{seeded.high}/skip", data={"reason": "x"}, headers=HX)
    assert skip.status_code == 409
    assert 'data-code="sop.task_closed"' in skip.text

    # the page now lists it among the handled ones
    page = client.get(BASE)
    assert order_of(page.text) == [seeded.low, seeded.late, seeded.high]
    assert 'data-stat="done">1<' in page.text


def test_skip_needs_a_reason_and_is_audited(client: Any, db: Session, seeded: Tasks) -> None:
    sign_in(client, "a.guide")
    url = f"{BASE}/tasks/{seeded.low}/skip"
    r = client.post(url, data={"reason": "  "}, headers=HX)
    assert r.status_code == 422
    assert 'data-code="sop.skip_reason_required"' in r.text and 'data-status="open"' in r.text
    r = client.post(url, data={"reason": "联系不上客户"}, headers=HX)
    assert r.status_code == 200 and 'data-status="skipped"' in r.text and "联系不上客户" in r.text
    db.expire_all()
    row = db.get(GuideTask, seeded.low)
    assert row is not None and row.status == "skipped" and row.skip_reason == "联系不上客户"
    actions = [
        e.action for e in db.scalars(select(AuditEntry).where(AuditEntry.entity_id == seeded.low))
    ]
    assert actions == ["guide_task.skip"]
    done = client.post(f"{BASE}/tasks/{seeded.low}/done", headers=HX)
    assert done.status_code == 409


def test_plain_form_post_redirects_back(client: Any, seeded: Tasks) -> None:
    sign_in(client, "a.guide")
    r = client.post(f"{BASE}/tasks/{seeded.low}/done", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"{BASE}#task-{seeded.low}"


def test_csrf_is_required(client: Any, seeded: Tasks) -> None:
    sign_in(client, "a.guide")
    client.headers.pop("X-CSRF-Token", None)
    r = client.post(f"{BASE}/tasks/{seeded.low}/done", headers=HX)
    assert r.status_code == 403


def test_another_guides_task_is_not_found(client: Any, db: Session, seeded: Tasks) -> None:
    sign_in(client, "a.guide")
    for path in (f"{BASE}/tasks/{seeded.other}/done", f"{BASE}/tasks/{seeded.other}/skip"):
        r = client.post(path, data={"reason": "x"}, headers=HX)
        assert r.status_code == 404, path
    assert client.get(f"{BASE}/tasks/{seeded.other}/card").status_code == 404
    db.expire_all()
    row = db.get(GuideTask, seeded.other)
    assert row is not None and row.status == "open"
    # the other guide may not act on a.guide's task either
    brand = access_brand(db, SYSTEM, "a-coffee")
    with pytest.raises(NotFound):
        tasks.complete_task(db, actor_for(db, "shared"), brand, seeded.high)


def test_store_manager_sees_overdue_of_their_guides(
    client: Any, db: Session, seeded: Tasks
) -> None:
    sign_in(client, "a.sh01mgr")
    r = client.get(f"{BASE}/overdue")
    assert r.status_code == 200, r.text
    assert f'data-task="{seeded.late}"' in r.text and 'data-staff="a.guide"' in r.text
    assert seeded.other not in r.text  # shared works in A-SH02, outside the manager's store
    assert seeded.high not in r.text  # not overdue
    # and may look at, and close, the guide's tasks
    guide = client.get(f"{BASE}?staff=a.guide")
    assert guide.status_code == 200 and 'data-viewing="a.guide"' in guide.text
    assert order_of(guide.text) == [seeded.high, seeded.low, seeded.late]
    done = client.post(f"{BASE}/tasks/{seeded.late}/done", headers=HX)
    assert done.status_code == 200 and 'data-status="done"' in done.text
    assert seeded.late not in client.get(f"{BASE}/overdue").text
    assert client.post(f"{BASE}/tasks/{seeded.other}/done", headers=HX).status_code == 404

    client.post("/logout")
    sign_in(client, "a.admin")
    both = client.get(f"{BASE}/overdue").text
    assert seeded.other in both

    brand = access_brand(db, SYSTEM, "a-coffee")
    mine = tasks.overdue_tasks(db, actor_for(db, "shared"), brand)
    assert [o.task.id for o in mine] == [seeded.other]


def test_another_tenant_is_not_found(client: Any, seeded: Tasks) -> None:
    sign_in(client, "b.admin")
    assert client.get(BASE).status_code == 404
    assert client.get(f"{BASE}/overdue").status_code == 404
    assert client.post(f"{BASE}/tasks/{seeded.high}/done", headers=HX).status_code == 404
    assert client.get("/b/b-shop/workbench").status_code == 200


def test_analyst_has_no_workbench(client: Any, seeded: Tasks) -> None:
    sign_in(client, "a.analyst")
    assert client.get(BASE).status_code == 403
    assert 'href="/b/a-coffee/workbench"' not in client.get("/b/a-coffee/customers").text
