"""Builds the test cast through the real actions (never by inserting rows directly)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from siyu.core.tenancy import SYSTEM
from siyu.org import actions, queries
from siyu.org.schemas import AgencyIn, ApiKeyIn, BrandIn, MembershipIn, StaffIn, UnitIn

PASSWORD = "password123"

UNITS = {
    "a-coffee": [
        ("A-HQ", "咖啡总部", "hq", None),
        ("A-EAST", "华东", "region", "A-HQ"),
        ("A-SH01", "静安店", "store", "A-EAST"),
        ("A-SH02", "徐汇店", "store", "A-EAST"),
        ("A-SOUTH", "华南", "region", "A-HQ"),
        ("A-GZ01", "天河店", "store", "A-SOUTH"),
    ],
    "a-tea": [("T-HQ", "茶饮总部", "hq", None), ("T-S01", "南京西路店", "store", "T-HQ")],
    "b-shop": [("B-HQ", "B 总部", "hq", None), ("B-S01", "B 一店", "store", "B-HQ")],
}

STAFF: list[tuple[str, str, dict[str, Any]]] = [
    ("a-coffee", "a.admin", {"role": "admin"}),
    ("a-coffee", "a.am", {"role": "agency_manager", "scope": "agency"}),
    ("a-coffee", "a.east", {"role": "regional_manager", "unit": "A-EAST"}),
    ("a-coffee", "a.sh01mgr", {"role": "store_manager", "unit": "A-SH01"}),
    ("a-coffee", "a.guide", {"role": "guide", "unit": "A-SH01", "wecom_userid": "aguide"}),
    ("a-coffee", "a.analyst", {"role": "analyst"}),
    ("a-coffee", "shared", {"role": "guide", "unit": "A-SH02", "guide_kind": "general"}),
    ("a-tea", "t.admin", {"role": "admin"}),
    ("b-shop", "b.admin", {"role": "admin"}),
    ("b-shop", "b.guide", {"role": "guide", "unit": "B-S01"}),
]


def build_world(db: Session) -> None:
    actions.create_agency(db, SYSTEM, AgencyIn(slug="acme", name="Acme 代运营"))
    actions.create_brand(db, SYSTEM, BrandIn(slug="a-coffee", name="A 咖啡", agency="acme"))
    actions.create_brand(db, SYSTEM, BrandIn(slug="a-tea", name="A 茶饮", agency="acme"))
    actions.create_brand(db, SYSTEM, BrandIn(slug="b-shop", name="B 商店"))
    actions.create_admin(db, SYSTEM, "root", "Root", PASSWORD)
    for slug, units in UNITS.items():
        brand = queries.access_brand(db, SYSTEM, slug)
        for code, name, kind, parent in units:
            actions.create_unit(
                db,
                SYSTEM,
                brand,
                UnitIn(
                    code=code,
                    name=name,
                    kind=kind,  # type: ignore[arg-type]
                    parent=parent,
                ),
            )
    for slug, username, extra in STAFF:
        brand = queries.access_brand(db, SYSTEM, slug)
        actions.create_staff(
            db,
            SYSTEM,
            brand,
            StaffIn(name=username.upper(), username=username, password=PASSWORD, **extra),
        )
    tea = queries.access_brand(db, SYSTEM, "a-tea")
    actions.add_membership(
        db, SYSTEM, tea, MembershipIn(username="shared", role="guide", unit="T-S01")
    )


def api_key(db: Session, brand_slug: str, *scopes: str) -> str:
    brand = queries.access_brand(db, SYSTEM, brand_slug)
    _, secret = actions.create_api_key(
        db, SYSTEM, brand, ApiKeyIn(name=f"test {brand_slug}", scopes=list(scopes) or ["org.read"])
    )
    return secret


def login(client: Any, username: str, password: str = PASSWORD) -> dict[str, str]:
    """Sign in through the console form; returns headers carrying the CSRF token."""
    r = client.post(
        "/login", data={"username": username, "password": password}, follow_redirects=False
    )
    assert r.status_code in (302, 303), r.text
    r = client.get("/api/v1/me")
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": client.cookies.get("siyu_csrf") or ""}
