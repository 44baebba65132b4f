"""Customers for the console, CLI and PII tests, built through ``customers.actions.observe_batch``
(never by inserting rows), on top of the ``world`` cast of ``tests/factories.py``.

- ``zhang`` — phone 13512346810, email, member M-PII-001, WeCom contact of guide ``a.guide``
  (wecom ``aguide``), home store A-SH01, a marketing consent through the phone;
- ``li`` — phone 13900001111, member M-002, home store A-GZ01 (South region);
- ``wang`` — phone 13700002222, POS card, home store A-SH02.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.tenancy import SYSTEM
from siyu.customers import actions
from siyu.customers.models import Identity, Review
from siyu.customers.schemas import ObservationIn
from siyu.org import queries as org_queries

T0 = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
ZHANG_PHONE = "13512346810"
ZHANG_MASKED = "135****6810"
ZHANG_NAME = "张三丰"
ZHANG_EMAIL = "sanfeng.zhang@example.com"
LI_PHONE = "13900001111"
WANG_PHONE = "13700002222"
PHONES = (ZHANG_PHONE, LI_PHONE, WANG_PHONE)


def observation(minutes: int, source: str = "crm", **extra: Any) -> ObservationIn:
    ids = extra.pop("ids")
    return ObservationIn.model_validate(
        {
            "source": source,
            "observed_at": T0 + timedelta(minutes=minutes),
            "identifiers": [{"type": t, "value": v} for t, v in ids.items()],
            **extra,
        }
    )


@dataclass
class Cast:
    zhang: str
    li: str
    wang: str


def seed_customers(db: Session, brand_slug: str = "a-coffee") -> Cast:
    brand = org_queries.access_brand(db, SYSTEM, brand_slug)
    results = actions.observe_batch(
        db,
        SYSTEM,
        brand,
        [
            observation(
                0,
                "wecom",
                ids={
                    "external_userid": "wmZhang001",
                    "unionid": "oU-zhang",
                    "phone": "+86 135-1234-6810",
                },
                owner_wecom_userid="aguide",
                unit_code="A-SH01",
                profile={
                    "name": ZHANG_NAME,
                    "nickname": "三丰",
                    "gender": "male",
                    "birthday": "1990-04-01",
                    "city": "上海",
                    "attributes": {"level": "gold"},
                },
                consents=[
                    {
                        "identifier": {"type": "phone", "value": ZHANG_PHONE},
                        "purpose": "marketing",
                        "granted": True,
                    }
                ],
            ),
            observation(
                1,
                ids={"phone": ZHANG_PHONE, "member_no": "M-PII-001", "email": ZHANG_EMAIL},
            ),
            observation(
                2,
                ids={"phone": LI_PHONE, "member_no": "M-002"},
                unit_code="A-GZ01",
                profile={"name": "李四"},
            ),
            observation(
                3, "pos", ids={"phone": WANG_PHONE, "pos_card": "C-777"}, unit_code="A-SH02"
            ),
        ],
    )
    zhang, _, li, wang = (r.customer_id for r in results)
    assert zhang and li and wang and results[1].customer_id == zhang
    return Cast(zhang=zhang, li=li, wang=wang)


def seed_review(
    db: Session, tag: str = "R", phone: str = "13600000001", brand_slug: str = "a-coffee"
) -> Review:
    """Two member numbers meeting on one phone: OneID queues the merge for review."""
    brand = org_queries.access_brand(db, SYSTEM, brand_slug)
    actions.observe_batch(
        db, SYSTEM, brand, [observation(10, ids={"member_no": f"{tag}-100", "phone": phone})]
    )
    actions.observe_batch(
        db, SYSTEM, brand, [observation(11, ids={"member_no": f"{tag}-200", "phone": phone})]
    )
    review = db.scalar(
        select(Review)
        .where(Review.brand_id == brand.id, Review.status == "open")
        .order_by(Review.created_at.desc())
    )
    assert review is not None
    return review


def identity_ids(db: Session, customer_id: str, *types: str) -> list[str]:
    return list(
        db.scalars(
            select(Identity.id).where(
                Identity.customer_id == customer_id, Identity.id_type.in_(types)
            )
        )
    )
