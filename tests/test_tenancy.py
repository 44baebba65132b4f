"""Tenant isolation and data scope.

The isolation tests enumerate every API route with a ``{brand}`` parameter, so a new
endpoint is covered the day it is added (and fails here until it has a sample body).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.errors import Forbidden, NotFound
from siyu.core.tenancy import SYSTEM, Actor
from siyu.org import actions, auth, queries
from siyu.org.models import ApiKey, Staff
from siyu.org.permissions import API_SCOPES
from siyu.org.schemas import StaffIn, UnitIn
from tests.factories import api_key, login

CONTRACT: dict[str, Any] = {
    "key": "probe-contract",
    "name": "c",
    "starts_on": "2026-07-01",
    "ends_on": "2026-12-31",
    "kpis": [{"kpi": "diversion_rate", "fail": 0, "normal": 0.05, "good": 0.2, "excess": 0.25}],
}

SAMPLE_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/brands/{brand}/events:batch"): {
        "json": {
            "events": [
                {
                    "event_id": "tenancy-1",
                    "event_type": "page_viewed",
                    "occurred_at": "2026-03-01T10:00:00+08:00",
                    "identifiers": [{"type": "phone", "value": "13800138000"}],
                    "properties": {"path": "/pages/index"},
                }
            ]
        }
    },
    ("POST", "/api/v1/brands/{brand}/events"): {
        "json": {
            "event_id": "tenancy-2",
            "event_type": "page_viewed",
            "occurred_at": "2026-03-01T10:00:00+08:00",
            "identifiers": [{"type": "phone", "value": "13800138000"}],
            "properties": {"path": "/pages/index"},
        }
    },
    ("POST", "/api/v1/brands/{brand}/event-types"): {
        "json": {"event_type": "tenancy_probe", "fields": [{"name": "x"}]}
    },
    ("POST", "/api/v1/brands/{brand}/units"): {"json": {"code": "NEW1", "name": "n"}},
    ("PATCH", "/api/v1/brands/{brand}/units/{unit}"): {"json": {"name": "renamed"}},
    ("POST", "/api/v1/brands/{brand}/staff"): {
        "json": {"name": "n", "username": "new.person", "role": "analyst"}
    },
    ("PATCH", "/api/v1/brands/{brand}/staff/{staff}"): {"json": {"name": "renamed"}},
    ("POST", "/api/v1/brands/{brand}/memberships"): {
        "json": {"username": "b.guide", "role": "guide", "unit": "B-S01"}
    },
    ("POST", "/api/v1/brands/{brand}/units:import"): {
        "files": {"file": ("u.csv", b"code,name,kind,parent\nZ1,z,store,B-HQ\n", "text/csv")}
    },
    ("POST", "/api/v1/brands/{brand}/staff:import"): {
        "files": {"file": ("s.csv", b"name,username,role\nx,xx.yy,analyst\n", "text/csv")}
    },
    ("POST", "/api/v1/brands/{brand}/api-keys"): {"json": {"name": "k", "scopes": ["org.read"]}},
    ("POST", "/api/v1/brands/{brand}/api-keys/{key}:revoke"): {},
    ("POST", "/api/v1/brands/{brand}/customers/{customer}:reveal"): {"json": {"field": "phone"}},
    ("POST", "/api/v1/brands/{brand}/customers:merge"): {
        "json": {"customer_ids": ["{customer}", "{customer2}"]}
    },
    ("POST", "/api/v1/brands/{brand}/customers/{customer}:split"): {
        "json": {"identity_ids": ["{identity}"]}
    },
    ("POST", "/api/v1/brands/{brand}/oneid/reviews/{review}:decide"): {"json": {"approve": True}},
    ("POST", "/api/v1/brands/{brand}/oneid:run"): {},
    ("PUT", "/api/v1/brands/{brand}/oneid/identifier-types/{id_type}"): {"json": {"unique": True}},
    ("POST", "/api/v1/brands/{brand}/tag-groups"): {"json": {"key": "probe_group", "name": "g"}},
    ("POST", "/api/v1/brands/{brand}/tags"): {
        "json": {"key": "probe_tag", "name": "t", "group": "rules", "rule": "exists(page_viewed)"}
    },
    ("PATCH", "/api/v1/brands/{brand}/tags/{tag}"): {"json": {"name": "renamed"}},
    ("DELETE", "/api/v1/brands/{brand}/tags/{tag}"): {},
    ("POST", "/api/v1/brands/{brand}/tags:check"): {"json": {"rule": "exists(page_viewed)"}},
    ("PUT", "/api/v1/brands/{brand}/tags/{tag}/customers"): {
        "json": {"customer_ids": ["{customer}"]}
    },
    ("PUT", "/api/v1/brands/{brand}/tag-settings"): {
        "json": {"group": "lifecycle", "params": {"new_days": 14}}
    },
    ("POST", "/api/v1/brands/{brand}/tags:compute"): {"json": {"mode": "full"}},
    ("POST", "/api/v1/brands/{brand}/segments"): {
        "json": {"key": "probe_seg", "name": "s", "definition": "tag_lifecycle_new"}
    },
    ("PATCH", "/api/v1/brands/{brand}/segments/{segment}"): {"json": {"name": "renamed"}},
    ("POST", "/api/v1/brands/{brand}/segments:preview"): {"json": {"definition": "tag_b_vip"}},
    ("POST", "/api/v1/brands/{brand}/segments/{segment}:snapshot"): {},
    ("POST", "/api/v1/brands/{brand}/sops"): {
        "json": {
            "key": "probe_sop",
            "name": "s",
            "audience": {"kind": "event", "event": "wecom_contact_added"},
            "steps": [{"type": "exit"}],
        }
    },
    ("PATCH", "/api/v1/brands/{brand}/sops/{sop}"): {"json": {"name": "renamed"}},
    ("DELETE", "/api/v1/brands/{brand}/sops/{sop}"): {},
    ("POST", "/api/v1/brands/{brand}/sops/{sop}:enable"): {},
    ("POST", "/api/v1/brands/{brand}/sops/{sop}:disable"): {},
    ("POST", "/api/v1/brands/{brand}/sops:from-template"): {
        "json": {"template": "welcome_journey", "key": "probe_welcome"}
    },
    ("PUT", "/api/v1/brands/{brand}/sop-policy"): {"json": {"guide_capacity": 30}},
    ("PUT", "/api/v1/brands/{brand}/wecom/app"): {
        "json": {
            "corp_id": "wwtenancy",
            "secret": "s",
            "token": "Tok1",
            "aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        }
    },
    ("POST", "/api/v1/brands/{brand}/wecom:sync"): {},
    # signed by WeCom, not by a key: a brand without a WeCom app answers 404 like an unknown one
    ("POST", "/wecom/callback/{brand}"): {"content": b"<xml></xml>"},
    ("POST", "/api/v1/brands/{brand}/wecom/contact-ways"): {
        "json": {"name": "n", "state": "s1", "staff_userids": ["aguide"]}
    },
    ("POST", "/api/v1/brands/{brand}/wecom/transfers"): {
        "json": {"mode": "resigned", "handover_userid": "a", "takeover_userid": "b"}
    },
    ("POST", "/api/v1/brands/{brand}/wecom/group-transfers"): {
        "json": {"chat_ids": ["c1"], "new_owner": "aguide"}
    },
    ("PUT", "/api/v1/brands/{brand}/channel-settings/{channel}"): {
        "json": {"url": "http://127.0.0.1:9/hook", "secret": "tenancy-secret"}
    },
    ("POST", "/api/v1/brands/{brand}/outbox/{outbox}:retry"): {},
    ("POST", "/api/v1/brands/{brand}/outbox:retry"): {"json": {"ids": ["{outbox}"]}},
    ("POST", "/api/v1/brands/{brand}/content/materials"): {
        "json": {"kind": "text", "name": "probe", "body": {"text": "hi {{ nickname }}"}}
    },
    ("POST", "/api/v1/brands/{brand}/content/materials:import"): {
        "json": [{"kind": "text", "name": "probe", "body": {"text": "hi"}}]
    },
    ("PATCH", "/api/v1/brands/{brand}/content/materials/{material}"): {"json": {"name": "x"}},
    ("POST", "/api/v1/brands/{brand}/content/folders"): {"json": {"name": "probe"}},
    ("PUT", "/api/v1/brands/{brand}/content/settings"): {
        "json": {"allowed_domains": ["mall.example.com"]}
    },
    ("POST", "/api/v1/brands/{brand}/content/templates:check"): {"json": {"text": "hi"}},
    ("POST", "/api/v1/brands/{brand}/content/preview"): {
        "json": {"text": "hi {{ nickname }}", "customer_id": "{customer}"}
    },
    ("POST", "/api/v1/brands/{brand}/content/links"): {
        "json": {"target_url": "https://mall.example.com/x"}
    },
    ("POST", "/api/v1/brands/{brand}/content/sops/{sop}:set-content"): {
        "json": {"step": 0, "material_id": "{material}"}
    },
    ("POST", "/api/v1/brands/{brand}/content/koc-notes"): {
        "json": {
            "url": "https://www.xiaohongshu.com/explore/6650a1b2c3d4e5f6a7b8c9d1",
            "title": "t",
        }
    },
    ("POST", "/api/v1/brands/{brand}/content/koc-notes:import"): {
        "json": [{"url": "https://www.douyin.com/video/77", "title": "t"}]
    },
    ("POST", "/api/v1/brands/{brand}/content/koc-notes/{note}:approve"): {
        "json": {"reward_points": 10}
    },
    ("POST", "/api/v1/brands/{brand}/content/koc-notes/{note}:reject"): {
        "json": {"reason": "probe"}
    },
    ("POST", "/api/v1/brands/{brand}/contracts"): {"json": CONTRACT},
    ("PUT", "/api/v1/brands/{brand}/contracts/{contract}"): {"json": CONTRACT},
    ("DELETE", "/api/v1/brands/{brand}/contracts/{contract}"): {},
    ("POST", "/api/v1/brands/{brand}/report-schedules"): {
        "json": {"period": "weekly", "recipients": ["client@example.com"]}
    },
    ("DELETE", "/api/v1/brands/{brand}/report-schedules/{schedule}"): {},
    ("PUT", "/api/v1/brands/{brand}/metrics/channel-codes/{channel_code}"): {
        "json": {"name": "门店海报", "cost_per_customer_fen": 150}
    },
}


def brand_routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) of the API with a brand in its path, from the OpenAPI schema."""
    out = []
    for path, ops in app.openapi()["paths"].items():
        if "{brand}" in path:
            out.extend((m.upper(), path) for m in sorted(ops))
    return out


def fill(path: str, brand: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: brand if m[1] == "brand" else ids[m[1]], path)


def other_tenant_ids(db: Session) -> dict[str, str]:
    """Real ids of brand b-shop's resources, so only tenancy can make a request fail."""
    from siyu.core.clock import utcnow
    from siyu.customers import actions as customer_actions
    from siyu.customers.models import Identity, Review
    from siyu.customers.schemas import ObservationIn
    from siyu.sop import actions as sop_actions
    from siyu.sop.models import Outbox
    from siyu.tags import actions as tag_actions
    from siyu.tags import segments
    from siyu.tags.schemas import SegmentIn, TagIn

    b = queries.access_brand(db, SYSTEM, "b-shop")
    unit = queries.resolve_unit(db, b, "B-S01")
    staff = db.scalar(select(Staff).where(Staff.username == "b.guide"))
    api_key(db, "b-shop", "org.read")
    key = db.scalar(select(ApiKey).where(ApiKey.brand_id == b.id))
    at, later = "2026-05-01T10:00:00+08:00", "2026-05-01T11:00:00+08:00"
    found = customer_actions.observe_batch(
        db,
        SYSTEM,
        b,
        [
            ObservationIn.model_validate(
                {
                    "source": "crm",
                    "observed_at": at,
                    "identifiers": [
                        {"type": "phone", "value": "13900000001"},
                        {"type": "member_no", "value": "B1"},
                        {"type": "unionid", "value": "b-u1"},
                    ],
                }
            ),
            ObservationIn.model_validate(
                {
                    "source": "crm",
                    "observed_at": later,
                    "identifiers": [
                        {"type": "phone", "value": "13900000001"},
                        {"type": "member_no", "value": "B2"},
                    ],
                }
            ),
        ],
    )
    customer, customer2 = found[0].customer_id, found[1].customer_id
    identity = db.scalar(
        select(Identity.id).where(Identity.customer_id == customer, Identity.id_type == "unionid")
    )
    review = db.scalar(select(Review.id).where(Review.brand_id == b.id))
    assert unit and staff and key and customer and customer2 and identity and review
    tag_actions.create_tag(
        db, SYSTEM, b, TagIn(key="b_vip", name="b", group="manual", kind="manual")
    )
    segments.create(db, SYSTEM, b, SegmentIn(key="b_seg", name="b", definition="tag_b_vip"))
    sop = sop_actions.create_from_template(db, SYSTEM, b, "welcome_journey")
    outbox = Outbox(
        brand_id=b.id,
        idem_key="tenancy-dead",
        channel="webhook",
        payload={},
        status="failed",
        attempts=8,
        available_at=utcnow(),
        reason="rejected",
    )
    db.add(outbox)
    db.commit()
    material, link = _content_of(db, b)
    from siyu.content import ugc

    note = ugc.submit_note(
        db, SYSTEM, b, ugc.KocNoteIn(url="https://weibo.com/b/1", title="b", customer_id=customer)
    )
    from siyu.metrics import contract_store, reports

    contract = contract_store.create_contract(
        db, SYSTEM, b, contract_store.ContractIn.model_validate({**CONTRACT, "key": "b-contract"})
    )
    schedule = reports.create_schedule(
        db,
        SYSTEM,
        b,
        reports.ScheduleIn(period="weekly", recipients=["b@example.com"]),
    )
    return {
        "outbox": outbox.id,
        "channel": "webhook",
        "note": note.id,
        "material": material,
        "code": link,
        "contract": contract.id,
        "schedule": schedule.id,
        "period": "weekly",
        "kpi": "gmv",
        "channel_code": "store_poster",
        "sop": sop.id,
        "tag": "b_vip",
        "segment": "b_seg",
        "id_type": "pos_card",
        "unit": unit.id,
        "staff": staff.id,
        "key": key.id,
        "customer": customer,
        "customer2": customer2,
        "identity": identity,
        "review": review,
    }


def _content_of(db: Session, b: Any) -> tuple[str, str]:
    from siyu.content import actions as content_actions
    from siyu.content.schemas import LinkIn, MaterialIn, SettingsIn

    m = content_actions.create_material(
        db, SYSTEM, b, MaterialIn(kind="text", name="b", body={"text": "b"})
    )
    content_actions.set_settings(db, SYSTEM, b, SettingsIn(allowed_domains=["b.example.com"]))
    link = content_actions.create_link(db, SYSTEM, b, LinkIn(target_url="https://b.example.com/"))
    return m.id, link.code


def request(
    client: Any, method: str, path: str, route: str, headers: dict[str, str], ids: dict[str, str]
) -> Any:
    if method != "GET":
        assert (method, route) in SAMPLE_BODIES, f"add a sample body for {method} {route}"
    kwargs = SAMPLE_BODIES.get((method, route), {})
    if "json" in kwargs:
        kwargs = {**kwargs, "json": _fill_body(kwargs["json"], ids)}
    return client.request(method, path, headers=headers, **kwargs)


def _fill_body(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids.get(value[1:-1], value)
    if isinstance(value, list):
        return [_fill_body(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill_body(v, ids) for k, v in value.items()}
    return value


def test_every_brand_route_hides_another_tenant_from_an_api_key(
    app: Any, client: Any, db: Session, world: Any
) -> None:
    # given a key of brand a-coffee holding every scope a key can have
    key = api_key(db, "a-coffee", *API_SCOPES)
    ids = other_tenant_ids(db)
    routes = brand_routes(app)
    assert len(routes) >= 15
    for method, route in routes:
        # when it asks for brand b-shop's resources, by b-shop's path
        r = request(
            client,
            method,
            fill(route, "b-shop", ids),
            route,
            {"Authorization": f"Bearer {key}"},
            ids,
        )
        # then b-shop does not exist for it
        assert r.status_code == 404, (method, route, r.status_code, r.text)
        # and b-shop's resources are not reachable through a-coffee's path either
        if re.search(
            r"\{(unit|staff|key|customer|review|tag|segment|sop|outbox|material|code)\}", route
        ):
            r = request(
                client,
                method,
                fill(route, "a-coffee", ids),
                route,
                {"Authorization": f"Bearer {key}"},
                ids,
            )
            assert r.status_code in (403, 404), (method, route, r.status_code, r.text)


def test_every_brand_route_hides_another_tenant_from_a_signed_in_admin(
    app: Any, client: Any, db: Session, world: Any
) -> None:
    ids = other_tenant_ids(db)
    headers = login(client, "a.admin")
    for method, route in brand_routes(app):
        r = request(client, method, fill(route, "b-shop", ids), route, headers, ids)
        assert r.status_code == 404, (method, route, r.status_code, r.text)
    # and nothing was written to b-shop by any of those attempts
    b = queries.access_brand(db, SYSTEM, "b-shop")
    assert queries.resolve_unit(db, b, "NEW1") is None
    assert queries.resolve_unit(db, b, "Z1") is None


def test_guide_is_refused_writes(app: Any, client: Any, db: Session, world: Any) -> None:
    headers = login(client, "a.guide")
    ids = other_tenant_ids(db)
    for method, route in brand_routes(app):
        if method == "GET":
            continue
        r = request(client, method, fill(route, "a-coffee", ids), route, headers, ids)
        assert r.status_code in (403, 404), (method, route, r.status_code, r.text)


def actor(db: Session, username: str) -> Actor:
    staff = db.scalar(select(Staff).where(Staff.username == username))
    assert staff is not None
    return auth.actor_for_staff(db, staff)


def codes(units: list[Any]) -> set[str]:
    return {u.code for u in units}


def test_store_manager_sees_only_their_subtree(db: Session, world: Any) -> None:
    mgr = actor(db, "a.sh01mgr")
    brand = queries.access_brand(db, mgr, "a-coffee")
    assert codes(queries.list_units(db, mgr, brand)) == {"A-SH01"}
    staff = {s.username for s in queries.list_staff(db, mgr, brand)}
    assert staff == {"a.sh01mgr", "a.guide"}
    with pytest.raises(NotFound):
        queries.get_unit(db, mgr, brand, "A-SH02")
    with pytest.raises(NotFound):
        queries.access_brand(db, mgr, "a-tea")


def test_regional_manager_sees_region_and_can_add_store_only_there(db: Session, world: Any) -> None:
    east = actor(db, "a.east")
    brand = queries.access_brand(db, east, "a-coffee", "org.write")
    assert codes(queries.list_units(db, east, brand)) == {"A-EAST", "A-SH01", "A-SH02"}
    actions.create_unit(db, east, brand, UnitIn(code="A-SH09", name="x", parent="A-EAST"))
    with pytest.raises(Exception) as exc:
        actions.create_unit(db, east, brand, UnitIn(code="A-GZ09", name="x", parent="A-SOUTH"))
    assert getattr(exc.value, "code", None) == "org.parent_not_found"
    with pytest.raises(Forbidden) as forb:
        actions.create_unit(db, east, brand, UnitIn(code="A-TOP", name="x", kind="region"))
    assert forb.value.code == "org.out_of_scope"


def test_shared_guide_sees_each_brand_served_and_nothing_else(db: Session, world: Any) -> None:
    shared = actor(db, "shared")
    slugs = {b.slug for b in queries.accessible_brands(db, shared)}
    assert slugs == {"a-coffee", "a-tea"}
    coffee = queries.access_brand(db, shared, "a-coffee")
    tea = queries.access_brand(db, shared, "a-tea")
    assert codes(queries.list_units(db, shared, coffee)) == {"A-SH02"}
    assert codes(queries.list_units(db, shared, tea)) == {"T-S01"}
    with pytest.raises(NotFound):
        queries.access_brand(db, shared, "b-shop")


def test_agency_manager_sees_every_agency_brand(db: Session, world: Any) -> None:
    am = actor(db, "a.am")
    assert {b.slug for b in queries.accessible_brands(db, am)} == {"a-coffee", "a-tea"}
    tea = queries.access_brand(db, am, "a-tea")
    assert codes(queries.list_units(db, am, tea)) == {"T-HQ", "T-S01"}


def test_store_manager_cannot_grant_more_than_they_hold(db: Session, world: Any) -> None:
    mgr = actor(db, "a.sh01mgr")
    brand = queries.access_brand(db, mgr, "a-coffee", "staff.write")
    actions.create_staff(
        db, mgr, brand, StaffIn(name="新导购", username="new.guide", role="guide", unit="A-SH01")
    )
    with pytest.raises(Forbidden) as exc:
        actions.create_staff(db, mgr, brand, StaffIn(name="x", username="evil.admin", role="admin"))
    assert exc.value.code == "org.cannot_grant_role"
    with pytest.raises(Exception) as other:
        actions.create_staff(
            db, mgr, brand, StaffIn(name="x", username="far.guide", role="guide", unit="A-GZ01")
        )
    assert getattr(other.value, "code", None) == "org.unit_not_found"
    # nothing half-written: the refused people do not exist
    assert db.scalar(select(Staff).where(Staff.username.in_(["evil.admin", "far.guide"]))) is None
