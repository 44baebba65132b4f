"""SOP definitions and their edges: templates, checks against the brand (conditions with
positions, tags, segments, events), enable/disable/delete, the breathing policy, permissions,
the decision explorer, the guide workbench list, the API and the CLI."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from siyu.cli.main import app as cli_app
from siyu.core.audit import AuditEntry
from siyu.core.clock import utcnow
from siyu.core.errors import Conflict, Forbidden, Invalid, NotFound
from siyu.core.tenancy import SYSTEM, Actor
from siyu.org import auth
from siyu.org.models import Staff
from siyu.org.queries import access_brand
from siyu.sop import actions, queries
from siyu.sop.models import Enrolment, GuideTask, Touch
from siyu.sop.schemas import SopIn, SopPatch
from siyu.sop.templates import TEMPLATE_INFO, TEMPLATES, from_template
from siyu.tags import segments
from siyu.tags.schemas import SegmentIn
from tests.customer_factories import seed_customers
from tests.factories import api_key, login

BASE = "/api/v1/brands/a-coffee"
runner = CliRunner()


def simple(**extra: Any) -> dict[str, Any]:
    return {
        "key": "probe",
        "name": "试探",
        "audience": {"kind": "event", "event": "wecom_contact_added"},
        "steps": [
            {"type": "touch", "channel": "wecom_1to1", "content": {"text": "您好"}},
            {"type": "exit"},
        ],
        **extra,
    }


def actor_of(db: Session, username: str) -> Actor:
    staff = db.scalar(select(Staff).where(Staff.username == username))
    assert staff is not None
    return auth.actor_for_staff(db, staff)


def make_segments(db: Session, brand: Any) -> None:
    made: set[str] = set()
    for info in TEMPLATE_INFO.values():
        seg = info["needs"].get("segment")
        if seg and seg["key"] not in made:
            segments.create(db, SYSTEM, brand, SegmentIn(**seg))
            made.add(seg["key"])


# ---------------------------------------------------------------- templates


def test_every_template_is_a_valid_definition() -> None:
    assert set(TEMPLATES) == {
        "welcome_journey",
        "new_member_nurture",
        "dormant_winback",
        "birthday",
        "member_day",
        "post_purchase_care",
        "group_daily",
    }
    assert set(TEMPLATE_INFO) == set(TEMPLATES)
    for key in TEMPLATES:
        body = from_template(key)
        assert body.key == key and body.name and body.steps
        touches = [s for s in body.steps if s.type == "touch"]
        assert touches and all(s.content.get("text") for s in touches)
    welcome = from_template("welcome_journey")
    assert welcome.audience.event == "wecom_contact_added"
    assert [s.type for s in welcome.steps][:3] == ["touch", "wait", "guide_task"]
    dormant = from_template("dormant_winback")
    assert dormant.audience.tag == "lifecycle_dormant" and dormant.holdout_pct == 10
    assert dormant.goal_event == "order_paid"
    assert from_template("member_day").schedule.cron == "0 10 8 * *"
    assert from_template("birthday").schedule.birthday is not None
    care = from_template("post_purchase_care").schedule.relative
    assert care is not None and (care.event, care.which, care.days) == ("order_paid", "last", 3)
    assert {s.channel for s in from_template("group_daily").steps if s.type == "touch"} == {
        "wecom_group"
    }
    # overrides replace top-level fields; an unknown template is named
    assert from_template("member_day", key="md2", priority=99).priority == 99
    with pytest.raises(NotFound) as exc:
        from_template("nope")
    assert exc.value.code == "sop.template_not_found"
    with pytest.raises(Invalid) as bad:
        from_template("birthday", holdout_pct=90)
    assert bad.value.code == "sop.template_invalid"


def test_every_template_is_accepted_by_a_brand(db: Session, world: object) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    make_segments(db, brand)
    for key in TEMPLATES:
        sop = actions.create_from_template(db, SYSTEM, brand, key)
        assert sop.status == "draft" and sop.template == key and sop.version == 1
    listed = queries.list_sops(db, SYSTEM, brand)
    assert len(listed) == len(TEMPLATES)
    assert [s.priority for s in listed] == sorted((s.priority for s in listed), reverse=True)
    winback = queries.show_sop(db, SYSTEM, brand, "dormant_winback")
    branch = next(s for s in winback.steps if s["type"] == "branch")
    assert branch["condition"] == "exists(message_received, last 3d)"
    assert "else" in branch


# ---------------------------------------------------------------- checks against the brand


def test_definitions_are_checked_against_the_brand(db: Session, world: object) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    bad_branch = simple(
        steps=[
            {"type": "wait", "days": 1},
            {"type": "branch", "condition": "count(order_paid, last 90x) >= 2"},
            {"type": "exit"},
        ]
    )
    with pytest.raises(Invalid) as exc:
        actions.create_sop(db, SYSTEM, brand, SopIn.model_validate(bad_branch))
    assert exc.value.code == "tags.parse_error"
    assert exc.value.params["column"] == 26 and exc.value.params["where"] == "steps[1].condition"
    with pytest.raises(Invalid) as cond:
        actions.create_sop(
            db,
            SYSTEM,
            brand,
            SopIn.model_validate(
                simple(
                    audience={
                        "kind": "event",
                        "event": "order_paid",
                        "condition": "count(order_payed) > 1",
                    }
                )
            ),
        )
    assert cond.value.code == "tags.unknown_event"
    assert cond.value.params["where"] == "audience.condition"
    with pytest.raises(NotFound) as tag:
        actions.create_sop(
            db,
            SYSTEM,
            brand,
            SopIn.model_validate(simple(audience={"kind": "tag_entered", "tag": "no_such_tag"})),
        )
    assert tag.value.code == "tags.not_found"
    with pytest.raises(NotFound) as seg:
        actions.create_sop(
            db,
            SYSTEM,
            brand,
            SopIn.model_validate(simple(audience={"kind": "segment", "segment": "no_seg"})),
        )
    assert seg.value.code == "segments.not_found"
    with pytest.raises(Invalid) as tag_step:
        steps = [{"type": "tag", "add": "lifecycle_new"}, {"type": "exit"}]
        actions.create_sop(db, SYSTEM, brand, SopIn.model_validate(simple(steps=steps)))
    assert tag_step.value.code == "sop.tag_not_manual"
    with pytest.raises(Invalid) as event:
        actions.create_sop(db, SYSTEM, brand, SopIn.model_validate(simple(goal_event="paid")))
    assert event.value.code == "sop.unknown_event"
    with pytest.raises(Invalid) as policy:
        body = simple(policy={"guide_capacity": 3})
        actions.create_sop(db, SYSTEM, brand, SopIn.model_validate(body))
    assert policy.value.code == "sop.policy_invalid"
    # nothing half-written
    assert queries.list_sops(db, SYSTEM, brand) == []


def test_lifecycle_of_a_definition(db: Session, world: object) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    sop = actions.create_sop(db, SYSTEM, brand, SopIn.model_validate(simple()))
    with pytest.raises(Conflict):
        actions.create_sop(db, SYSTEM, brand, SopIn.model_validate(simple()))
    same = actions.update_sop(db, SYSTEM, brand, "probe", SopPatch(name="试探"))
    assert same.version == 1  # nothing changed
    changed = actions.update_sop(db, SYSTEM, brand, "probe", SopPatch(priority=80))
    assert changed.version == 2 and changed.priority == 80
    on = actions.enable_sop(db, SYSTEM, brand, "probe")
    assert on.status == "enabled" and on.enabled_at is not None
    with pytest.raises(Conflict) as exc:
        actions.delete_sop(db, SYSTEM, brand, "probe")
    assert exc.value.code == "sop.not_draft"
    # disabling keeps enrolments
    db.add(
        Enrolment(
            brand_id=brand.id,
            sop_id=sop.id,
            customer_id="C" * 26,
            entered_at=utcnow(),
            state="active",
        )
    )
    db.commit()
    off = actions.disable_sop(db, SYSTEM, brand, sop.id)
    assert off.status == "disabled"
    assert db.scalar(select(Enrolment).where(Enrolment.sop_id == sop.id)) is not None
    assert queries.show_sop(db, SYSTEM, brand, "probe").counts.active == 1
    draft = actions.create_sop(db, SYSTEM, brand, SopIn.model_validate(simple(key="draft_one")))
    actions.delete_sop(db, SYSTEM, brand, draft.key)
    with pytest.raises(NotFound):
        queries.show_sop(db, SYSTEM, brand, "draft_one")
    audited = set(db.scalars(select(AuditEntry.action).where(AuditEntry.brand_id == brand.id)))
    assert {"sop.create", "sop.update", "sop.enable", "sop.disable", "sop.delete"} <= audited


def test_breathing_policy_is_validated_and_stored(db: Session, world: object) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    assert actions.get_policy(db, SYSTEM, brand).guide_capacity == 40  # defaults
    with pytest.raises(Invalid) as exc:
        actions.set_policy(db, SYSTEM, brand, {"caps": {"day": -1}})
    assert exc.value.code == "sop.policy_invalid" and exc.value.params["setting"] == "caps.day"
    with pytest.raises(Invalid):
        actions.set_policy(db, SYSTEM, brand, {"nope": 1})
    actions.set_policy(db, SYSTEM, brand, {"mass_quota": "monthly_4", "guide_capacity": 25})
    got = actions.get_policy(db, SYSTEM, brand)
    assert str(got.mass_quota) == "monthly_4" and got.guide_capacity == 25
    assert got.caps.week == 3  # defaults kept for settings not given


def test_permissions(db: Session, world: object) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    guide = actor_of(db, "a.guide")
    with pytest.raises(Forbidden):
        actions.create_sop(db, guide, brand, SopIn.model_validate(simple()))
    with pytest.raises(Forbidden):
        actions.set_policy(db, guide, brand, {})
    assert queries.list_sops(db, guide, brand) == []  # guides may read
    analyst = actor_of(db, "a.analyst")
    with pytest.raises(Forbidden):
        actions.create_from_template(db, analyst, brand, "welcome_journey")
    admin = actor_of(db, "a.admin")
    assert actions.create_from_template(db, admin, brand, "welcome_journey").key


# ---------------------------------------------------------------- decisions and tasks


def _touch(brand_id: str, sop_id: str, enrolment_id: str, customer: str, **kw: Any) -> Touch:
    due = kw.pop("due_at", datetime(2026, 6, 1, 2, 0, tzinfo=UTC))
    return Touch(
        brand_id=brand_id,
        sop_id=sop_id,
        enrolment_id=enrolment_id,
        customer_id=customer,
        step=0,
        idem_key=f"{enrolment_id}:0:{customer}:{kw.get('status')}",
        channel="wecom_1to1",
        kind="marketing",
        content={"text": "好久不见"},
        due_at=due,
        expires_at=due + timedelta(days=2),
        decided_at=utcnow(),
        **kw,
    )


def test_decision_explorer_answers_why_not(db: Session, world: object) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    cast = seed_customers(db)
    sop = actions.create_sop(db, SYSTEM, brand, SopIn.model_validate(simple()))
    rows = []
    for customer in (cast.zhang, cast.li):
        e = Enrolment(brand_id=brand.id, sop_id=sop.id, customer_id=customer, entered_at=utcnow())
        db.add(e)
        db.flush()
        rows.append(e)
    deferred_until = datetime(2026, 6, 8, 1, 0, tzinfo=UTC)
    db.add_all(
        [
            _touch(
                brand.id,
                sop.id,
                rows[0].id,
                cast.zhang,
                status="deferred",
                reason="weekly_cap",
                cause="weekly_cap",
                deferred_until=deferred_until,
            ),
            _touch(
                brand.id,
                sop.id,
                rows[1].id,
                cast.li,
                status="suppressed",
                reason="expired",
                cause="quiet_hours",
            ),
        ]
    )
    db.commit()
    everything = queries.decisions(db, SYSTEM, brand)
    assert {(d.customer_id, d.status, d.reason) for d in everything} == {
        (cast.zhang, "deferred", "weekly_cap"),
        (cast.li, "suppressed", "expired"),
    }
    why = queries.decisions(db, SYSTEM, brand, customer_id=cast.zhang)
    assert len(why) == 1 and why[0].sop == "probe" and why[0].deferred_until is not None
    assert why[0].deferred_until.replace(tzinfo=UTC) == deferred_until
    assert [d.cause for d in queries.decisions(db, SYSTEM, brand, reason="expired")] == [
        "quiet_hours"
    ]
    assert queries.decisions(db, SYSTEM, brand, sop_key="probe", status="sent") == []
    with pytest.raises(Invalid):
        queries.decisions(db, SYSTEM, brand, reason="bogus")
    # counts on the list
    counts = queries.show_sop(db, SYSTEM, brand, "probe").counts
    assert (counts.deferred_7d, counts.suppressed_7d, counts.active) == (1, 1, 2)
    # a guide sees only their customers' decisions (Zhang is a.guide's)
    guide = actor_of(db, "a.guide")
    assert {d.customer_id for d in queries.decisions(db, guide, brand)} == {cast.zhang}
    with pytest.raises(NotFound):
        queries.decisions(db, guide, brand, customer_id=cast.li)


def test_guide_tasks_are_ranked_and_overdue_is_flagged(db: Session, world: object) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    cast = seed_customers(db)
    guide = actor_of(db, "a.guide")
    assert guide.staff_id
    now = utcnow()
    db.add_all(
        [
            GuideTask(
                brand_id=brand.id,
                staff_id=guide.staff_id,
                customer_id=cast.zhang,
                kind="chat",
                title="低价值",
                expected_value=10.0,
                due_at=now + timedelta(minutes=1),
            ),
            GuideTask(
                brand_id=brand.id,
                staff_id=guide.staff_id,
                customer_id=cast.zhang,
                kind="call",
                title="高价值",
                expected_value=90.0,
                due_at=now - timedelta(days=3),
                checklist=["问候"],
            ),
            GuideTask(  # not in the guide's scope: left out
                brand_id=brand.id,
                staff_id=guide.staff_id,
                customer_id=cast.li,
                kind="chat",
                title="别人的客户",
                expected_value=50.0,
                due_at=now,
            ),
        ]
    )
    db.commit()
    mine = queries.guide_tasks(db, guide, brand)
    assert [t.title for t in mine] == ["高价值", "低价值"]
    assert [t.overdue for t in mine] == [True, False]
    everyone = queries.guide_tasks(db, SYSTEM, brand, "a.guide")
    assert len(everyone) == 3
    with pytest.raises(Invalid):
        queries.guide_tasks(db, SYSTEM, brand)  # the system names no guide
    with pytest.raises(NotFound):  # a guide cannot look at another guide's list
        queries.guide_tasks(db, guide, brand, "shared")


# ---------------------------------------------------------------- API


def test_api_round_trip(client: Any, db: Session, world: object) -> None:
    h = {"Authorization": f"Bearer {api_key(db, 'a-coffee', 'sop.write', 'customers.read')}"}
    bad = simple(
        steps=[
            {"type": "branch", "condition": "count(order_paid, last 90x) >= 2", "else": 1},
            {"type": "exit"},
        ]
    )
    r = client.post(f"{BASE}/sops", json=bad, headers=h)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "tags.parse_error"
    assert str(problem["params"]["line"]) == "1" and str(problem["params"]["column"]) == "26"
    assert problem["params"]["where"] == "steps[0].condition"
    r = client.post(
        f"{BASE}/sops", json=simple(audience={"kind": "tag_entered", "tag": "x_y"}), headers=h
    )
    assert r.status_code == 404 and r.json()["code"] == "tags.not_found"
    r = client.post(f"{BASE}/sops", json=simple(holdout_pct=99), headers=h)
    assert r.status_code == 422
    made = client.post(f"{BASE}/sops", json=simple(), headers=h)
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "draft" and made.json()["counts"]["active"] == 0
    r = client.patch(f"{BASE}/sops/probe", json={"priority": 77}, headers=h)
    assert r.status_code == 200 and r.json()["version"] == 2
    r = client.post(f"{BASE}/sops/probe:enable", headers=h)
    assert r.json()["status"] == "enabled" and r.json()["enabled_at"]
    r = client.delete(f"{BASE}/sops/probe", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "sop.not_draft"
    r = client.post(f"{BASE}/sops/probe:disable", headers=h)
    assert r.json()["status"] == "disabled"
    templates = client.get(f"{BASE}/sop-templates", headers=h).json()
    assert {t["key"] for t in templates} == set(TEMPLATES)
    r = client.post(
        f"{BASE}/sops:from-template",
        json={
            "template": "dormant_winback",
            "key": "winback_a",
            "overrides": {"priority": 65},
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    assert r.json()["holdout_pct"] == 10 and r.json()["priority"] == 65
    r = client.post(f"{BASE}/sops:from-template", json={"template": "nope"}, headers=h)
    assert r.status_code == 404 and r.json()["code"] == "sop.template_not_found"
    keys = [s["key"] for s in client.get(f"{BASE}/sops", headers=h).json()]
    assert keys == ["probe", "winback_a"]
    assert client.get(f"{BASE}/sops?status=draft", headers=h).json()[0]["key"] == "winback_a"
    r = client.delete(f"{BASE}/sops/winback_a", headers=h)
    assert r.status_code == 204
    assert client.get(f"{BASE}/sops/winback_a", headers=h).status_code == 404
    # the policy
    assert client.get(f"{BASE}/sop-policy", headers=h).json()["quiet_start"] == "21:30"
    r = client.put(f"{BASE}/sop-policy", json={"quiet_start": "25:00"}, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "sop.policy_invalid"
    r = client.put(f"{BASE}/sop-policy", json={"quiet_start": "22:00"}, headers=h)
    assert r.status_code == 200 and r.json()["quiet_start"] == "22:00"
    assert client.get(f"{BASE}/sop-policy", headers=h).json()["quiet_start"] == "22:00"
    # the explorer and the workbench list answer (empty so far)
    assert client.get(f"{BASE}/sop-decisions?reason=weekly_cap", headers=h).json() == []
    r = client.get(f"{BASE}/sop-decisions?reason=nope", headers=h)
    assert r.status_code == 422 and r.json()["code"] == "sop.bad_filter"
    r = client.get(f"{BASE}/guide-tasks?staff=a.guide", headers=h)
    assert r.status_code == 200 and r.json() == []


def test_api_guide_is_refused_sop_writes(client: Any, db: Session, world: object) -> None:
    headers = login(client, "a.guide")
    r = client.post(f"{BASE}/sops", json=simple(), headers=headers)
    assert r.status_code == 403
    r = client.put(f"{BASE}/sop-policy", json={}, headers=headers)
    assert r.status_code == 403
    assert client.get(f"{BASE}/sops", headers=headers).status_code == 200
    # the guide's own workbench list needs no staff parameter
    assert client.get(f"{BASE}/guide-tasks", headers=headers).json() == []


# ---------------------------------------------------------------- CLI


def cli(*args: str, code: int = 0) -> str:
    result = runner.invoke(cli_app, [*args, "--data-dir", os.environ["SIYU_DATA_DIR"]])
    assert result.exit_code == code, result.output
    return result.output


def test_cli_list_show_policy(db: Session, world: object) -> None:
    out = cli("sop", "add", "--brand", "a-coffee", "--template", "welcome_journey")
    assert "welcome_journey" in out and "draft" in out
    table = cli("sop", "list", "--brand", "a-coffee")
    assert table.splitlines()[0].split()[:3] == ["key", "name", "status"]
    assert "新好友欢迎旅程" in table
    shown = json.loads(cli("sop", "show", "welcome_journey", "--brand", "a-coffee", "--json"))
    assert shown["audience"]["event"] == "wecom_contact_added"
    assert "0. touch" in cli("sop", "show", "welcome_journey", "--brand", "a-coffee")
    assert "enabled" in cli("sop", "enable", "welcome_journey", "--brand", "a-coffee")
    assert "disabled" in cli("sop", "disable", "welcome_journey", "--brand", "a-coffee")
    policy = json.loads(cli("sop", "policy", "--brand", "a-coffee", "--json"))
    assert policy["mass_quota"] == "daily_1"
    cli("sop", "policy", "--brand", "a-coffee", "--set", '{"guide_capacity": 12}')
    assert "guide_capacity: 12" in cli("sop", "policy", "--brand", "a-coffee")
    err = runner.invoke(
        cli_app,
        [
            "sop",
            "policy",
            "--brand",
            "a-coffee",
            "--set",
            '{"backoff_after": 0}',
            "--data-dir",
            os.environ["SIYU_DATA_DIR"],
        ],
    )
    assert err.exit_code == 2 and "sop.policy_invalid" in err.output
    assert "(none)" in cli("sop", "decisions", "--brand", "a-coffee", "--reason", "weekly_cap")
    assert "welcome_journey" in cli("sop", "templates", "--brand", "a-coffee")


def test_cli_simulate_and_run(db: Session, world: object) -> None:
    cli("sop", "add", "--brand", "a-coffee", "--template", "welcome_journey")
    cli("sop", "enable", "welcome_journey", "--brand", "a-coffee")
    out = json.loads(
        cli(
            "sop",
            "simulate",
            "--brand",
            "a-coffee",
            "--days",
            "2",
            "--start",
            "2026-06-01",
            "--json",
        )
    )
    assert [d["day"] for d in out["days"]] == ["2026-06-01", "2026-06-02"]
    table = cli("sop", "simulate", "--brand", "a-coffee", "--days", "1", "--start", "2026-06-01")
    assert table.startswith("day") and "2026-06-01" in table and "pressure" in table
    ran = json.loads(cli("sop", "run", "--brand", "a-coffee", "--day", "2026-06-01", "--json"))
    assert ran["status"] == "ok" and ran["day"] == "2026-06-01"
