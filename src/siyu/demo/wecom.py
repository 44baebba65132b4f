"""The demo brand's WeCom, on the local WeCom server: ``siyu demo`` starts the server (the
same test double the tests use), gives it the brand's guides, some customers following them,
corporate tags and two customer groups, points the brand's app at it, syncs, and creates two
channel codes. Adding a friend on the server (``POST /fake/friends``) then runs the whole
real-time path: signed, encrypted callback → customer → welcome message."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.tenancy import SYSTEM
from siyu.org.models import Membership, Staff
from siyu.wecom import apps, sync, ways
from siyu.wecom.fake_state import FakeWeCom

if TYPE_CHECKING:
    from siyu.org.models import Brand


def seed_fake(db: Session, fake: FakeWeCom, brand: Brand, customers: int = 24) -> list[str]:
    """The brand's WeCom members (memberships with a WeCom userid), customers spread over
    them, a tag group and two groups; returns the members' userids."""
    rows = db.execute(
        select(Membership.wecom_userid, Staff.name)
        .join(Staff, Staff.id == Membership.staff_id)
        .where(Membership.brand_id == brand.id, Membership.wecom_userid.is_not(None))
        .order_by(Membership.wecom_userid)
    ).all()
    userids = [str(u) for u, _ in rows]
    fake.add_department(1, brand.name, 0)
    for userid, name in rows:
        fake.add_user(str(userid), str(name), [1])
    group = fake.add_tag_group("客户意向", ["高意向", "观望", "已购"])
    tag_ids = [t["id"] for t in group["tags"].values()]
    xids: list[str] = []
    for i in range(customers if userids else 0):
        c = fake.add_customer(f"企微好友{i + 1:02d}", external_userid=f"wmdemo{i + 1:04d}")
        fake.follow(
            userids[i % len(userids)],
            c["external_userid"],
            state="store_qr",
            tag_ids=tag_ids[i % 3 : i % 3 + 1],
        )
        xids.append(c["external_userid"])
    if userids:
        fake.add_group_chat(userids[0], "会员福利群", members=userids[:2], customers=xids[:8])
        fake.add_group_chat(userids[-1], "新品尝鲜群", members=userids[-1:], customers=xids[8:14])
    return userids


def setup(db: Session, brand: Brand, fake: FakeWeCom, base_url: str) -> dict[str, Any]:
    """Point the brand's app at the local server, sync it and create the channel codes."""
    s = fake.settings
    apps.configure(
        db,
        SYSTEM,
        brand,
        apps.AppIn(
            corp_id=s.corp_id,
            agent_id=s.agent_id,
            secret=s.secret,
            token=s.token,
            aes_key=s.aes_key,
            base_url=base_url,
        ),
    )
    userids = seed_fake(db, fake, brand)
    counts = sync.sync_brand(db, SYSTEM, brand)
    existing = {w.state for w in ways.list_ways(db, brand)}
    for name, state, source, cost in (
        ("门店收银台活码", "store_qr", "store", 0),
        ("小红书笔记引流", "xhs_note_spring", "xiaohongshu", 120_000),
    ):
        if state not in existing and userids:
            ways.create_way(
                db,
                SYSTEM,
                brand,
                ways.ContactWayIn(
                    name=name, state=state, source=source, staff_userids=userids[:3], cost_fen=cost
                ),
            )
    return counts
