"""Materials: platform limits checked on save with precise errors, versions (an edit makes a
new one; touches keep the version they pinned), validity dates (an expired material cannot be
sent), the agency-shared library (readable by the agency's brands, read-only there), the
import with per-row errors, previews against a real customer with masked PII, permissions —
over the API where it matters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from siyu.content import actions, materials, queries
from siyu.content.schemas import LinkIn, MaterialIn, MaterialPatch, SettingsIn, StepContentIn
from siyu.core.errors import Invalid, NotFound
from siyu.core.tenancy import SYSTEM
from siyu.customers.models import Customer
from siyu.org.queries import access_brand
from tests.factories import login

MINI = {"title": "会员日", "appid": "wx1234567890abcdef", "page": "pages/index.html"}


def codes(exc: Invalid) -> list[tuple[str, str | None]]:
    return [(e.code, e.field) for e in exc.errors]


def test_wecom_limits_are_checked_precisely() -> None:
    # 4,000 bytes of UTF-8, not characters: 1,334 Chinese characters are 4,002 bytes
    assert materials.validate_body("text", {"text": "新" * 1333}) == []
    with pytest.raises(Invalid) as exc:
        materials.validate_body("text", {"text": "新" * 1334})
    assert exc.value.code == "content.text_too_long"
    assert codes(exc.value) == [("content.text_too_long", "body.text")]
    assert "4002 bytes > 4000" in exc.value.errors[0].reason
    # at most 9 attachments, each checked with its own path
    pic = {"kind": "image", "url": "https://img.example.com/a.jpg"}
    materials.validate_body("text", {"text": "hi", "attachments": [pic] * 9})
    with pytest.raises(Invalid) as exc:
        materials.validate_body("text", {"text": "hi", "attachments": [pic] * 10})
    assert exc.value.code == "content.too_many_attachments"
    with pytest.raises(Invalid) as exc:
        materials.validate_body(
            "text",
            {
                "text": "hi",
                "attachments": [pic, {"kind": "link", "title": "x" * 129, "url": "ftp://x"}],
            },
        )
    assert codes(exc.value) == [
        ("content.link_title_too_long", "body.attachments[1].title"),
        ("content.bad_url", "body.attachments[1].url"),
    ]
    # link card: title ≤ 128 bytes, description ≤ 512 bytes
    with pytest.raises(Invalid) as exc:
        materials.validate_body(
            "link", {"title": "标" * 43, "desc": "d" * 513, "url": "https://m.example.com/"}
        )
    assert codes(exc.value) == [
        ("content.link_title_too_long", "body.title"),
        ("content.link_desc_too_long", "body.desc"),
    ]
    # mini-program card: appid and page required, page an .html path
    with pytest.raises(Invalid) as exc:
        materials.validate_body("miniprogram", {"title": "会员日"})
    assert codes(exc.value) == [
        ("content.miniprogram_appid_required", "body.appid"),
        ("content.miniprogram_page_required", "body.page"),
    ]
    with pytest.raises(Invalid) as exc:
        materials.validate_body("miniprogram", {**MINI, "appid": "123", "page": "pages/index"})
    assert [c for c, _ in codes(exc.value)] == [
        "content.miniprogram_bad_appid",
        "content.miniprogram_bad_page",
    ]
    assert materials.validate_body("miniprogram", MINI) == []
    # media sizes, unknown fields, missing fields
    with pytest.raises(Invalid) as exc:
        materials.validate_body(
            "video", {"url": "https://v.example.com/a.mp4", "size_bytes": 11 << 20}
        )
    assert exc.value.code == "content.video_too_large"
    with pytest.raises(Invalid) as exc:
        materials.validate_body("file", {"url": "https://f.example.com/a.pdf", "colour": "red"})
    assert codes(exc.value) == [
        ("content.unknown_field", "body.colour"),
        ("content.field_required", "body.filename"),
    ]


def test_versions_pinning_and_validity(db: Session, world: Any) -> None:
    from tests.test_sop_engine import add_sop, setup_brand

    brand = setup_brand(db, n=2)
    m = actions.create_material(
        db, SYSTEM, brand, MaterialIn(kind="text", name="v", body={"text": "v1 {{ nickname }}"})
    )
    add_sop(db, brand, "one", [{"type": "touch", "channel": "wecom_1to1", "content": {}}])
    sop = actions.set_step_content(
        db, SYSTEM, brand, "one", StepContentIn(step=0, material_id=m.id)
    )
    assert sop.steps[0]["content"]["version"] == 1
    # an edit makes version 2; the step keeps version 1 until set again
    actions.update_material(db, SYSTEM, brand, m.id, MaterialPatch(body={"text": "v2"}, note="x"))
    actions.update_material(
        db, SYSTEM, brand, m.id, MaterialPatch(name="renamed")
    )  # no new version
    got = queries.versions(db, SYSTEM, brand, m.id)
    assert [(v.version, v.body["text"]) for v in got] == [(2, "v2"), (1, "v1 {{ nickname }}")]
    assert queries.get_material(db, SYSTEM, brand, m.id).name == "renamed"
    assert sop.steps[0]["content"]["text"] == "v1 {{ nickname }}"
    sop = actions.set_step_content(
        db, SYSTEM, brand, "one", StepContentIn(step=0, material_id=m.id)
    )
    assert (sop.steps[0]["content"]["version"], sop.steps[0]["content"]["text"]) == (2, "v2")
    # a refused edit leaves everything as it was
    with pytest.raises(Invalid):
        actions.update_material(db, SYSTEM, brand, m.id, MaterialPatch(body={"text": "{{ x }}"}))
    assert queries.get_material(db, SYSTEM, brand, m.id).version == 2
    # expired: cannot be put on a step, linked, or rendered for sending
    past = datetime.now(UTC) - timedelta(days=1)
    actions.update_material(
        db,
        SYSTEM,
        brand,
        m.id,
        MaterialPatch(valid_from=past - timedelta(days=3), valid_until=past),
    )
    assert not queries.get_material(db, SYSTEM, brand, m.id).valid_now
    with pytest.raises(Invalid) as exc:
        actions.set_step_content(db, SYSTEM, brand, "one", StepContentIn(step=0, material_id=m.id))
    assert exc.value.code == "content.material_expired"
    actions.set_settings(db, SYSTEM, brand, SettingsIn(allowed_domains=["m.example.com"]))
    with pytest.raises(Invalid) as exc:
        actions.create_link(
            db, SYSTEM, brand, LinkIn(target_url="https://m.example.com/", material_id=m.id)
        )
    assert exc.value.code == "content.material_expired"
    with pytest.raises(Invalid) as exc:
        queries.render_content(db, brand, sop.steps[0]["content"], None)
    assert exc.value.code == "content.material_expired"
    # not yet valid, and archived
    actions.update_material(
        db,
        SYSTEM,
        brand,
        m.id,
        MaterialPatch(valid_from=datetime.now(UTC) + timedelta(days=1), valid_until=None),
    )
    with pytest.raises(Invalid) as exc:
        actions.check_usable(actions.material_for(db, brand, m.id))
    assert exc.value.code == "content.material_not_yet_valid"
    with pytest.raises(Invalid) as exc:
        actions.update_material(
            db, SYSTEM, brand, m.id, MaterialPatch(valid_until=datetime.now(UTC))
        )
    assert exc.value.code == "content.bad_validity"


def test_render_content_for_a_customer(db: Session, world: Any) -> None:
    from tests.test_sop_engine import setup_brand

    brand = setup_brand(db, n=1)
    cust = db.scalar(select(Customer).where(Customer.brand_id == brand.id))
    assert cust is not None
    db.execute(
        update(Customer)
        .where(Customer.id == cust.id)
        .values(nickname="王小明", attributes={"level": "金卡"})
    )
    db.commit()
    content = {"text": "{{ nickname }}，{{ member_tier }}会员，找{{ guide_name }}", "fallbacks": {}}
    out = queries.render_content(db, brand, content, cust.id)
    assert out["text"] == "王小明，金卡会员，找A.GUIDE"
    assert queries.render_content(db, brand, content, cust.id, masked=True)["text"].startswith(
        "王**，"
    )
    out = queries.render_content(
        db, brand, {"text": "{{ nickname }}好", "fallbacks": {"nickname": "朋友"}}, None
    )
    assert out["text"] == "朋友好"


def test_agency_library_is_shared_read_only(db: Session, world: Any) -> None:
    coffee = access_brand(db, SYSTEM, "a-coffee")
    tea = access_brand(db, SYSTEM, "a-tea")
    other = access_brand(db, SYSTEM, "b-shop")
    shared = actions.create_material(
        db,
        SYSTEM,
        coffee,
        MaterialIn(kind="text", name="共享", library="agency", body={"text": "hi"}),
    )
    own = actions.create_material(
        db, SYSTEM, coffee, MaterialIn(kind="text", name="自有", body={"text": "hi"})
    )
    assert {m.name for m in queries.list_materials(db, SYSTEM, tea)} == {"共享"}
    assert {m.name for m in queries.list_materials(db, SYSTEM, coffee)} == {"共享", "自有"}
    assert queries.list_materials(db, SYSTEM, other) == []
    assert not queries.get_material(db, SYSTEM, tea, shared.id).owner_brand
    with pytest.raises(Invalid) as exc:
        actions.update_material(db, SYSTEM, tea, shared.id, MaterialPatch(name="mine"))
    assert exc.value.code == "content.material_read_only"
    with pytest.raises(NotFound):
        queries.get_material(db, SYSTEM, tea, own.id)
    with pytest.raises(NotFound):
        queries.get_material(db, SYSTEM, other, shared.id)
    with pytest.raises(Invalid) as exc:
        actions.create_material(
            db,
            SYSTEM,
            other,
            MaterialIn(kind="text", name="x", library="agency", body={"text": "x"}),
        )
    assert exc.value.code == "content.no_agency"


def test_api_create_preview_import_and_permissions(client: Any, db: Session, world: Any) -> None:
    from tests.test_sop_engine import setup_brand

    brand = setup_brand(db, n=1)
    cust = db.scalar(select(Customer).where(Customer.brand_id == brand.id))
    assert cust is not None
    db.execute(update(Customer).where(Customer.id == cust.id).values(nickname="王小明"))
    db.commit()
    base = "/api/v1/brands/a-coffee/content"
    headers = login(client, "a.admin")
    # every problem listed, with its field
    r = client.post(
        f"{base}/materials",
        json={
            "kind": "link",
            "name": "bad",
            "body": {"title": "{{ nick }}", "url": "javascript:alert(1)", "desc": "d" * 600},
        },
        headers=headers,
    )
    assert r.status_code == 422
    problem = r.json()
    assert problem["code"] == "content.template_unknown_variable"
    assert [(e["code"], e["field"]) for e in problem["errors"]] == [
        ("content.template_unknown_variable", "body.title"),
        ("content.link_desc_too_long", "body.desc"),
        ("content.bad_url", "body.url"),
    ]
    r = client.post(
        f"{base}/materials",
        json={
            "kind": "text",
            "name": "欢迎",
            "body": {"text": "{{ nickname }}，欢迎来到{{ store }}"},
            "fallbacks": {"store": "我们的门店"},
            "tags": ["欢迎"],
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    m = r.json()
    assert (m["version"], m["variables"]) == (1, ["nickname", "store"])
    # a preview for a real customer: PII masked, fallbacks applied
    r = client.post(
        f"{base}/preview", json={"material_id": m["id"], "customer_id": cust.id}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["text"] == "王**，欢迎来到我们的门店"
    # template check with the precise error
    r = client.post(
        f"{base}/templates:check", json={"text": "ok\n{{ self.__init__ }}"}, headers=headers
    )
    assert r.status_code == 422 and r.json()["code"] == "content.template_forbidden_attribute"
    assert r.json()["errors"][0]["row"] == 2
    # import: good rows kept, bad ones reported by row
    r = client.post(
        f"{base}/materials:import",
        json=[
            {"kind": "text", "name": "a", "body": {"text": "a"}},
            {"kind": "text", "name": "b", "body": {"text": "{{ oops }}"}},
            {"kind": "nope", "name": "c"},
            {"kind": "image", "name": "d", "body": {"url": "https://img.example.com/d.png"}},
        ],
        headers=headers,
    )
    assert r.status_code == 200
    out = r.json()
    assert out["created"] == 2 and sorted({e["row"] for e in out["errors"]}) == [2, 3]
    r = client.get(f"{base}/materials?q=欢迎", headers=headers)
    assert [x["name"] for x in r.json()] == ["欢迎"]
    assert len(client.get(f"{base}/materials", headers=headers).json()) == 3
    # a guide reads the library but cannot write or preview
    client.cookies.clear()
    guide = login(client, "a.guide")
    assert client.get(f"{base}/materials", headers=guide).status_code == 200
    r = client.post(
        f"{base}/materials",
        json={"kind": "text", "name": "g", "body": {"text": "g"}},
        headers=guide,
    )
    assert r.status_code == 403 and r.json()["code"] == "auth.permission_denied"
    r = client.post(f"{base}/preview", json={"text": "hi"}, headers=guide)
    assert r.status_code == 403
