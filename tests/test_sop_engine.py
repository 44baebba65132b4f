"""The SOP engine on the store and the lake: arbitration across SOPs over days (acceptance 2),
a planner killed mid-run and restarted (acceptance 6), the dry-run against the real run
(acceptance 4), the real-time welcome journey, holdouts, waits, branches and goals."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from siyu.core.tenancy import SYSTEM
from siyu.customers.models import Customer, Identity
from siyu.ingest import actions as ingest
from siyu.org.models import Brand, Staff
from siyu.org.queries import access_brand
from siyu.sop import engine
from siyu.sop.cron import Cron, fires
from siyu.sop.models import Enrolment, GuideTask, Outbox, Sop, SopPolicy, Touch
from siyu.sop.schemas import SopIn, dump_steps
from siyu.tags import segments
from siyu.tags.schemas import SegmentIn

DAY1 = date(2026, 7, 1)  # a Wednesday
ENABLED = datetime(2026, 6, 30, 16, 0, tzinfo=UTC)  # 2026-07-01 00:00 in Shanghai
PHONES = [f"1390000{i:04d}" for i in range(8)]


def ev(eid: str, etype: str, when: str, phone: str, **props: Any) -> dict[str, Any]:
    return {
        "event_id": eid,
        "event_type": etype,
        "occurred_at": when,
        "source": "test",
        "identifiers": [{"type": "phone", "value": phone}],
        "properties": props,
    }


def customer_of(db: Session, brand: Brand, phone: str) -> str:
    from siyu.customers import vault

    h = vault.match_hash(brand.id, "phone", phone)
    cid = db.scalar(select(Identity.customer_id).where(Identity.value_hash == h))
    assert cid
    return cid


def setup_brand(db: Session, n: int = 4, extra: list[dict[str, Any]] | None = None) -> Brand:
    """``n`` customers who viewed a page in June (segment ``viewers``), owned by a.guide."""
    brand = access_brand(db, SYSTEM, "a-coffee")
    items = [
        ev(f"v{i}", "page_viewed", "2026-06-10T10:00:00+08:00", p, path="/pages/index")
        for i, p in enumerate(PHONES[:n])
    ]
    out = ingest.ingest_batch(db, SYSTEM, brand, items + (extra or []))
    assert out.accepted == len(items) + len(extra or [])
    guide = db.scalar(select(Staff.id).where(Staff.username == "a.guide"))
    db.execute(update(Customer).where(Customer.brand_id == brand.id).values(owner_staff_id=guide))
    db.commit()
    segments.create(
        db,
        SYSTEM,
        brand,
        SegmentIn(key="viewers", name="浏览过", definition="exists(page_viewed, last 365d)"),
    )
    return brand


def add_sop(db: Session, brand: Brand, key: str, steps: list[dict[str, Any]], **kw: Any) -> Sop:
    body = SopIn.model_validate(
        {
            "key": key,
            "name": key,
            "audience": kw.pop("audience", {"kind": "segment", "segment": "viewers"}),
            "steps": steps,
            **kw,
        }
    )
    sop = Sop(
        brand_id=brand.id,
        key=body.key,
        name=body.name,
        status="enabled",
        priority=body.priority,
        audience=body.audience.model_dump(mode="json", exclude_none=True),
        schedule=body.schedule.model_dump(mode="json", exclude_none=True),
        goal_event=body.goal_event,
        holdout_pct=body.holdout_pct,
        steps=dump_steps(body.steps),
        policy=body.policy,
        enabled_at=ENABLED,
    )
    db.add(sop)
    db.commit()
    return sop


def touch(text: str, valid_hours: int = 48, channel: str = "wecom_1to1") -> dict[str, Any]:
    return {
        "type": "touch",
        "channel": channel,
        "content": {"text": text},
        "valid_hours": valid_hours,
    }


def touches_of(db: Session, sop: Sop) -> list[Touch]:
    return list(db.scalars(select(Touch).where(Touch.sop_id == sop.id).order_by(Touch.idem_key)))


def outbox_keys(db: Session) -> list[str]:
    return list(db.scalars(select(Outbox.idem_key)))


# ---------------------------------------------------------------- cron


def test_cron_matcher() -> None:
    member_day = Cron.parse("0 10 8 * *")
    assert member_day.matches(datetime(2026, 7, 8, 10, 0))
    assert not member_day.matches(datetime(2026, 7, 9, 10, 0))
    got = fires("0 10 8 * *", "Asia/Shanghai", ENABLED, ENABLED + timedelta(days=40))
    assert got == [
        datetime(2026, 7, 8, 2, 0, tzinfo=UTC),
        datetime(2026, 8, 8, 2, 0, tzinfo=UTC),
    ]
    steps = Cron.parse("*/20 9-11 * 1,7 1-5")
    assert steps.minutes == {0, 20, 40} and steps.hours == {9, 10, 11}
    assert steps.matches(datetime(2026, 7, 1, 9, 40))  # a Wednesday in July
    assert not steps.matches(datetime(2026, 7, 4, 9, 40))  # a Saturday
    sunday = Cron.parse("0 9 1 * 7")  # day-of-month or Sunday
    assert sunday.matches(datetime(2026, 7, 5, 9, 0)) and sunday.matches(datetime(2026, 7, 1, 9, 0))
    with pytest.raises(ValueError):
        Cron.parse("61 * * * *")


# ---------------------------------------------------------------- acceptance 2


@pytest.mark.parametrize("loser_valid_hours", [48, 12])
def test_two_sops_one_touch_budget(db: Session, world: object, loser_valid_hours: int) -> None:
    # given two SOPs wanting the same customers on a one-touch-a-day budget
    brand = setup_brand(db, n=2)
    high = add_sop(db, brand, "high", [touch("高优先")], priority=80)
    low = add_sop(db, brand, "low", [touch("低优先", loser_valid_hours)], priority=40)
    # when day 1 is run
    run1 = engine.run_day(db, SYSTEM, brand, DAY1)
    # then the higher priority is sent at 09:00 (after quiet hours) and the loser waits
    # while it remains valid, or is dropped as expired
    assert [(t.status, t.reason) for t in touches_of(db, high)] == [("sent", None)] * 2
    assert all(t.send_at == datetime(2026, 7, 1, 1, 0, tzinfo=UTC) for t in touches_of(db, high))
    lost = ("deferred", "lost_arbitration", "lost_arbitration")
    if loser_valid_hours < 24:
        lost = ("suppressed", "expired", "lost_arbitration")
    assert [(t.status, t.reason, t.cause) for t in touches_of(db, low)] == [lost] * 2
    assert run1.counts["sent_by_sop"] == {"high": 2}
    assert sorted(outbox_keys(db)) == sorted(t.idem_key for t in touches_of(db, high))
    # when day 2 is run
    engine.run_day(db, SYSTEM, brand, DAY1 + timedelta(days=1))
    lows = touches_of(db, low)
    if loser_valid_hours == 48:
        # then the loser goes out the next day
        assert [(t.status, t.reason) for t in lows] == [("sent", None)] * 2
        assert len(outbox_keys(db)) == 4
    else:
        # or stays suppressed as expired (decided once, on day 1)
        assert [(t.status, t.reason, t.cause) for t in lows] == [lost] * 2
        assert len(outbox_keys(db)) == 2


# ---------------------------------------------------------------- acceptance 6


def test_killed_planner_restarts_without_double_sends(
    db: Session, world: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given six customers in two SOPs, decisions committed two customers at a time
    brand = setup_brand(db, n=6)
    a = add_sop(db, brand, "sop_a", [touch("A")], priority=70)
    add_sop(db, brand, "sop_b", [{"type": "guide_task", "title": "回访", "checklist": ["问候"]}])
    monkeypatch.setattr(engine, "CHUNK_CUSTOMERS", 2)
    real = engine._write_chunk
    calls = {"n": 0}

    def crash_after_first(*args: Any, **kw: Any) -> int:
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("killed")
        return real(*args, **kw)

    monkeypatch.setattr(engine, "_write_chunk", crash_after_first)
    # when the planner dies after its first chunk
    with pytest.raises(RuntimeError):
        engine.run_day(db, SYSTEM, brand, DAY1)
    db.rollback()
    first = {t.idem_key: t.run_id for t in db.scalars(select(Touch)) if t.status != "planned"}
    assert 0 < len(first) < 12
    # and is restarted
    monkeypatch.setattr(engine, "_write_chunk", real)
    run = engine.run_day(db, SYSTEM, brand, DAY1)
    engine.run_day(db, SYSTEM, brand, DAY1)  # and once more, for good measure
    # then every touch was decided once and nothing goes out twice
    rows = list(db.scalars(select(Touch)))
    assert len(rows) == 12 and all(t.status != "planned" for t in rows)
    assert {t.idem_key: t.run_id for t in rows if t.idem_key in first} == first
    assert all(t.run_id == run.id for t in rows if t.idem_key not in first)
    keys = outbox_keys(db)
    assert len(keys) == len(set(keys))
    sent = [t for t in rows if t.status == "sent"]
    assert sorted(keys) == sorted(t.idem_key for t in sent if t.channel != "guide_task")
    tasks = [str(x) for x in db.scalars(select(GuideTask.touch_id))]
    assert sorted(tasks) == sorted(t.id for t in sent if t.channel == "guide_task")
    assert len({t.customer_id for t in sent if t.sop_id == a.id}) == 6


# ---------------------------------------------------------------- acceptance 4


def test_dry_run_matches_the_run(db: Session, world: object) -> None:
    # given three SOPs (a wait, a guide task over a capacity of 2) and a tight policy
    brand = setup_brand(db, n=5)
    db.add(
        SopPolicy(
            brand_id=brand.id,
            settings={"guide_capacity": 2, "caps": {"day": 2, "week": 4}},
            updated_at=ENABLED,
        )
    )
    db.commit()
    add_sop(
        db,
        brand,
        "nurture",
        [touch("欢迎"), {"type": "wait", "days": 1}, touch("第二天"), touch("第二天补充", 72)],
        priority=60,
    )
    add_sop(db, brand, "care", [touch("关怀", 96)], priority=30)
    add_sop(
        db,
        brand,
        "call",
        [{"type": "guide_task", "task": "call", "title": "电话回访", "due_hours": 24}],
        priority=70,
    )
    # when four days are simulated, then run
    sim = engine.simulate(db, SYSTEM, brand, DAY1, 4)
    assert db.scalar(select(func.count()).select_from(Touch)) == 0  # the dry-run wrote nothing
    runs = [engine.run_day(db, SYSTEM, brand, DAY1 + timedelta(days=k)) for k in range(4)]
    # then the run does what the dry-run showed, day by day
    for planned, run in zip(sim["days"], runs, strict=True):
        for key in ("sent_by_sop", "reasons", "status", "guides", "candidates"):
            assert planned[key] == run.counts[key], (planned["day"], key)
    tasks = db.scalar(select(func.count()).select_from(GuideTask)) or 0
    assert sum(sum(d["sent_by_sop"].values()) for d in sim["days"]) == len(outbox_keys(db)) + tasks
    # and the dry-run shows pressure per customer and guide workload
    assert sum(sim["pressure"].values()) == 5
    guide = str(db.scalar(select(Staff.id).where(Staff.username == "a.guide")))
    workload = [d["guides"].get(guide, {}).get("tasks", 0) for d in sim["days"]]
    # (the fifth call waits for capacity until the weekly cap leaves it past its validity)
    assert workload == [2, 2, 0, 0]
    assert sim["days"][0]["reasons"]["deferred:guide_capacity"] == 3


# ---------------------------------------------------------------- real time


def test_welcome_journey_on_contact_added(db: Session, world: object) -> None:
    brand = setup_brand(db, n=1)
    welcome = add_sop(
        db,
        brand,
        "welcome",
        [touch("你好，欢迎！"), {"type": "wait", "days": 3}, touch("三天后")],
        audience={"kind": "event", "event": "wecom_contact_added"},
        priority=90,
    )
    added = ev(
        "w1",
        "wecom_contact_added",
        "2026-07-01T10:00:00+08:00",
        "13912345678",
        staff_userid="aguide",
        external_userid="wmX",
    )
    ingest.ingest_batch(db, SYSTEM, brand, [added])
    cid = customer_of(db, brand, "13912345678")
    at = datetime(2026, 7, 1, 2, 0, 5, tzinfo=UTC)
    keys = engine.on_event(db, brand, cid, "wecom_contact_added", at)
    # the welcome touch is in the outbox at once, the follow-up waits
    assert len(keys) == 1
    row = db.scalar(select(Outbox).where(Outbox.idem_key == keys[0]))
    assert row is not None and row.available_at == at and row.payload["content"]["text"]
    enr = db.scalar(select(Enrolment).where(Enrolment.sop_id == welcome.id))
    assert enr is not None and (enr.state, enr.step) == ("waiting", 1)
    # a second delivery of the same trigger changes nothing
    assert engine.on_event(db, brand, cid, "wecom_contact_added", at) == []
    assert len(outbox_keys(db)) == 1


# ---------------------------------------------------------------- holdout, branch, wait, goal


def test_holdout_is_never_touched(db: Session, world: object) -> None:
    brand = setup_brand(db, n=8)
    sop = add_sop(db, brand, "winback", [touch("回来看看")], holdout_pct=50)
    engine.run_day(db, SYSTEM, brand, DAY1)
    engine.run_day(db, SYSTEM, brand, DAY1 + timedelta(days=1))
    rows = list(db.scalars(select(Enrolment).where(Enrolment.sop_id == sop.id)))
    held = {e.customer_id for e in rows if e.holdout}
    assert len(rows) == 8 and 0 < len(held) < 8
    assert all(e.state == "holdout" for e in rows if e.holdout)
    touched = {t.customer_id for t in touches_of(db, sop)}
    assert touched == {e.customer_id for e in rows} - held
    assert not held & set(db.scalars(select(Outbox.customer_id)))


def test_switching_an_sop_off_stops_what_it_had_queued(db: Session, world: object) -> None:
    # given an SOP whose day-1 touches are queued in the outbox, and a row of no SOP
    from siyu.channels.console import ConsoleChannel
    from siyu.channels.dispatcher import dispatch
    from siyu.sop import actions as sop_actions

    brand = setup_brand(db, n=3)
    sop = add_sop(db, brand, "flash", [touch("限时特惠")])
    engine.run_day(db, SYSTEM, brand, DAY1)
    queued = list(db.scalars(select(Outbox).where(Outbox.touch_id.is_not(None))))
    assert len(queued) == 3 and {r.status for r in queued} == {"pending"}
    db.add(
        Outbox(
            brand_id=brand.id,
            idem_key="not-an-sop",
            channel="wecom_1to1",
            payload={"content": {"text": "订单已发货"}, "kind": "transactional"},
            status="pending",
            attempts=0,
            available_at=datetime(2026, 7, 1, 1, 0, tzinfo=UTC),
        )
    )
    db.commit()
    # when the SOP is switched off before the worker sends them
    sop_actions.disable_sop(db, SYSTEM, brand, sop.key)
    console = ConsoleChannel()
    claimed = dispatch(
        db,
        10,
        adapters={"wecom_1to1": console},
        now=datetime(2026, 7, 1, 2, 0, tzinfo=UTC),
    )
    # then its rows fail sop_disabled without reaching the channel; the other row is sent
    db.rollback()
    assert [m.idem_key for m in console.sent] == ["not-an-sop"] and claimed == 1
    rows = {r.idem_key: r for r in db.scalars(select(Outbox))}
    assert rows.pop("not-an-sop").status == "sent"
    assert {(r.status, r.reason) for r in rows.values()} == {("failed", "sop_disabled")}
    assert all("flash" in (r.error or "") for r in rows.values())


def test_branch_wait_and_goal(db: Session, world: object) -> None:
    # given C0 replied in June, C1 did not, C2 pays on 2 July (the goal)
    extra = [
        ev(
            "m0",
            "message_received",
            "2026-06-25T12:00:00+08:00",
            PHONES[0],
            staff_userid="g",
            msg_type="text",
        ),
        ev(
            "p2",
            "order_paid",
            "2026-07-02T12:00:00+08:00",
            PHONES[2],
            order_id="O1",
            channel="pos",
            paid_fen=100,
        ),
    ]
    brand = setup_brand(db, n=3, extra=extra)
    c = [customer_of(db, brand, p) for p in PHONES[:3]]
    sop = add_sop(
        db,
        brand,
        "journey",
        [
            {"type": "wait", "days": 2, "until": "10:00"},
            {
                "type": "branch",
                "condition": "exists(message_received, last 30d)",
                "then": 2,
                "else": 3,
            },
            touch("谢谢回复"),
            touch("提醒"),
        ],
        goal_event="order_paid",
    )
    for k in range(4):
        engine.run_day(db, SYSTEM, brand, DAY1 + timedelta(days=k))
    enr = {
        e.customer_id: e for e in db.scalars(select(Enrolment).where(Enrolment.sop_id == sop.id))
    }
    # the wait held everyone until 3 July 10:00; the branch split C0 and C1; C2 left at its goal
    assert (enr[c[2]].state, enr[c[2]].exit_reason) == ("exited", "goal")
    assert enr[c[0]].state == enr[c[1]].state == "done"
    got = {(t.customer_id, t.step) for t in touches_of(db, sop)}
    assert got == {(c[0], 2), (c[0], 3), (c[1], 3)}
    due = {t.due_at for t in touches_of(db, sop)}
    assert due == {datetime(2026, 7, 3, 2, 0, tzinfo=UTC)}


# ---------------------------------------------------------------- schedules


def test_enrolment_schedules(db: Session, world: object) -> None:
    from siyu.tags.models import Tag, TagChange

    paid = ev(
        "p1",
        "order_paid",
        "2026-06-29T10:00:00+08:00",
        PHONES[1],
        order_id="O1",
        channel="pos",
        paid_fen=100,
    )
    brand = setup_brand(db, n=3, extra=[paid])
    c = [customer_of(db, brand, p) for p in PHONES[:3]]
    db.execute(update(Customer).where(Customer.id == c[0]).values(birthday=date(1990, 7, 3)))
    tag = db.scalar(select(Tag).where(Tag.brand_id == brand.id).order_by(Tag.key).limit(1))
    assert tag is not None
    db.add(
        TagChange(
            brand_id=brand.id,
            tag_id=tag.id,
            customer_id=c[2],
            change="entered",
            at=datetime(2026, 7, 1, 5, 0, tzinfo=UTC),
        )
    )
    db.commit()
    now = datetime(2026, 7, 9, 4, 0, tzinfo=UTC)
    step = [touch("hi")]
    birthday = add_sop(db, brand, "birthday", step, schedule={"birthday": {"days_before": 1}})
    member_day = add_sop(db, brand, "member_day", step, schedule={"cron": "0 10 8 * *"})
    after_order = add_sop(
        db,
        brand,
        "after_order",
        step,
        audience={"kind": "event", "event": "order_paid"},
        schedule={"relative": {"event": "order_paid", "which": "first", "days": 3}},
    )
    entered = add_sop(db, brand, "entered", step, audience={"kind": "tag_entered", "tag": tag.key})

    def entries(sop: Sop) -> list[tuple[str, int, datetime]]:
        rows = db.scalars(select(Enrolment).where(Enrolment.sop_id == sop.id))
        return sorted((e.customer_id, e.cycle, e.entered_at) for e in rows)

    assert engine.enrol(db, brand, birthday, now) == 1
    assert entries(birthday) == [(c[0], 2026, datetime(2026, 7, 1, 16, 0, tzinfo=UTC))]
    assert engine.enrol(db, brand, member_day, now) == 3
    assert {at for _c, _n, at in entries(member_day)} == {datetime(2026, 7, 8, 2, 0, tzinfo=UTC)}
    assert engine.enrol(db, brand, after_order, now) == 1
    assert entries(after_order) == [(c[1], 1, datetime(2026, 7, 2, 2, 0, tzinfo=UTC))]
    assert engine.enrol(db, brand, entered, now) == 1
    assert entries(entered) == [(c[2], 1, datetime(2026, 7, 1, 5, 0, tzinfo=UTC))]
    # a second pass over the same window enrols nobody again
    for sop in (birthday, member_day, after_order, entered):
        db.refresh(sop)
        assert engine.enrol(db, brand, sop, now) == 0


def test_a_guide_confirmed_touch_goes_to_the_guides_workbench(db: Session, world: object) -> None:
    # given a touch the owner guide must confirm
    brand = setup_brand(db, n=2)
    step = {**touch("双十一会员专享，回复1领券"), "mode": "confirm"}
    sop = add_sop(db, brand, "confirmed", [step], priority=50)
    # when the day is run
    engine.run_day(db, SYSTEM, brand, DAY1)
    # then nothing goes out by itself: each customer's guide has a chat task with the script
    assert outbox_keys(db) == []
    tasks = db.scalars(select(GuideTask).where(GuideTask.sop_id == sop.id)).all()
    guide = db.scalar(select(Staff.id).where(Staff.username == "a.guide"))
    assert len(tasks) == 2 and {t.staff_id for t in tasks} == {guide}
    assert all(t.kind == "chat" and t.script == "双十一会员专享，回复1领券" for t in tasks)
