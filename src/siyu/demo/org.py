"""The demo organisation: one agency, two brands of different shapes, org trees and staff.

Deterministic and idempotent: running it twice changes nothing.

- ``demo-coffee`` (思屿咖啡): a coffee chain — HQ, 3 regions, 6 cities, 24 stores, a store
  manager per store and baristas as guides.
- ``demo-beauty`` (思屿美妆): a beauty brand — HQ, 2 regions, 6 counters, beauty advisers.
- One guide (``guide.shared``) serves both brands; an agency account manager sees both.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.tenancy import SYSTEM
from siyu.demo.generate import GIVEN, SURNAMES
from siyu.org import actions, queries
from siyu.org.models import Staff
from siyu.org.schemas import AgencyIn, BrandIn, MembershipIn, StaffIn, UnitIn

AGENCY = "demo-agency"
PASSWORD = "siyu-demo-2026"

COFFEE_REGIONS = {
    "EAST": (
        "华东大区",
        {
            "SH": ("上海", ["静安寺", "陆家嘴", "徐家汇", "五角场", "中山公园"]),
            "HZ": ("杭州", ["西湖", "滨江", "武林"]),
        },
    ),
    "SOUTH": (
        "华南大区",
        {
            "GZ": ("广州", ["天河城", "珠江新城", "北京路", "番禺"]),
            "SZ": ("深圳", ["福田", "南山科技园", "华强北", "宝安"]),
        },
    ),
    "NORTH": (
        "华北大区",
        {
            "BJ": ("北京", ["国贸", "三里屯", "中关村", "望京"]),
            "TJ": ("天津", ["滨江道", "小白楼", "大悦城", "梅江"]),
        },
    ),
}
BEAUTY_REGIONS = {
    "EAST": ("华东区", {"SH": ("上海", ["恒隆专柜", "久光专柜", "来福士专柜"])}),
    "WEST": (
        "西南区",
        {"CD": ("成都", ["IFS 专柜", "太古里专柜"]), "CQ": ("重庆", ["解放碑专柜"])},
    ),
}


@dataclass
class DemoOrg:
    agency_slug: str
    brands: list[str]
    admin_username: str
    password: str


def _units(
    db: Session,
    brand_slug: str,
    prefix: str,
    hq_name: str,
    regions: dict[str, tuple[str, dict[str, tuple[str, list[str]]]]],
) -> list[str]:
    brand = queries.access_brand(db, SYSTEM, brand_slug)
    stores: list[str] = []

    def unit(code: str, name: str, kind: str, parent: str | None, city: str | None = None) -> None:
        if queries.resolve_unit(db, brand, code) is None:
            actions.create_unit(
                db, SYSTEM, brand, UnitIn(code=code, name=name, kind=kind, parent=parent, city=city)
            )

    unit(f"{prefix}-HQ", hq_name, "hq", None)
    for rcode, (rname, cities) in regions.items():
        region = f"{prefix}-{rcode}"
        unit(region, rname, "region", f"{prefix}-HQ")
        for ccode, (cname, shops) in cities.items():
            city = f"{prefix}-{ccode}"
            unit(city, cname, "city", region, cname)
            for i, shop in enumerate(shops, start=1):
                code = f"{prefix}-{ccode}{i:02d}"
                unit(
                    code,
                    f"{cname}{shop}店" if prefix == "CF" else f"{cname}{shop}",
                    "store",
                    city,
                    cname,
                )
                stores.append(code)
    return stores


def _staff(db: Session, brand_slug: str, item: StaffIn) -> None:
    brand = queries.access_brand(db, SYSTEM, brand_slug)
    exists = db.scalar(select(Staff.id).where(Staff.username == item.username))
    if exists is None:
        actions.create_staff(db, SYSTEM, brand, item)


def build_demo_org(db: Session) -> DemoOrg:
    if queries.find_agency(db, AGENCY) is None:
        actions.create_agency(db, SYSTEM, AgencyIn(slug=AGENCY, name="思屿演示代运营"))
    for slug, name in (("demo-coffee", "思屿咖啡"), ("demo-beauty", "思屿美妆")):
        if queries.find_brand(db, slug) is None:
            actions.create_brand(db, SYSTEM, BrandIn(slug=slug, name=name, agency=AGENCY))
    if db.scalar(select(Staff.id).where(Staff.username == "admin")) is None:
        actions.create_admin(db, SYSTEM, "admin", "平台管理员", PASSWORD)

    coffee = _units(db, "demo-coffee", "CF", "思屿咖啡总部", COFFEE_REGIONS)
    beauty = _units(db, "demo-beauty", "BT", "思屿美妆总部", BEAUTY_REGIONS)

    def person(
        brand: str,
        username: str,
        name: str,
        role: str,
        unit: str | None,
        wecom: str | None = None,
        **extra: str,
    ) -> None:
        _staff(
            db,
            brand,
            StaffIn(
                name=name,
                username=username,
                role=role,
                unit=unit,
                wecom_userid=wecom,
                password=PASSWORD,
                **extra,
            ),
        )

    person("demo-coffee", "agency.am", "周晓雯", "agency_manager", None, scope="agency")
    person("demo-coffee", "coffee.hq", "陈思远", "hq_operator", None)
    person("demo-coffee", "coffee.east", "王立华", "regional_manager", "CF-EAST")
    person("demo-coffee", "coffee.community", "林可欣", "community_operator", None)
    person("demo-beauty", "beauty.hq", "赵婉清", "hq_operator", None)
    person("demo-beauty", "beauty.content", "孙雨桐", "content_operator", None)
    surnames, given = SURNAMES, GIVEN
    for i, store in enumerate(coffee):
        manager_name = surnames[i % len(surnames)] + given[(i * 2) % len(given)]
        person(
            "demo-coffee",
            f"cf.mgr{i + 1:02d}",
            manager_name,
            "store_manager",
            store,
            wecom=f"cfmgr{i + 1:02d}",
        )
        for j in range(2):
            n = i * 2 + j
            guide_name = surnames[(n + 7) % len(surnames)] + given[(n * 3 + 1) % len(given)]
            person(
                "demo-coffee",
                f"cf.guide{n + 1:03d}",
                guide_name,
                "guide",
                store,
                wecom=f"cfguide{n + 1:03d}",
            )
    for i, store in enumerate(beauty):
        person(
            "demo-beauty",
            f"bt.mgr{i + 1:02d}",
            surnames[(i + 11) % len(surnames)] + "美琳",
            "store_manager",
            store,
            wecom=f"btmgr{i + 1:02d}",
        )
        for j in range(3):
            n = i * 3 + j
            person(
                "demo-beauty",
                f"bt.ba{n + 1:03d}",
                surnames[(n + 19) % len(surnames)] + given[(n * 5 + 2) % len(given)],
                "guide",
                store,
                wecom=f"btba{n + 1:03d}",
            )
    # One outsourced general guide serves a coffee store and a beauty counter.
    person(
        "demo-coffee",
        "guide.shared",
        "何嘉怡",
        "guide",
        coffee[0],
        wecom="sharedguide",
        guide_kind="general",
    )
    beauty_brand = queries.access_brand(db, SYSTEM, "demo-beauty")
    shared = db.scalar(select(Staff).where(Staff.username == "guide.shared"))
    assert shared is not None
    if (
        "demo-beauty"
        not in queries.get_staff(
            db, SYSTEM, queries.access_brand(db, SYSTEM, "demo-coffee"), shared.id
        ).brands
    ):
        actions.add_membership(
            db,
            SYSTEM,
            beauty_brand,
            MembershipIn(
                username="guide.shared", role="guide", unit=beauty[0], wecom_userid="sharedguide"
            ),
        )
    return DemoOrg(
        agency_slug=AGENCY,
        brands=["demo-coffee", "demo-beauty"],
        admin_username="admin",
        password=PASSWORD,
    )
